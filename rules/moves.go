package rules

import (
	"fmt"
	"slices"
)

// conntrackPriority is the priority of conntrack's own hook
// (NF_IP_PRI_CONNTRACK): prerouting chains below it run before conntrack.
const conntrackPriority = -200

// Stage says where a base chain runs relative to conntrack: "before
// conntrack" (ingress; prerouting below priority -200) or "after conntrack".
func (bc BaseChain) Stage() string {
	if bc.Hook == HookIngress || bc.Hook == HookPrerouting && bc.Priority < conntrackPriority {
		return "before conntrack"
	}
	return "after conntrack"
}

// ChainMoves says in words how the base chains have (the kernel's) become
// want (a run's): "chain input → prerouting (priority -10 → -300, before
// conntrack)", a chain added or removed, a priority changed. Chains that
// stay as they are are not named; nil when nothing moves or when have is
// empty (no table yet: everything is new).
func ChainMoves(have, want []BaseChain) []string {
	if len(have) == 0 {
		return nil
	}
	same := func(a, b BaseChain) bool { return a.Name == b.Name && a.Hook == b.Hook && a.Device == b.Device }
	var gone, added []BaseChain
	var out []string
	for _, h := range have {
		i := slices.IndexFunc(want, func(w BaseChain) bool { return same(h, w) })
		switch {
		case i < 0:
			gone = append(gone, h)
		case want[i].Priority != h.Priority:
			out = append(out, fmt.Sprintf("chain %s: priority %d → %d (%s)", h.Name, h.Priority, want[i].Priority, want[i].Stage()))
		}
	}
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h BaseChain) bool { return same(h, w) }) {
			added = append(added, w)
		}
	}
	// Pair a removed chain with an added one: the drop moves hooks.
	for len(gone) > 0 && len(added) > 0 {
		g, a := gone[0], added[0]
		gone, added = gone[1:], added[1:]
		out = append(out, fmt.Sprintf("chain %s → %s (priority %d → %d, %s)", g.Name, a.Name, g.Priority, a.Priority, a.Stage()))
	}
	for _, g := range gone {
		out = append(out, fmt.Sprintf("chain %s removed", g.Name))
	}
	for _, a := range added {
		out = append(out, fmt.Sprintf("chain %s added (priority %d, %s)", a.Name, a.Priority, a.Stage()))
	}
	return out
}
