package detect

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/synban/synban/policy"
)

// randomPolicy draws a policy of 1 to 6 rules over a small space of
// states, port sets and thresholds, so that rules often share a counter
// (same state and ports) with the same or different thresholds, and
// prefix aggregation at lengths that group the drawn addresses.
func randomPolicy(r *rng, samples int) *policy.Policy {
	p := policy.Default()
	states := []policy.State{policy.StateSynRecv, policy.StateEstablished, policy.StateAny}
	portSets := [][]uint16{nil, {80}, {443}, {80, 443}, {443, 80, 80}, {22}}
	p.Rules = nil
	for i := range 1 + r.intn(6) {
		p.Rules = append(p.Rules, policy.Rule{
			Name:      fmt.Sprintf("r%d", i),
			State:     states[r.intn(len(states))],
			Threshold: 1 + r.intn(6),
			Ports:     portSets[r.intn(len(portSets))],
			BanFor:    policy.Duration{Duration: time.Duration(r.intn(3)) * time.Hour},
		})
	}
	p.Sample.Count = samples
	p.Sample.MinHits = 1 + r.intn(samples)
	p.Prefix.Enabled = r.intn(3) > 0
	p.Prefix.IPv4Length = []int{16, 24, 30, 32}[r.intn(4)]
	p.Prefix.IPv6Length = []int{48, 64, 126, 128}[r.intn(4)]
	p.Prefix.IPv4Threshold = 1 + r.intn(12)
	p.Prefix.IPv6Threshold = 1 + r.intn(12)
	return p
}

// randomSample draws up to 300 connections from a small pool of remote
// addresses (IPv4, IPv6, IPv4-mapped, unspecified), local ports and every
// kernel state, LISTEN and out-of-range values included.
func randomSample(r *rng) Sample {
	remotes := []string{
		"203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.200", "198.51.100.7", "198.51.100.8",
		"::ffff:203.0.113.2", "::ffff:198.51.100.9", "0.0.0.0", "::",
		"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1:0:1::3", "2001:db8:2::1", "127.0.0.1", "::1",
	}
	locals := []string{"192.0.2.10:80", "192.0.2.10:443", "192.0.2.10:22", "[2001:db8::10]:80", "[2001:db8::10]:8080"}
	var s Sample
	s.Malformed = r.intn(2)
	pool := 1 + r.intn(len(remotes))
	for range r.intn(300) {
		s.Conns = append(s.Conns, Conn{
			Local:  netip.MustParseAddrPort(locals[r.intn(len(locals))]),
			Remote: netip.AddrPortFrom(netip.MustParseAddr(remotes[r.intn(pool)]), uint16(1024+r.intn(60000))),
			State:  TCPState(r.intn(14)),
		})
	}
	return s
}

// TestAnalyzeMatchesReference: on random policies, windows and guards, the
// streaming Analyze returns exactly the Report of the reference
// implementation (one counter per address and rule, kept for the window).
func TestAnalyzeMatchesReference(t *testing.T) {
	verdicts, spared := 0, 0
	for seed := range 3000 {
		r := rng(seed)
		n := 1 + r.intn(4)
		p := randomPolicy(&r, n)
		var samples []Sample
		for range n {
			samples = append(samples, randomSample(&r))
		}
		var g *policy.Guard
		switch r.intn(3) {
		case 1:
			g = p.Guard(nil)
		case 2:
			g = policy.NewGuard()
			g.Add(netip.MustParsePrefix([]string{"203.0.113.2/32", "198.51.100.0/24", "2001:db8:1::/64", "203.0.113.0/30"}[r.intn(4)]), "allow list")
		}
		got := Analyze(p, samples, g)
		want := refAnalyze(p, samples, g)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: rules %+v prefix %+v sample %+v\n got %s spared %v\nwant %s spared %v",
				seed, p.Rules, p.Prefix, p.Sample, brief(got.Verdicts), got.Spared, brief(want.Verdicts), want.Spared)
		}
		verdicts += len(got.Verdicts)
		spared += len(got.Spared)
	}
	// The draws must exercise the interesting paths, not agree on nothing.
	if verdicts < 3000 || spared < 300 {
		t.Errorf("only %d verdicts and %d spared over the draws; the generator is too tame", verdicts, spared)
	}
	t.Logf("%d verdicts, %d spared, all identical", verdicts, spared)
}
