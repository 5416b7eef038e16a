package detect

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/synban/synban/policy"
)

// ruleCounts is the plain reading of a rule, independent of Analyze's
// compiled counters: c's state is one r's state stands for (syn_recv
// includes NEW_SYN_RECV; any is every state but LISTEN) and, when r lists
// ports, c's local port is one of them.
func ruleCounts(r *policy.Rule, c *Conn) bool {
	var ok bool
	switch r.State {
	case policy.StateSynRecv:
		ok = c.State == SynRecv || c.State == NewSynRecv
	case policy.StateEstablished:
		ok = c.State == Established
	case policy.StateAny:
		ok = c.State >= Established && c.State <= NewSynRecv && c.State != Listen
	}
	return ok && (len(r.Ports) == 0 || slices.Contains(r.Ports, c.Local.Port()))
}

// TestRuleCounts checks the plain reading against Analyze itself: for
// every state and a port inside and outside the rule's list, a lone
// connection is counted exactly when Analyze, with threshold 1, gives its
// source a verdict.
func TestRuleCounts(t *testing.T) {
	p := policy.Default()
	p.Prefix.Enabled = false
	for _, st := range []policy.State{policy.StateSynRecv, policy.StateEstablished, policy.StateAny} {
		for _, ports := range [][]uint16{nil, {80, 443}} {
			r := policy.Rule{Name: "r", State: st, Threshold: 1, Ports: ports}
			p.Rules = []policy.Rule{r}
			for s := TCPState(0); s <= NewSynRecv+1; s++ {
				for _, port := range []uint16{80, 22} {
					c := Conn{Local: netip.AddrPortFrom(mustAddr("192.0.2.1"), port), Remote: netip.MustParseAddrPort("198.51.100.9:4000"), State: s}
					analyzed := len(Analyze(p, []Sample{{Conns: []Conn{c}}}, nil).Verdicts) == 1
					if got := ruleCounts(&r, &c); got != analyzed {
						t.Errorf("rule %s ports %v, state %d port %d: counted = %v, Analyze verdict = %v", st, ports, s, port, got, analyzed)
					}
				}
			}
		}
	}
}

// naiveJudge counts every connection-counting rule over subject in each
// sample, plainly, and checks it against thr(rule) with at least
// minSources addresses in at least minHits samples: what explain's own
// count was before AnalyzeSubject, kept as the oracle.
func naiveJudge(p *policy.Policy, samples []Sample, subject netip.Prefix, thr func(*policy.Rule) int, minSources int) []RuleCheck {
	out := make([]RuleCheck, 0, len(p.Rules))
	for ri := range p.Rules {
		r := &p.Rules[ri]
		if r.State == policy.StateSynRate {
			continue
		}
		rc := RuleCheck{Rule: r.Name, State: r.State, Ports: append([]uint16{}, r.Ports...), Threshold: thr(r),
			Counts: make([]int, len(samples)), Sources: make([]int, len(samples))}
		for si, s := range samples {
			srcs := map[netip.Addr]bool{}
			for ci := range s.Conns {
				c := &s.Conns[ci]
				if a := c.Remote.Addr().Unmap(); subject.Contains(a) && ruleCounts(r, c) {
					rc.Counts[si]++
					srcs[a] = true
				}
			}
			rc.Sources[si] = len(srcs)
			rc.Peak = max(rc.Peak, rc.Counts[si])
			if rc.Counts[si] >= rc.Threshold && rc.Sources[si] >= minSources {
				rc.Hits++
			}
		}
		rc.Crossed = rc.Hits >= max(p.Sample.MinHits, 1)
		out = append(out, rc)
	}
	return out
}

// TestAnalyzeSubject checks, on random windows, that AnalyzeSubject
// reports what Analyze reports, and that its counts of every subject (an
// address, its aggregation prefix, a prefix inside or around that, an
// address never seen) are the plain count of the subject's connections.
func TestAnalyzeSubject(t *testing.T) {
	var r rng
	v4 := []netip.Addr{mustAddr("203.0.113.1"), mustAddr("203.0.113.2"), mustAddr("203.0.113.77"), mustAddr("198.51.100.5")}
	v6 := []netip.Addr{mustAddr("2001:db8::1"), mustAddr("2001:db8::2"), mustAddr("2001:db8:1::9")}
	pool := append(slices.Clone(v4), v6...)
	states := []TCPState{SynRecv, NewSynRecv, Established, TimeWait, CloseWait, SynSent}
	ports := []uint16{80, 443, 22}
	for round := range 60 {
		p := policy.Default()
		p.Rules = []policy.Rule{
			synRule("syn", 3+r.intn(6)),
			synRule("syn-web", 2+r.intn(6), 443, 80),
			{Name: "est", State: policy.StateEstablished, Threshold: 2 + r.intn(5)},
			{Name: "any", State: policy.StateAny, Threshold: 4 + r.intn(8), Ports: []uint16{80}},
			{Name: "syn-rate", State: policy.StateSynRate, Threshold: 200},
		}
		p.Prefix.Enabled = round%5 != 0
		p.Prefix.IPv4Threshold, p.Prefix.IPv6Threshold = 4+r.intn(10), 4+r.intn(10)
		p.Sample.MinHits = 1 + r.intn(2)
		samples := make([]Sample, 1+r.intn(3))
		for si := range samples {
			for _, a := range pool {
				for range r.intn(10) {
					local := netip.AddrPortFrom(mustAddr("192.0.2.10"), ports[r.intn(len(ports))])
					if a.Is6() {
						local = netip.AddrPortFrom(mustAddr("2001:db8:ffff::10"), local.Port())
					}
					samples[si].Conns = append(samples[si].Conns, Conn{Local: local, Remote: netip.AddrPortFrom(a, uint16(1024+r.intn(60000))), State: states[r.intn(len(states))]})
				}
			}
			r.shuffle(samples[si].Conns)
		}
		want := Analyze(p, samples, nil)
		subjects := []netip.Prefix{
			netip.MustParsePrefix("203.0.113.1/32"), netip.MustParsePrefix("203.0.113.0/24"),
			netip.MustParsePrefix("203.0.113.0/28"), netip.MustParsePrefix("203.0.0.0/16"),
			netip.MustParsePrefix("198.51.100.5/32"), netip.MustParsePrefix("198.51.100.6/32"),
			netip.MustParsePrefix("2001:db8::2/128"), netip.MustParsePrefix("2001:db8::/64"),
			netip.MustParsePrefix("2001:db8:1::9/128"), netip.MustParsePrefix("2001:db8:2::1/128"),
		}
		for _, subject := range subjects {
			name := fmt.Sprintf("round %d %s", round, subject)
			rep, sc := AnalyzeSubject(p, samples, nil, subject)
			if !reflect.DeepEqual(rep, want) {
				t.Fatalf("%s: report %s, Analyze's %s", name, brief(rep.Verdicts), brief(want.Verdicts))
			}
			var wantRules, wantPfx []RuleCheck
			single := subject.Bits() == subject.Addr().BitLen()
			if single {
				wantRules = naiveJudge(p, samples, subject, func(r *policy.Rule) int { return r.Threshold }, 1)
			}
			bits, thr := p.Prefix.Aggregation(subject.Addr().Is4())
			var wantPrefix netip.Prefix
			if bits > 0 && subject.Bits() >= bits {
				wantPrefix = netip.PrefixFrom(subject.Addr(), bits).Masked()
				wantPfx = naiveJudge(p, samples, wantPrefix, func(*policy.Rule) int { return thr }, 2)
				if wantPrefix == subject {
					wantRules = wantPfx
				}
			} else {
				thr = 0
			}
			if sc.Prefix != wantPrefix || sc.PrefixThreshold != thr {
				t.Errorf("%s: prefix %s threshold %d, want %s %d", name, sc.Prefix, sc.PrefixThreshold, wantPrefix, thr)
			}
			if !reflect.DeepEqual(sc.Rules, wantRules) {
				t.Errorf("%s: rules\n%+v\nwant\n%+v", name, sc.Rules, wantRules)
			}
			if !reflect.DeepEqual(sc.PrefixRules, wantPfx) {
				t.Errorf("%s: prefix rules\n%+v\nwant\n%+v", name, sc.PrefixRules, wantPfx)
			}
		}
	}
}

// TestAnalyzeSubjectCrossed checks a judgement that crosses: the address
// and its prefix offend exactly when Analyze gives them a verdict.
func TestAnalyzeSubjectCrossed(t *testing.T) {
	var r rng
	local := netip.MustParseAddrPort("192.0.2.10:80")
	a, b := mustAddr("203.0.113.1"), mustAddr("203.0.113.2")
	samples := []Sample{
		sampleOf(flood(a, local, 60, &r), flood(b, local, 10, &r)),
		sampleOf(flood(a, local, 40, &r), flood(b, local, 90, &r)),
		sampleOf(flood(a, local, 75, &r), flood(b, local, 10, &r)),
	}
	p := policy.Default()
	p.Sample.Count, p.Sample.MinHits = 3, 2
	p.Prefix.IPv4Threshold = 80
	_, sc := AnalyzeSubject(p, samples, nil, netip.PrefixFrom(a, 32))
	syn := sc.Rules[0]
	if syn.Rule != "syn-flood" || !slices.Equal(syn.Counts, []int{60, 40, 75}) || syn.Peak != 75 || syn.Hits != 2 || !syn.Crossed {
		t.Errorf("address: %+v", syn)
	}
	pfx := sc.PrefixRules[0]
	if sc.Prefix != netip.MustParsePrefix("203.0.113.0/24") || sc.PrefixThreshold != 80 ||
		!slices.Equal(pfx.Counts, []int{70, 130, 85}) || !slices.Equal(pfx.Sources, []int{2, 2, 2}) || pfx.Hits != 2 || !pfx.Crossed {
		t.Errorf("prefix %s (threshold %d): %+v", sc.Prefix, sc.PrefixThreshold, pfx)
	}
}

// TestAnalyzeSubjectUnconnected checks that explain's counts are the
// run's: a socket connected to no one (remote 0.0.0.0:0, as a bound,
// closed socket shows) is no source for Analyze, so neither is it counted
// for the subject 0.0.0.0, even by a rule counting every state.
func TestAnalyzeSubjectUnconnected(t *testing.T) {
	p := policy.Default()
	p.Rules = []policy.Rule{{Name: "any", State: policy.StateAny, Threshold: 1}}
	unconnected := Conn{Local: netip.MustParseAddrPort("192.0.2.1:80"), Remote: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), State: Close}
	samples := []Sample{{Conns: []Conn{unconnected, unconnected, unconnected}}}
	rep, sc := AnalyzeSubject(p, samples, nil, netip.MustParsePrefix("0.0.0.0/32"))
	if len(rep.Verdicts) != 0 || rep.Sources != 0 {
		t.Fatalf("Analyze: %d sources, verdicts %s", rep.Sources, brief(rep.Verdicts))
	}
	if len(sc.Rules) != 1 || sc.Rules[0].Peak != 0 || sc.Rules[0].Crossed || len(sc.PrefixRules) != 1 || sc.PrefixRules[0].Peak != 0 {
		t.Errorf("subject 0.0.0.0: rules %+v, prefix %s rules %+v", sc.Rules, sc.Prefix, sc.PrefixRules)
	}
}
