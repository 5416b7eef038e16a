package crowdsec

import (
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Want is one ban the fleet asks for: the longest active ban decision on
// its prefix.
type Want struct {
	Prefix    netip.Prefix
	Remaining time.Duration
	Origin    string
	Scenario  string
	// ID is the LAPI decision's id, for logs.
	ID int64
}

// DesiredStats counts what Desired left out.
type DesiredStats struct {
	// NotBan counts decisions of another type (captcha, throttle, ...),
	// which synban cannot enforce.
	NotBan int
	// Expired counts decisions with no time left.
	Expired int
	// Shorter counts decisions dropped because a longer one covers the
	// same prefix.
	Shorter int
}

// Desired turns the New list of a startup=true stream into the complete set
// of bans to enforce: only type ban, only with time left, one per prefix —
// the longest; on equal durations the lowest id, so the result does not
// depend on the stream's order. It is sorted by prefix (address, then
// length). Deleted is ignored: in a full stream, absence is deletion.
func Desired(s *Stream) ([]Want, DesiredStats) {
	var st DesiredStats
	best := make(map[netip.Prefix]int, len(s.New))
	out := make([]Want, 0, len(s.New))
	for i := range s.New {
		d := &s.New[i]
		if !strings.EqualFold(d.Type, "ban") {
			st.NotBan++
			continue
		}
		if d.Duration <= 0 {
			st.Expired++
			continue
		}
		w := Want{Prefix: d.Prefix, Remaining: d.Duration, Origin: d.Origin, Scenario: d.Scenario, ID: d.ID}
		j, ok := best[d.Prefix]
		if !ok {
			best[d.Prefix] = len(out)
			out = append(out, w)
			continue
		}
		st.Shorter++
		if cur := out[j]; w.Remaining > cur.Remaining || (w.Remaining == cur.Remaining && w.ID < cur.ID) {
			out[j] = w
		}
	}
	slices.SortFunc(out, func(a, b Want) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out, st
}
