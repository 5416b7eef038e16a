package nft

import (
	"fmt"

	"github.com/google/nftables"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/nft/spec"
)

// KernelChains reads the base chains of synban's table as the kernel holds
// them (name, hook, priority, device), for `plan` to say what a run would
// move; none when the table does not exist or in mode "sets". It changes
// nothing, so it works on a read-only backend.
func (b *Backend) KernelChains() ([]rules.BaseChain, error) {
	if b.setsMode() {
		return nil, nil
	}
	c, done, err := b.conn()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	defer done()
	name, fam := b.target()
	chains, err := c.ListChainsOfTableFamily(fam)
	if err != nil {
		return nil, fmt.Errorf("nftables: list chains of table %s: %w", name, err)
	}
	var out []rules.BaseChain
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != name || ch.Hooknum == nil {
			continue
		}
		bc := rules.BaseChain{Name: ch.Name, Hook: hookName(*ch.Hooknum), Device: ch.Device}
		if ch.Priority != nil {
			bc.Priority = int(*ch.Priority)
		}
		out = append(out, bc)
	}
	return out, nil
}

// hookName is the rules.BaseChain hook name of a kernel hook number.
func hookName(h nftables.ChainHook) string {
	for name, n := range spec.Hooks {
		if n == h {
			return name
		}
	}
	return fmt.Sprintf("hook %d", h)
}
