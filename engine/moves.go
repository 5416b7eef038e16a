package engine

import (
	"context"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backends"
)

// chainReader is implemented by backends that can list the base chains
// their table holds in the kernel (nftables).
type chainReader interface {
	KernelChains() ([]rules.BaseChain, error)
}

// chainMoves says what a run would move between hooks: the kernel's base
// chains of synban's table against rs's (rules.ChainMoves), e.g. "chain
// input → prerouting (priority -10 → -300, before conntrack)" when a table
// made with hooks = ["input"] meets the prerouting default. It only reads;
// nil when the backend is not nftables, has no table yet, or cannot be read
// (logged).
func (e *Engine) chainMoves(ctx context.Context, p *policy.Policy, choice backends.Choice, rs *rules.Ruleset) []string {
	if rs == nil || choice.Name != "nftables" || choice.Assumed {
		return nil
	}
	b, _, err := backends.Open(ctx, choice.Name, e.backendOptions(p, nil))
	if err != nil {
		e.log.Debug("cannot read the kernel's chains for the plan", "err", err)
		return nil
	}
	cr, ok := b.(chainReader)
	if !ok {
		return nil
	}
	have, err := cr.KernelChains()
	if err != nil {
		e.log.Warn("cannot read the kernel's chains for the plan", "err", err)
		return nil
	}
	return rules.ChainMoves(have, rs.BaseChains())
}
