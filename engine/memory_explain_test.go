package engine

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// Explain on a fixed window (a replayed capture) against the state a run
// left: the story names the offence, what escalation makes of it and the
// stored ban.
func TestMemoryExplain(t *testing.T) {
	cases := []struct {
		name, capture, subject string
		ran                    bool // a run on the capture came first
		outcome, escalation    string
		stored, planned        bool
	}{
		{"offender fresh", "single", "203.0.113.7/32", false, ExplainOffends, "", false, true}, // no store: no escalation
		{"offender banned", "single", "203.0.113.7/32", true, ExplainOffends, "stale", true, true},
		{"quiet subject", "single", "192.0.2.200/32", false, ExplainNotSeen, "", false, false},
		{"prefix member", "prefix", "198.51.100.9/32", false, ExplainOffends, "", false, true}, // through its /24
		{"prefix", "prefix", "198.51.100.0/24", false, ExplainOffends, "", false, true},
		{"ipv6 offender", "mixed", "2001:db8:66::6/128", false, ExplainOffends, "", false, true},
		{"restored only", "quiet", "203.0.113.7/32", true, ExplainNotSeen, "", true, true},
	}
	caps := map[string]string{"single": capSingle, "prefix": capPrefix, "quiet": capQuiet, "mixed": capMixed}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			if c.ran {
				r.run(capSingle)
				r.clock.Advance(time.Minute)
			}
			g := r.k.Generation()
			x, err := r.engine(caps[c.capture]).Explain(context.Background(), r.p, netip.MustParsePrefix(c.subject), r.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			if x.Outcome != c.outcome || x.Escalation != c.escalation {
				t.Errorf("outcome %q escalation %q, want %q %q; summary %q", x.Outcome, x.Escalation, c.outcome, c.escalation, x.Summary)
			}
			if (x.Stored != nil) != c.stored || (x.Planned != nil) != c.planned {
				t.Errorf("stored %v planned %v, want %v %v", x.Stored, x.Planned, c.stored, c.planned)
			}
			if len(x.Summary) == 0 {
				t.Error("no summary")
			}
			if r.k.Generation() != g {
				t.Error("explain changed the kernel")
			}
		})
	}
}

// Explain of a banned prefix lists the offenders inside it.
func TestMemoryExplainInside(t *testing.T) {
	r := newRig(t)
	x, err := r.engine(capMixed).Explain(context.Background(), r.p, netip.MustParsePrefix("198.51.100.0/24"), r.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if x.Offence == nil || x.Offence.Subject != netip.MustParsePrefix("198.51.100.0/24") || x.Offence.Count != 220 {
		t.Fatalf("offence %+v, want 198.51.100.0/24 counting 220", x.Offence)
	}
}
