package engine

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/state"
)

// explainLab is a window of four sources and a guard holding a gateway,
// as a host under attack sees it.
func explainLab(t *testing.T) (*policy.Policy, *policy.Guard, *Window) {
	t.Helper()
	p := quietPolicy()
	p.Allow.Host = true // the guard below is built with the host's gateway
	p.Sample.Count, p.Sample.MinHits = 3, 2
	p.Allow.Addresses = []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")}
	g := p.Guard([]policy.Protected{{Prefix: netip.MustParsePrefix("10.9.0.254/32"), Why: "default gateway"}})
	var conns []detect.Conn
	conns = append(conns, halfOpen("10.9.0.2", 120)...)     // attacker
	conns = append(conns, halfOpen("10.9.0.254", 90)...)    // gateway
	conns = append(conns, halfOpen("198.51.100.7", 70)...)  // allowed
	conns = append(conns, halfOpen("203.0.113.40", 7)...)   // below threshold
	conns = append(conns, halfOpen("2001:db8:5::1", 30)...) // an IPv6 /64 of three sources,
	conns = append(conns, halfOpen("2001:db8:5::2", 30)...) // each below 50,
	conns = append(conns, halfOpen("2001:db8:5::3", 30)...) // together below 200
	for i := range 4 {
		conns = append(conns, halfOpen("2001:db8:6::"+string(rune('a'+i)), 49)...) // together 196 ...
	}
	conns = append(conns, halfOpen("2001:db8:6::f", 10)...) // ... 206 >= 200 from 5 sources
	return p, g, window(t, p, conns)
}

func explainOf(t *testing.T, p *policy.Policy, g *policy.Guard, w *Window, st *state.State, subject string) *Explanation {
	t.Helper()
	e := New(nil, Options{})
	x, err := e.explainWindow(context.Background(), p, g, w, st, time.Now(), netip.MustParsePrefix(subject), kernelView{err: "not read in this test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// hasLine fails unless some summary line contains every part.
func hasLine(t *testing.T, x *Explanation, parts ...string) {
	t.Helper()
	for _, l := range x.Summary {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return
		}
	}
	t.Errorf("%s: no summary line with %q:\n%s", x.Subject, parts, strings.Join(x.Summary, "\n"))
}

// TestExplainOutcomes explains an attacker, a gateway and an allowed
// address flooding, a source below threshold, one never seen, and IPv6
// addresses judged through their /64: each explanation carries the
// numbers that decided it, and they agree with the analysis the run makes
// (the offence's peak is the rule's peak).
func TestExplainOutcomes(t *testing.T) {
	p, g, w := explainLab(t)

	x := explainOf(t, p, g, w, nil, "10.9.0.2/32")
	if x.Outcome != ExplainOffends || x.Offence == nil || x.Guard != nil || x.Planned == nil ||
		x.Planned.Prefix != netip.MustParsePrefix("10.9.0.2/32") || x.Planned.Timeout != 10*time.Minute {
		t.Fatalf("attacker: %+v", x)
	}
	syn := x.Rules[0]
	if syn.Rule != "syn-flood" || syn.Peak != 120 || syn.Threshold != 50 || syn.Hits != 3 || !syn.Crossed ||
		syn.Peak != x.Offence.Count || x.Rules[1].Crossed {
		t.Errorf("attacker's rules: %+v (offence %+v)", x.Rules, x.Offence)
	}
	if x.Prefix == nil || x.Prefix.Prefix != netip.MustParsePrefix("10.9.0.0/24") || x.Prefix.Threshold != 200 ||
		!x.Prefix.Crossed || x.Prefix.Guard == nil || x.Prefix.Rules[0].Peak != 210 || x.Prefix.Rules[0].Sources[0] != 2 {
		t.Errorf("attacker's prefix: %+v", x.Prefix)
	}
	hasLine(t, x, "rule syn-flood", "peak 120 syn_recv >= threshold 50", "3 of 3 samples", "min_hits 2")
	hasLine(t, x, "prefix 10.9.0.0/24", "peak 210 from 2 sources", "threshold 200", "offends as a prefix, but is never banned (10.9.0.254/32 is protected (default gateway))")
	hasLine(t, x, "guard: not protected")
	hasLine(t, x, "ruleset: the next run bans 10.9.0.2/32 for 10m0s")
	hasLine(t, x, "state store: none")

	x = explainOf(t, p, g, w, nil, "10.9.0.254/32")
	if x.Outcome != ExplainSpared || x.Guard == nil || x.Guard.Why != "default gateway" || x.Spared == nil ||
		x.Spared.By.Why != "default gateway" || x.Planned != nil || x.Rules[0].Peak != 90 {
		t.Fatalf("gateway: %+v", x)
	}
	hasLine(t, x, "peak 90 syn_recv >= threshold 50")
	hasLine(t, x, "guard: never banned: 10.9.0.254/32 is protected (default gateway)")
	hasLine(t, x, "verdict: spared", "default gateway", "90 syn_recv from 10.9.0.254 >= 50")

	x = explainOf(t, p, g, w, nil, "198.51.100.7/32")
	if x.Outcome != ExplainSpared || x.Guard == nil || x.Guard.Why != "allow list" || x.Planned != nil {
		t.Fatalf("allowed: %+v", x)
	}
	hasLine(t, x, "guard: never banned: 198.51.100.7/32 is protected (allow list)")

	x = explainOf(t, p, g, w, nil, "203.0.113.40/32")
	if x.Outcome != ExplainBelow || x.Offence != nil || x.Rules[0].Peak != 7 || x.Rules[0].Hits != 0 || x.Seen[0].SynRecv != 7 {
		t.Fatalf("below: %+v", x)
	}
	hasLine(t, x, "rule syn-flood", "peak 7 syn_recv below threshold 50", "only 0 of 3 samples")

	// Inside the /24 the guard spares (it holds the gateway), a quiet
	// address is below threshold, not spared: the spared prefix speaks
	// only for itself.
	quiet := append(halfOpen("10.9.0.2", 120), halfOpen("10.9.0.254", 90)...)
	quiet = append(quiet, halfOpen("10.9.0.40", 7)...)
	x = explainOf(t, p, g, window(t, p, quiet), nil, "10.9.0.40/32")
	if x.Outcome != ExplainBelow || x.Spared != nil || x.Prefix == nil || !x.Prefix.Crossed || x.Prefix.Guard == nil {
		t.Fatalf("quiet address in a spared prefix: %+v", x)
	}
	hasLine(t, x, "verdict: below threshold")

	x = explainOf(t, p, g, w, nil, "192.0.2.99/32")
	if x.Outcome != ExplainNotSeen {
		t.Fatalf("never seen: %+v", x)
	}
	hasLine(t, x, "no entry in the 3 sample(s)")

	// IPv6: three sources of 30 stay below both thresholds; five of about
	// 49 each make their /64 offend, and the address is banned through it.
	x = explainOf(t, p, g, w, nil, "2001:db8:5::2/128")
	if x.Outcome != ExplainBelow || x.Prefix == nil || x.Prefix.Crossed || x.Prefix.Rules[0].Peak != 90 {
		t.Fatalf("IPv6 below: %+v", x)
	}
	x = explainOf(t, p, g, w, nil, "2001:db8:6::b/128")
	pfx := netip.MustParsePrefix("2001:db8:6::/64")
	if x.Outcome != ExplainOffends || x.Offence == nil || x.Offence.Subject != pfx || x.Rules[0].Crossed ||
		x.Prefix == nil || !x.Prefix.Crossed || x.Prefix.Rules[0].Peak != 206 || x.Planned == nil || x.Planned.Prefix != pfx {
		t.Fatalf("IPv6 through its prefix: %+v", x)
	}
	hasLine(t, x, "prefix 2001:db8:6::/64 (aggregation /64)", "peak 206 from 5 sources", "offends as a prefix")
	hasLine(t, x, "ruleset: the next run bans 2001:db8:6::/64")

	// The prefix itself: judged against the prefix threshold, and the
	// offender inside a broader subject is listed.
	x = explainOf(t, p, g, w, nil, "2001:db8:6::/64")
	if x.Outcome != ExplainOffends || len(x.Rules) != 2 || x.Rules[0].Threshold != 200 || !x.Rules[0].Crossed {
		t.Fatalf("IPv6 prefix: %+v", x)
	}
	x = explainOf(t, p, g, w, nil, "10.0.0.0/8")
	if len(x.Inside) != 1 || x.Inside[0].Subject != netip.MustParsePrefix("10.9.0.2/32") || len(x.Rules) != 0 {
		t.Fatalf("broad prefix: %+v", x)
	}
}

// TestExplainState explains an attacker whose ban the store holds: the
// stored ban with its time left, the history, and escalation calling the
// evidence stale (no drop counter moved), so the run changes nothing.
func TestExplainState(t *testing.T) {
	p, g, w := explainLab(t)
	st := newState(t)
	now := time.Now()
	pfx := netip.MustParsePrefix("10.9.0.2/32")
	st.Upsert(state.Ban{Prefix: pfx, Since: now.Add(-2 * time.Minute), Until: now.Add(8 * time.Minute), Reason: "120 syn_recv", Rule: "syn-flood"})
	st.Record(pfx, now.Add(-2*time.Minute), 10*time.Minute)
	x := explainOf(t, p, g, w, st, "10.9.0.2/32")
	if x.Stored == nil || x.Stored.Prefix != pfx || x.History == nil || x.History.Bans != 1 || x.Escalation != "stale" || x.Decided != nil {
		t.Fatalf("stored attacker: %+v", x)
	}
	if x.Planned == nil || x.Planned.Timeout > 8*time.Minute || x.Planned.Timeout < 7*time.Minute {
		t.Errorf("the stored ban is restored with its time left: %+v", x.Planned)
	}
	hasLine(t, x, "state store: banned as 10.9.0.2/32", "left", "rule syn-flood")
	hasLine(t, x, "history: banned 1 time(s)", "for 10m0s")
	hasLine(t, x, "escalation: stale")
	hasLine(t, x, "kernel: not read in this test")
}
