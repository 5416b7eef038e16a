package detect

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/synban/synban/policy"
)

// PastBan is what the history remembers of a subject's last ban.
type PastBan struct {
	At  time.Time
	For time.Duration
}

// Standing is what escalation knows about a subject besides the verdict:
// its ban history and the ban that may still hold.
type Standing struct {
	// Last is the subject's last recorded offence; HasLast is false when it
	// was never banned.
	Last    PastBan
	HasLast bool
	// Banned is true while a ban of exactly this subject still holds; Until
	// is when it ends (zero: it does not expire).
	Banned bool
	Until  time.Time
	// Dropped is true when the kernel's drop counter for that ban shows
	// packets from the subject since the previous run. Backends without
	// per-ban counters (route) never set it.
	Dropped bool
}

// Outcome says what escalation made of one verdict.
type Outcome int

const (
	// Offence is a new offence: no ban holds, so the verdict bans, escalated
	// when the subject's previous ban lies within the escalate window.
	Offence Outcome = iota
	// Refresh is a subject that keeps sending while its ban holds: the ban
	// is extended to the verdict's length from now at most (never shortened)
	// and not escalated.
	Refresh
	// Stale is evidence that predates the current ban or shows nothing new
	// (the ban's drop counter did not move): it changes nothing.
	Stale
)

func (o Outcome) String() string {
	switch o {
	case Refresh:
		return "refresh"
	case Stale:
		return "stale"
	}
	return "offence"
}

// Escalated is the result of Escalate.
type Escalated struct {
	// Verdicts are the verdicts to apply: new offences and refreshes, with
	// their BanFor and Reason adjusted.
	Verdicts []Verdict
	// Refreshed holds the subjects of Verdicts that are refreshes of a ban
	// still holding: they must not be recorded as new offences.
	Refreshed map[netip.Prefix]bool
	// Stale are the verdicts dropped because they show nothing new.
	Stale []Verdict
}

// Escalate decides, for each verdict, whether it is a new offence, a
// refresh of a ban that holds, or stale evidence, so that an offence counts
// once however many runs still see its traces (half-open entries made before
// the ban outlive it by minutes):
//
//   - A ban of the subject still holds and its drop counter shows nothing
//     new: stale. No refresh, no escalation, no history.
//   - A ban holds and the subject's packets are being dropped: refresh. The
//     ban becomes the verdict's length from now, capped at max_duration, or
//     what is left when that is longer; it never escalates while it holds.
//   - No ban holds: a new offence. When the subject's previous ban started
//     within the escalate window (and escalate_factor > 1), the ban is the
//     previous length times the factor, never shorter than the verdict's
//     own and capped at max_duration.
//
// look returns a subject's standing; a nil look treats every verdict as a
// new offence without history.
func Escalate(p *policy.Policy, verdicts []Verdict, now time.Time, look func(netip.Prefix) Standing) Escalated {
	b := p.Ban
	out := Escalated{Refreshed: map[netip.Prefix]bool{}}
	limit := b.MaxDuration.Duration
	capped := func(d time.Duration) time.Duration {
		if limit > 0 && d > limit {
			return limit
		}
		return d
	}
	for _, v := range verdicts {
		var s Standing
		if look != nil {
			s = look(v.Subject)
		}
		switch OutcomeOf(s) {
		case Stale:
			out.Stale = append(out.Stale, v)
			continue
		case Refresh:
			d := capped(v.BanFor)
			if left := s.Until.Sub(now); left > d {
				d = left
			}
			v.BanFor = d
			v.Reason += "; still sending while banned (drops counted), ban refreshed"
			out.Refreshed[policy.Canonical(v.Subject)] = true
			out.Verdicts = append(out.Verdicts, v)
			continue
		}
		v.BanFor = capped(v.BanFor)
		if prev := s.Last; b.EscalateFactor > 1 && s.HasLast && prev.For > 0 && now.Sub(prev.At) <= b.EscalateWindow.Duration {
			d := capped(max(time.Duration(float64(prev.For)*b.EscalateFactor), v.BanFor))
			if d != v.BanFor {
				v.Reason += fmt.Sprintf("; banned %s ago for %s, escalated to %s", now.Sub(prev.At).Round(time.Second), prev.For, d)
				v.BanFor = d
			}
		}
		out.Verdicts = append(out.Verdicts, v)
	}
	return out
}

// OutcomeOf is the outcome for a subject of standing s (see Escalate).
func OutcomeOf(s Standing) Outcome {
	switch {
	case s.Banned && s.Dropped && !s.Until.IsZero():
		return Refresh
	case s.Banned:
		return Stale // a ban that never expires has nothing to refresh
	}
	return Offence
}

// NewDrops reports whether a ban's drop counter moved since the previous
// run: cur is the count the kernel shows now, prev the count stored then. A
// count below prev means the element was re-created (a refresh, a restore
// after a flush), so everything it shows is new.
func NewDrops(cur, prev uint64) bool {
	if cur < prev {
		return cur > 0
	}
	return cur > prev
}
