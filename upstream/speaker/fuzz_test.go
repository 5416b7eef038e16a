package speaker

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/synban/synban/internal/prefixes"
	"github.com/synban/synban/upstream"
)

// FuzzParseDesired feeds arbitrary hand-off content to the strict reader
// and, for what it accepts, to Check: nothing panics, everything Check lets
// through is inside own_prefixes, RTBH only as an exact host route, no
// source broader than the minimum or covering a protected address, within
// the cap, and builds a GoBGP path.
func FuzzParseDesired(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seed := append(slices.Clone(fsExamples), rtbh("203.0.113.10/32", "192.0.2.66"), fs("203.0.113.10/32", "0.0.0.0/0"), rtbh("203.0.113.0/24", "192.0.2.66"))
	b, err := json.Marshal(upstream.Confirm(now, seed, upstream.DecideState{}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"version":1,"entries":[]}`))
	f.Add([]byte(`{"version":1,"entries":[{"announcement":{"kind":"rtbh","destination":"2001:db8:10::1/128","communities":["65535:666"],"next_hop":"2001:db8::66"},"confirmed":"2026-01-01T00:00:00Z"}]}`))
	cfg := testConfig()
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := upstream.ParseDesired("fuzz", data)
		if err != nil {
			return
		}
		var anns []upstream.Announcement
		for _, e := range d.Entries {
			anns = append(anns, e.Announcement)
		}
		ok, refused := upstream.Check(cfg, anns)
		if len(ok)+len(refused) != len(anns) {
			t.Fatalf("%d in, %d ok + %d refused", len(anns), len(ok), len(refused))
		}
		perFamily := map[string]int{}
		for _, a := range ok {
			if !prefixes.HeldByAny(cfg.OwnPrefixes, a.Destination) {
				t.Fatalf("let through a destination outside own_prefixes: %s", a.CLI())
			}
			if a.Kind == upstream.RTBH && a.Destination.Bits() != a.Destination.Addr().BitLen() {
				t.Fatalf("let through RTBH of a non-host prefix: %s", a.CLI())
			}
			if s := a.Source; s.IsValid() {
				minBits := cfg.MinSourceBits4
				if s.Addr().Is6() {
					minBits = cfg.MinSourceBits6
				}
				if s.Bits() < minBits {
					t.Fatalf("let through a broad source: %s", a.CLI())
				}
				for _, p := range cfg.Protected {
					if p.Overlaps(s) {
						t.Fatalf("let through a protected source: %s", a.CLI())
					}
				}
			}
			perFamily[a.Family()]++
			if perFamily[a.Family()] > cfg.MaxRules {
				t.Fatalf("over the cap in %s", a.Family())
			}
			m, err := announceMsg(a, probePeer)
			if err != nil {
				t.Fatalf("checked %s but its UPDATE fails: %v", a.CLI(), err)
			}
			if _, err := m.Serialize(); err != nil {
				t.Fatalf("checked %s but its UPDATE does not serialize: %v", a.CLI(), err)
			}
		}
	})
}
