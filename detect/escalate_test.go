package detect

import (
	"net/netip"
	"testing"
	"time"

	"github.com/synban/synban/policy"
)

func TestEscalateAcrossRuns(t *testing.T) {
	p := policy.Default()
	p.Ban.Duration.Duration = 10 * time.Minute
	p.Ban.EscalateFactor = 3
	p.Ban.MaxDuration.Duration = time.Hour
	p.Ban.EscalateWindow.Duration = 24 * time.Hour
	subject := netip.MustParsePrefix("203.0.113.7/32")
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

	// History as a store would keep it: the last ban of each subject.
	history := map[netip.Prefix]PastBan{}
	last := func(p netip.Prefix) (PastBan, bool) { b, ok := history[p]; return b, ok }

	var got []time.Duration
	for run := 0; run < 4; run++ {
		vs := []Verdict{{Subject: subject, BanFor: 10 * time.Minute, Reason: "flood"}}
		Escalate(p, vs, now, last)
		got = append(got, vs[0].BanFor)
		history[subject] = PastBan{At: now, For: vs[0].BanFor}
		now = now.Add(vs[0].BanFor + time.Minute) // banned again after the ban ran out
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
	old := func(netip.Prefix) (PastBan, bool) { return PastBan{At: now.Add(-2 * time.Hour), For: time.Hour}, true }

	vs := []Verdict{{Subject: subject, BanFor: 10 * time.Minute}}
	Escalate(p, vs, now, old)
	if vs[0].BanFor != 10*time.Minute {
		t.Errorf("ban outside the window escalated to %s", vs[0].BanFor)
	}

	p.Ban.EscalateFactor = 1
	recent := func(netip.Prefix) (PastBan, bool) { return PastBan{At: now.Add(-time.Minute), For: time.Hour}, true }
	Escalate(p, vs, now, recent)
	if vs[0].BanFor != 10*time.Minute {
		t.Errorf("factor 1 (disabled) still escalated to %s", vs[0].BanFor)
	}
}
