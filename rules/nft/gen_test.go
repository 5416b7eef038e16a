package nft

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules"
)

func generation(t *testing.T, b *Backend) uint32 {
	t.Helper()
	g, err := b.Generation(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGeneration checks what moves the nftables generation id the engine
// relies on: every outside transaction and our own applies do, element
// timeouts and packet-path updates of a dynamic set do not; and an Apply
// vouches for the generation it leaves.
func TestGeneration(t *testing.T) {
	ns, b := setup(t, "gen")
	ctx := context.Background()
	if _, ok := b.AppliedGeneration(); ok {
		t.Fatal("AppliedGeneration is trusted before any Apply")
	}
	g0 := generation(t, b)
	ns.MustRun("nft", "add", "table", "ip", "other")
	g1 := generation(t, b)
	if g1 == g0 {
		t.Fatalf("an outside nft add table left the generation at %d", g0)
	}

	ban := rules.Ban{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Timeout: time.Hour, Reason: "test"}
	short := rules.Ban{Prefix: netip.MustParsePrefix("198.51.100.9/32"), Timeout: 2 * time.Second, Reason: "short"}
	apply(t, b, fullRuleset(ban, short))
	g2, ok := b.AppliedGeneration()
	if !ok || g2 == g1 || g2 != generation(t, b) {
		t.Fatalf("after Apply: AppliedGeneration = %d, %v; generation before %d, now %d", g2, ok, g1, generation(t, b))
	}
	// The same ruleset again: the apply vouches for the generation it leaves.
	apply(t, b, fullRuleset(ban))
	g3, ok := b.AppliedGeneration()
	if !ok || g3 != generation(t, b) {
		t.Fatalf("after a second Apply: AppliedGeneration = %d, %v; now %d", g3, ok, generation(t, b))
	}

	// An element timing out is no transaction.
	netnstest.Eventually(t, 10*time.Second, func() bool {
		bans, err := b.Bans(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range bans {
			if x.Prefix == short.Prefix {
				return false
			}
		}
		return true
	}, "ban %s did not time out", short.Prefix)
	if g := generation(t, b); g != g3 {
		t.Fatalf("an element timing out moved the generation from %d to %d", g3, g)
	}

	// Packets adding elements to a dynamic set (like synban's meter) are no
	// transaction either. The table is loaded first, then the generation read.
	loadFile(t, ns, `table ip dyn {
	set seen {
		type ipv4_addr
		flags dynamic,timeout
		timeout 1m
	}
	chain out {
		type filter hook output priority 0; policy accept;
		update @seen { ip daddr }
	}
}
`)
	g4 := generation(t, b)
	ns.MustRun("ip", "link", "set", "lo", "up")
	ns.MustRun("ping", "-c", "2", "-i", "0.2", "-W", "1", "127.0.0.1")
	if out := ns.MustRun("nft", "list", "set", "ip", "dyn", "seen"); !strings.Contains(out, "127.0.0.1") {
		t.Fatalf("the dynamic set has no element after the pings:\n%s", out)
	}
	if g := generation(t, b); g != g4 {
		t.Fatalf("packets updating a dynamic set moved the generation from %d to %d", g4, g)
	}

	// An outside element added to synban's ban set moves it.
	ns.MustRun("nft", "add", "element", "inet", "synban", rules.SetBan4, "{ 203.0.113.1 timeout 1h }")
	if g := generation(t, b); g == g4 {
		t.Fatalf("an outside nft add element left the generation at %d", g)
	}
}

// TestDecodeGen decodes a NEWGEN message body and one without the id.
func TestDecodeGen(t *testing.T) {
	// nfgenmsg, then NFTA_GEN_ID (len 8, type 1, big-endian 0x01020304).
	msg := []byte{0, 0, 0, 0, 8, 0, 1, 0, 1, 2, 3, 4}
	g, ok, err := decodeGen(msg)
	if err != nil || !ok || g != 0x01020304 {
		t.Fatalf("decodeGen = %#x, %v, %v; want 0x01020304, true, nil", g, ok, err)
	}
	if _, ok, err := decodeGen(msg[:4]); err != nil || ok {
		t.Fatalf("decodeGen without attributes = %v, %v; want false, nil", ok, err)
	}
	if _, _, err := decodeGen(append(msg[:4:4], 9, 0, 1)); err == nil {
		t.Fatal("decodeGen of a truncated attribute: no error")
	}
}
