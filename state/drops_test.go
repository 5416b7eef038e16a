package state

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A version-1 document written before bans carried a drop count still
// loads; the count round-trips and Upsert keeps it.
func TestBanDropsCompatible(t *testing.T) {
	old := `{"version":1,"bans":[{"prefix":"10.0.0.1/32","since":"2026-11-24T12:00:00Z","until":"2026-11-24T12:10:00Z","reason":"flood"}],"history":[]}`
	st, err := DecodeLegacy([]byte(old))
	if err != nil {
		t.Fatalf("old document without drops: %v", err)
	}
	p := netip.MustParsePrefix("10.0.0.1/32")
	if b, ok := st.Find(p); !ok || b.Drops != 0 {
		t.Fatalf("old ban = %+v, %v; want drops 0", b, ok)
	}
	if !st.SetDrops(p, 42) {
		t.Fatal("SetDrops found no ban")
	}
	if st.SetDrops(netip.MustParsePrefix("10.0.0.2/32"), 1) {
		t.Fatal("SetDrops on an absent ban reported one")
	}
	st.Upsert(Ban{Prefix: p, Until: time.Date(2026, 11, 24, 13, 0, 0, 0, time.UTC)})
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"drops":42`) {
		t.Fatalf("encoded state %s lacks drops 42", data)
	}
	back, err := DecodeLegacy(data)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := back.Find(p); b.Drops != 42 {
		t.Fatalf("round trip: drops %d, want 42", b.Drops)
	}
}
