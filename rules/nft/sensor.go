package nft

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
)

// hotSets are the sensor's sets, in listing order.
var hotSets = []string{rules.SetHot4, rules.SetHot6}

var _ rules.Sensor = (*Backend)(nil)

// SensorRead reads the sensor's hot sets: every source the SYN meter found
// over its limit, with the counter the meter's rule keeps for it (updated
// only on the over-limit path). IPv6 keys are the meter's masked key read as
// an address; the caller knows the meter's prefix length. A missing table
// or hot set (meter off, or a table made by an older synban) reads as
// empty.
func (b *Backend) SensorRead(ctx context.Context) (rules.SensorReading, error) {
	name, fam := b.target()
	c, done, err := b.conn()
	if err != nil {
		return rules.SensorReading{}, fmt.Errorf("read the sensor: %w", err)
	}
	defer done()
	st, err := readState(ctx, c, name, fam, hotSets)
	if err != nil {
		return rules.SensorReading{}, fmt.Errorf("read the sensor: %w", err)
	}
	var present []string
	out := rules.SensorReading{Counted: true}
	for _, set := range hotSets {
		if st.sets[set] == nil {
			continue
		}
		present = append(present, set)
		for _, e := range st.elems[set] {
			if !e.counted {
				continue
			}
			out.Sources = append(out.Sources, rules.SensorSource{
				Prefix: policy.Canonical(e.prefix), Packets: e.packets, Expires: e.expires,
			})
		}
	}
	out.Table = fmt.Sprintf("%s %s", b.family, name)
	if len(present) > 0 {
		out.Table += " " + strings.Join(present, ", ")
		out.InPlace = true
	}
	slices.SortFunc(out.Sources, func(x, y rules.SensorSource) int { return policy.ComparePrefixes(x.Prefix, y.Prefix) })
	return out, nil
}
