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

// Escalate lengthens the ban of each verdict whose subject was banned before
// within the policy's escalate window: the new ban is the previous one times
// the escalation factor, never shorter than the verdict's own and capped at
// the policy's max_duration. last looks a subject up in the ban history.
// The verdicts are changed in place; the Reason says when a ban escalated.
func Escalate(p *policy.Policy, verdicts []Verdict, now time.Time, last func(netip.Prefix) (PastBan, bool)) {
	b := p.Ban
	if b.EscalateFactor <= 1 || last == nil {
		return
	}
	for i := range verdicts {
		v := &verdicts[i]
		prev, ok := last(v.Subject)
		if !ok || prev.For <= 0 || now.Sub(prev.At) > b.EscalateWindow.Duration {
			continue
		}
		d := time.Duration(float64(prev.For) * b.EscalateFactor)
		if d < v.BanFor {
			d = v.BanFor
		}
		if max := b.MaxDuration.Duration; max > 0 && d > max {
			d = max
		}
		if d == v.BanFor {
			continue
		}
		v.Reason += fmt.Sprintf("; banned %s ago for %s, escalated to %s", now.Sub(prev.At).Round(time.Second), prev.For, d)
		v.BanFor = d
	}
}
