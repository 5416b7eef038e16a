package reliability

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/synban/synban/internal/netnstest"
)

// TestRunRacesOutsideChanges runs `synban run` over and over while another
// process (nft, in a loop) creates and deletes tables and chains of its own
// in the same namespace, and adds and removes chains in a table it keeps.
// Every run must succeed, synban's bans must all be there, and the other
// process's objects must be exactly as it left them.
func TestRunRacesOutsideChanges(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, "race")
	pol := writePolicy(t, killPolicy)
	dir := t.TempDir()
	addrs := make([]netip.Addr, 2000)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)})
	}
	writeState(t, dir, addrs)

	// The other process's own table, which it keeps.
	ns.MustRun("nft", `add table inet other
add chain inet other keep { type filter hook input priority 0; policy accept; }
add set inet other friends { type ipv4_addr; elements = { 192.0.2.1, 192.0.2.2 }; }
add rule inet other keep ip saddr @friends accept
add rule inet other keep tcp dport 22 accept`)
	otherBefore := ns.MustRun("nft", "-s", "list", "table", "inet", "other")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ops atomic.Int64
	var churnErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			script := fmt.Sprintf(`add table inet churn%d
add chain inet churn%d c { type filter hook input priority %d; policy accept; }
add rule inet churn%d c tcp dport 80 counter
add chain inet other tmp%d
add rule inet other tmp%d counter`, i, i, i%20-10, i, i, i)
			if _, err := ns.Run("nft", script); err != nil {
				churnErr = err
				return
			}
			if _, err := ns.Run("nft", fmt.Sprintf("delete table inet churn%d; delete chain inet other tmp%d", i, i)); err != nil {
				churnErr = err
				return
			}
			ops.Add(2)
		}
	}()

	const runs = 25
	for i := range runs {
		if i%5 == 4 {
			// An outside flush of synban's own table, which the next run restores.
			ns.MustRun("nft", "delete", "table", "inet", "synban")
		}
		if code, _, stderr := runSynban(t, ns, "run", "-c", pol, "--state-dir", dir); code != 0 {
			cancel()
			wg.Wait()
			t.Fatalf("run %d racing outside changes exited %d: %s", i+1, code, stderr)
		}
	}
	cancel()
	wg.Wait()
	if churnErr != nil {
		t.Fatalf("the other process's own changes failed while synban ran: %v", churnErr)
	}
	if ops.Load() == 0 {
		t.Fatal("the other process made no change during the runs: no race tested")
	}
	if got := ns.MustRun("nft", "-s", "list", "table", "inet", "other"); got != otherBefore {
		t.Fatalf("the other process's table changed:\n%s\nwant:\n%s", got, otherBefore)
	}
	got, ok := nftSetAddrs(t, ns, "synban", "ban_v4")
	if !ok || len(got) != len(addrs) {
		t.Fatalf("synban's ban set holds %d bans (table present: %v), want %d", len(got), ok, len(addrs))
	}
	tables := strings.Fields(ns.MustRun("nft", "list", "tables"))
	slices.Sort(tables)
	if got, want := strings.Join(tables, " "), "inet inet other synban table table"; got != want {
		t.Fatalf("tables after the race: %s, want inet other and inet synban only", got)
	}
	report(t, "%d runs succeeded racing %d outside table/chain changes; the other table is intact, %d bans in place", runs, ops.Load(), len(got))
}
