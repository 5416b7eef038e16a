package detect

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/policy"
)

func escalatePolicy() *policy.Policy {
	p := policy.Default()
	p.Ban.Duration.Duration = 10 * time.Minute
	p.Ban.EscalateFactor = 3
	p.Ban.MaxDuration.Duration = time.Hour
	p.Ban.EscalateWindow.Duration = 24 * time.Hour
	return p
}

// One escalated ban per offence when each offence comes after the previous
// ban ended: 10m, x3, then capped at max_duration.
func TestEscalateAcrossRuns(t *testing.T) {
	p := escalatePolicy()
	subject := netip.MustParsePrefix("203.0.113.7/32")
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

	// History as a store would keep it: the last ban of each subject.
	history := map[netip.Prefix]PastBan{}
	look := func(p netip.Prefix) Standing { b, ok := history[p]; return Standing{Last: b, HasLast: ok} }

	var got []time.Duration
	for run := 0; run < 4; run++ {
		res := Escalate(p, []Verdict{{Subject: subject, BanFor: 10 * time.Minute, Reason: "flood"}}, now, look)
		if len(res.Verdicts) != 1 || len(res.Stale) != 0 {
			t.Fatalf("run %d: %d verdicts, %d stale; want 1, 0", run, len(res.Verdicts), len(res.Stale))
		}
		got = append(got, res.Verdicts[0].BanFor)
		history[subject] = PastBan{At: now, For: res.Verdicts[0].BanFor}
		now = now.Add(res.Verdicts[0].BanFor + time.Minute) // banned again after the ban ran out
	}
	want := []time.Duration{10 * time.Minute, 30 * time.Minute, time.Hour, time.Hour}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ban lengths over runs = %v, want %v (first, x3, capped, capped)", got, want)
		}
	}
}

func TestEscalateOutsideWindowAndDisabled(t *testing.T) {
	p := policy.Default()
	p.Ban.EscalateWindow.Duration = time.Hour
	subject := netip.MustParsePrefix("2001:db8::/64")
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	old := func(netip.Prefix) Standing {
		return Standing{Last: PastBan{At: now.Add(-2 * time.Hour), For: time.Hour}, HasLast: true}
	}
	res := Escalate(p, []Verdict{{Subject: subject, BanFor: 10 * time.Minute}}, now, old)
	if got := res.Verdicts[0].BanFor; got != 10*time.Minute {
		t.Errorf("ban outside the window escalated to %s", got)
	}

	p.Ban.EscalateFactor = 1
	recent := func(netip.Prefix) Standing {
		return Standing{Last: PastBan{At: now.Add(-time.Hour), For: 10 * time.Minute}, HasLast: true}
	}
	res = Escalate(p, []Verdict{{Subject: subject, BanFor: 10 * time.Minute}}, now, recent)
	if got := res.Verdicts[0].BanFor; got != 10*time.Minute {
		t.Errorf("factor 1 (disabled) still escalated to %s", got)
	}
}

// The reported runaway: one burst, the ban holds, and every later run still
// sees the half-open entries made before it. None of them may refresh,
// escalate or be recorded.
func TestEscalateStaleWhileBanned(t *testing.T) {
	p := escalatePolicy()
	subject := netip.MustParsePrefix("198.51.100.2/32")
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	banned := Standing{Last: PastBan{At: t0, For: 10 * time.Minute}, HasLast: true, Banned: true, Until: t0.Add(10 * time.Minute)}
	for run := 1; run <= 5; run++ {
		now := t0.Add(time.Duration(run) * 10 * time.Second)
		res := Escalate(p, []Verdict{{Subject: subject, BanFor: 10 * time.Minute, Reason: "flood"}}, now,
			func(netip.Prefix) Standing { return banned })
		if len(res.Verdicts) != 0 || len(res.Stale) != 1 || len(res.Refreshed) != 0 {
			t.Fatalf("run %d: verdicts %+v, stale %d, refreshed %v; want the one verdict stale", run, res.Verdicts, len(res.Stale), res.Refreshed)
		}
	}
	// A ban that never expires has nothing to refresh even when it drops.
	forever := Standing{Banned: true, Dropped: true}
	if res := Escalate(p, []Verdict{{Subject: subject, BanFor: time.Minute}}, t0, func(netip.Prefix) Standing { return forever }); len(res.Stale) != 1 {
		t.Errorf("verdict for a subject banned forever: %+v, want stale", res)
	}
}

// A banned source that keeps sending: the ban is extended to the verdict's
// length from now, never shortened, never escalated.
func TestEscalateRefreshWhileDropping(t *testing.T) {
	p := escalatePolicy()
	subject := netip.MustParsePrefix("2001:db8::7/128")
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	look := func(until time.Time) func(netip.Prefix) Standing {
		return func(netip.Prefix) Standing {
			return Standing{Last: PastBan{At: t0, For: 10 * time.Minute}, HasLast: true, Banned: true, Until: until, Dropped: true}
		}
	}
	// 8 minutes into a 10-minute ban: 2 minutes left, refreshed to 10 minutes.
	now := t0.Add(8 * time.Minute)
	res := Escalate(p, []Verdict{{Subject: subject, BanFor: 10 * time.Minute, Reason: "flood"}}, now, look(t0.Add(10*time.Minute)))
	if len(res.Verdicts) != 1 || res.Verdicts[0].BanFor != 10*time.Minute || !res.Refreshed[subject] {
		t.Fatalf("refresh: %+v, want one refreshed verdict of 10m", res)
	}
	if !strings.Contains(res.Verdicts[0].Reason, "refreshed") || strings.Contains(res.Verdicts[0].Reason, "escalated") {
		t.Errorf("refresh reason %q", res.Verdicts[0].Reason)
	}
	// An escalated ban with 50 minutes left is not shortened by a 10m verdict.
	res = Escalate(p, []Verdict{{Subject: subject, BanFor: 10 * time.Minute}}, now, look(now.Add(50*time.Minute)))
	if got := res.Verdicts[0].BanFor; got != 50*time.Minute {
		t.Errorf("refresh of a ban with 50m left: %s, want 50m", got)
	}
	// A verdict longer than max_duration is capped.
	res = Escalate(p, []Verdict{{Subject: subject, BanFor: 3 * time.Hour}}, now, look(now.Add(time.Minute)))
	if got := res.Verdicts[0].BanFor; got != time.Hour {
		t.Errorf("refresh with a 3h verdict: %s, want max_duration 1h", got)
	}
}

// After the ban ended, a new offence within the window escalates, capped at
// max_duration; outside the window it does not.
func TestEscalateAfterExpiry(t *testing.T) {
	p := escalatePolicy()
	subject := netip.MustParsePrefix("192.0.2.0/24")
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	now := t0.Add(30 * time.Minute)
	for _, c := range []struct {
		prev, want time.Duration
	}{{10 * time.Minute, 30 * time.Minute}, {25 * time.Minute, time.Hour}, {time.Hour, time.Hour}} {
		res := Escalate(p, []Verdict{{Subject: subject, BanFor: 10 * time.Minute}}, now, func(netip.Prefix) Standing {
			return Standing{Last: PastBan{At: t0, For: c.prev}, HasLast: true} // Banned false: it ended
		})
		if len(res.Verdicts) != 1 || res.Verdicts[0].BanFor != c.want || len(res.Refreshed) != 0 {
			t.Errorf("previous ban %s: %+v, want a new offence of %s", c.prev, res, c.want)
		}
	}
}

// A ban restored from the state store and decided again in the same run:
// without new drops the fresh verdict is stale and the restored ban alone
// stands (decide adds it from the store with the time it has left).
func TestEscalateRestoredBanFreshVerdict(t *testing.T) {
	p := escalatePolicy()
	a := netip.MustParsePrefix("203.0.113.9/32")
	b := netip.MustParsePrefix("203.0.113.10/32")
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	standing := map[netip.Prefix]Standing{
		a: {Last: PastBan{At: now.Add(-time.Minute), For: 10 * time.Minute}, HasLast: true, Banned: true, Until: now.Add(9 * time.Minute)},
	}
	res := Escalate(p, []Verdict{{Subject: a, BanFor: 10 * time.Minute}, {Subject: b, BanFor: 10 * time.Minute}}, now,
		func(p netip.Prefix) Standing { return standing[p] })
	if len(res.Stale) != 1 || res.Stale[0].Subject != a {
		t.Errorf("stale = %+v, want the restored subject %s", res.Stale, a)
	}
	if len(res.Verdicts) != 1 || res.Verdicts[0].Subject != b || res.Verdicts[0].BanFor != 10*time.Minute {
		t.Errorf("verdicts = %+v, want only the new subject %s for 10m", res.Verdicts, b)
	}
	if res := Escalate(p, []Verdict{{Subject: a, BanFor: 10 * time.Minute}}, now, nil); len(res.Verdicts) != 1 {
		t.Errorf("no standing known (nil look): %+v, want a new offence", res)
	}
}

func TestNewDrops(t *testing.T) {
	for _, c := range []struct {
		cur, prev uint64
		want      bool
	}{{0, 0, false}, {5, 5, false}, {6, 5, true}, {0, 5, false}, {3, 5, true}, {1, 0, true}} {
		if got := NewDrops(c.cur, c.prev); got != c.want {
			t.Errorf("NewDrops(%d, %d) = %v, want %v", c.cur, c.prev, got, c.want)
		}
	}
}
