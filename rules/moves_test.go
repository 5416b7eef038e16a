package rules

import (
	"slices"
	"testing"
)

func TestChainMoves(t *testing.T) {
	input := BaseChain{Name: "input", Hook: HookInput, Priority: -10}
	pre := BaseChain{Name: "prerouting", Hook: HookPrerouting, Priority: -300}
	fwd := BaseChain{Name: "forward", Hook: HookForward, Priority: -10}
	for _, tc := range []struct {
		name       string
		have, want []BaseChain
		out        []string
	}{
		{"no table yet", nil, []BaseChain{pre}, nil},
		{"unchanged", []BaseChain{pre}, []BaseChain{pre}, nil},
		{"the previous default upgraded", []BaseChain{input}, []BaseChain{pre},
			[]string{"chain input → prerouting (priority -10 → -300, before conntrack)"}},
		{"back to input", []BaseChain{pre}, []BaseChain{input},
			[]string{"chain prerouting → input (priority -300 → -10, after conntrack)"}},
		{"connection cap keeps input", []BaseChain{input}, []BaseChain{pre, input},
			[]string{"chain prerouting added (priority -300, before conntrack)"}},
		{"forward dropped", []BaseChain{input, fwd}, []BaseChain{input}, []string{"chain forward removed"}},
		{"priority after conntrack", []BaseChain{pre}, []BaseChain{{Name: "prerouting", Hook: HookPrerouting, Priority: -150}},
			[]string{"chain prerouting: priority -300 → -150 (after conntrack)"}},
		{"ingress", []BaseChain{input}, []BaseChain{{Name: "ingress_eth0", Hook: HookIngress, Device: "eth0", Priority: -300}, input},
			[]string{"chain ingress_eth0 added (priority -300, before conntrack)"}},
	} {
		if got := ChainMoves(tc.have, tc.want); !slices.Equal(got, tc.out) {
			t.Errorf("%s: ChainMoves = %q, want %q", tc.name, got, tc.out)
		}
	}
}
