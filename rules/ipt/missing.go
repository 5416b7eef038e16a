package ipt

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Missing lists, without changing anything, what of synban's structure the
// kernel lacks: its chain and a jump to it in iptables and ip6tables, and
// the ban ipsets. An empty list means the structure bans live in is there.
// It is what synban status reports after an outside flush or a reboot.
func (b *Backend) Missing(ctx context.Context) ([]string, error) {
	var out []string
	err := b.run(func(h *netlink.Handle) error {
		err := b.eachChain(ctx, func(f fam, exists bool) error {
			if !exists {
				out = append(out, fmt.Sprintf("%s chain %s", f.name, b.chain))
				return nil
			}
			jumped := false
			for _, c := range jumpChains() {
				pos, _, err := b.jumpPositions(f.ipt, c)
				if err != nil {
					return fmt.Errorf("list %s chain %s: %w", f.name, c, err)
				}
				jumped = jumped || len(pos) > 0
			}
			if !jumped {
				out = append(out, fmt.Sprintf("%s jump to chain %s", f.name, b.chain))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, s := range banSets {
			_, err := h.IpsetList(s)
			switch {
			case isNoSet(err):
				out = append(out, "ipset "+s)
			case err != nil:
				return fmt.Errorf("list ipset %s: %w", s, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("iptables missing structure: %w", err)
	}
	return out, nil
}
