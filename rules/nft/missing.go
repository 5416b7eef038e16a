package nft

import (
	"context"
	"fmt"
)

// Missing lists, without changing anything, what of synban's structure the
// kernel lacks: its table, or (sets mode) the operator's table, and the ban
// sets in it. An empty list means the structure bans live in is there. It
// is what synban status reports after an outside flush or a reboot.
func (b *Backend) Missing(ctx context.Context) ([]string, error) {
	name, fam := b.target()
	famName := b.family
	c, done, err := b.conn()
	if err != nil {
		return nil, fmt.Errorf("missing structure: %w", err)
	}
	defer done()
	st, err := readState(ctx, c, name, fam, nil)
	if err != nil {
		return nil, fmt.Errorf("missing structure: %w", err)
	}
	if st.table == nil {
		return []string{fmt.Sprintf("table %s %s", famName, name)}, nil
	}
	var out []string
	for _, s := range banSets {
		if st.sets[s] == nil {
			out = append(out, fmt.Sprintf("set %s in table %s %s", s, famName, name))
		}
	}
	return out, nil
}
