package ipt

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/rules"
)

// TestBanDropsPerEntry: the ban ipsets count per entry. A ban set made
// without counters (as the previous synban made it) is rebuilt with them,
// keeping its entries; the attacker's SYNs raise its own entry's count, not
// the others'; a refresh (ipset add -exist) keeps the count.
func TestBanDropsPerEntry(t *testing.T) {
	for _, prog := range programs {
		t.Run(prog, func(t *testing.T) {
			victim, attacker := pair(t, "cnt")
			b := newBackend(t, victim, prog, Options{})
			attackerBan := netip.MustParsePrefix("10.77.1.2/32")
			quiet := netip.MustParsePrefix("10.77.1.3/32")
			quietNet := netip.MustParsePrefix("2001:db8:77::/48")

			// The previous structure: ban_v4 without counters, one ban in it.
			victim.MustRun("ipset", "create", IPSetBan4, "hash:ip", "family", "inet", "timeout", "0", "comment", "maxelem", "4096")
			victim.MustRun("ipset", "add", IPSetBan4, quiet.Addr().String(), "timeout", "3000", "comment", "old ban")
			if out := victim.MustRun("ipset", "list", IPSetBan4); strings.Contains(out, "counters") {
				t.Fatalf("the old set already counts:\n%s", out)
			}

			bans := []rules.Ban{
				{Prefix: attackerBan, Timeout: 5 * time.Minute, Reason: "test ban"},
				{Prefix: quietNet, Timeout: 5 * time.Minute, Reason: "quiet net"},
			}
			res := mustApply(t, b, baseRS(bans...))
			if len(res.Changed) == 0 {
				t.Errorf("Apply over a ban set without counters = %+v, want it rebuilt", res)
			}
			if out := victim.MustRun("ipset", "list", IPSetBan4); !strings.Contains(out, "counters") || !strings.Contains(out, quiet.Addr().String()) {
				t.Fatalf("ban_v4 after Apply lacks counters or the old ban:\n%s", out)
			}
			before, err := b.BanDrops(tctx(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []netip.Prefix{attackerBan, quiet, quietNet} {
				if n, ok := before[p]; !ok || n != 0 {
					t.Errorf("BanDrops[%s] = %d (present %v) before any packet, want 0", p, n, ok)
				}
			}

			const n = 20
			if got := synProbe(t, attacker, "10.77.1.1", n); got != 0 {
				t.Fatalf("banned source got %d answers to %d SYNs, want 0", got, n)
			}
			after, err := b.BanDrops(tctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if after[attackerBan] < n {
				t.Errorf("BanDrops[%s] = %d after %d dropped SYNs, want >= %d", attackerBan, after[attackerBan], n, n)
			}
			if after[quiet] != 0 || after[quietNet] != 0 {
				t.Errorf("quiet bans counted %d and %d packets, want 0", after[quiet], after[quietNet])
			}

			// A refresh keeps the count.
			bans[0].Timeout = 10 * time.Minute
			if res := mustApply(t, b, baseRS(bans...)); res.Refreshed == 0 {
				t.Errorf("second Apply = %+v, want the bans refreshed", res)
			}
			again, err := b.BanDrops(tctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if again[attackerBan] != after[attackerBan] {
				t.Errorf("refresh changed the attacker's count from %d to %d", after[attackerBan], again[attackerBan])
			}
		})
	}
}
