package synflood

import (
	"fmt"

	"github.com/synban/synban/policy"
)

// SpoofedPolicy returns the default policy with n rules for the spoofed
// flood benchmarks: the first counts syn_recv at threshold thr on every
// port; the others count every state on a mix of port sets (all, 80, 443,
// 22 and 80) at thresholds of 2 and up, so that most of them match each
// spoofed entry but none fires on a single one. Prefix aggregation is off:
// the generated sources fill whole /24s, which would fold them into
// prefixes. detect's, engine's and the bench harness's spoofed-flood
// measurements share it so that their figures compare.
func SpoofedPolicy(n, thr int) *policy.Policy {
	p := policy.Default()
	p.Prefix.Enabled = false
	p.Rules = []policy.Rule{{Name: "syn-flood", State: policy.StateSynRecv, Threshold: thr}}
	states := []policy.State{policy.StateSynRecv, policy.StateEstablished, policy.StateAny}
	ports := [][]uint16{nil, {80}, {443}, {22, 80}}
	for i := 1; i < n; i++ {
		p.Rules = append(p.Rules, policy.Rule{
			Name:      fmt.Sprintf("rule-%d", i),
			State:     states[i%len(states)],
			Threshold: 2 + i,
			Ports:     ports[(i/len(states))%len(ports)],
		})
	}
	return p
}
