package detect

import (
	"net/netip"
	"testing"

	"github.com/synban/synban/policy"
)

// TestCounts checks Counts against Analyze itself: for every state and a
// port inside and outside the rule's list, a lone connection is counted by
// Counts exactly when Analyze, with threshold 1, gives its source a verdict.
func TestCounts(t *testing.T) {
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
					if got := Counts(&r, &c); got != analyzed {
						t.Errorf("rule %s ports %v, state %d port %d: Counts = %v, Analyze verdict = %v", st, ports, s, port, got, analyzed)
					}
				}
			}
		}
	}
}
