package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// floodFrom sends count SYNs to the victim's port 80 from each source in
// srcs (forged with hping3 -a; every source is a lab address the victim routes
// back into the attacker namespace), bounded in packets and time.
func (l *lab) floodFrom(srcs []string, count int) {
	l.t.Helper()
	var script strings.Builder
	for _, s := range srcs {
		fmt.Fprintf(&script, "hping3 -q -S -p 80 -i u200 -c %d -a %s %s >/dev/null 2>&1\n", count, s, victimAddr)
	}
	if out, err := l.attacker.Run("timeout", "120", "sh", "-c", script.String()); err != nil {
		l.t.Fatalf("flood from %d sources: %v\n%s", len(srcs), err, out)
	}
}

// TestPrefixFloodBannedAsOnePrefix: 200 sources from one /24, each below the
// per-address threshold, are banned as the /24.
func TestPrefixFloodBannedAsOnePrefix(t *testing.T) {
	requireFloodTools(t)
	l := newLab(t, `
[[rule]]
name = "syn-flood"
state = "syn_recv"
threshold = 50

[prefix]
enabled = true
ipv4_length = 24
ipv4_threshold = 200

[meter]
enabled = false
`)
	// 10.63.5.0/24 lives behind the attacker; its SYN-ACKs go there and die.
	l.victim.MustRun("ip", "route", "add", "10.63.5.0/24", "via", attackerAddr)
	var srcs []string
	for i := 1; i <= 200; i++ {
		srcs = append(srcs, fmt.Sprintf("10.63.5.%d", i))
	}
	l.floodFrom(srcs, 3)
	netnstest.Eventually(t, 10*time.Second, func() bool { return l.halfOpen("10.63.5.") >= 400 },
		"fewer than 400 half-open entries from 10.63.5.0/24")

	if out, err := l.synban("run", "--backend", "nftables"); err != nil {
		t.Fatalf("synban run: %v\n%s", err, out)
	}
	st := l.status("nftables")
	if len(st.Bans) != 1 || !st.banned("10.63.5.0/24") {
		t.Fatalf("want exactly 10.63.5.0/24 banned, got %+v", st.Bans)
	}
	// The kernel holds it as a prefix, not a bare address.
	set := l.victim.MustRun("nft", "list", "set", "inet", "synban", "ban_net_v4")
	if !strings.Contains(set, "10.63.5.0/24") {
		t.Fatalf("ban_net_v4 does not hold the /24:\n%s", set)
	}
}

// TestProtectedSourcesNeverBanned: an allowed address and the host's own
// address both flood, and neither is banned; the dry run says why.
func TestProtectedSourcesNeverBanned(t *testing.T) {
	requireFloodTools(t)
	l := newLab(t, e2ePolicy+`
[allow]
addresses = ["10.61.0.2"]
`)
	l.flood(200) // from attackerAddr, which the allow list holds
	// The victim floods itself from its own second address; its own kernel
	// must not answer the SYN-ACKs with RSTs. They are dropped on the way in:
	// a drop on the way out would fail the send and free the entry.
	l.victim.MustRun("nft", "add table inet selftest; add chain inet selftest in { type filter hook input priority 0; }; add rule inet selftest in ip daddr "+victimAddrC+" tcp flags & (syn | ack) == syn | ack drop")
	hping(t, l.victim, 200, victimAddr, "-a", victimAddrC)
	netnstest.Eventually(t, 10*time.Second, func() bool {
		return l.halfOpen(attackerAddr) >= 150 && l.halfOpen(victimAddrC) >= 150
	}, "the floods left fewer than 150 half-open entries each")

	plan, err := l.synban("plan")
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, plan)
	}
	for _, want := range []string{"spare 10.61.0.2/32", "allow list", "spare 10.62.0.1/32", "host address"} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan does not say %q:\n%s", want, plan)
		}
	}
	if out, err := l.synban("run", "--backend", "nftables"); err != nil {
		t.Fatalf("synban run: %v\n%s", err, out)
	}
	if st := l.status("nftables"); len(st.Bans) != 0 {
		t.Fatalf("protected sources were banned: %+v", st.Bans)
	}
}

// TestKOfNSamples: with half-open entries that die after about a second
// (tcp_synack_retries=0), a flood seen only by the first of three samples
// two seconds apart is banned when the policy asks for 1 of 3 and not when
// it asks for 2 of 3.
func TestKOfNSamples(t *testing.T) {
	requireFloodTools(t)
	const kOfN = `
[sample]
count = 3
interval = "2s"
min_hits = %d
` + e2ePolicy
	for _, tc := range []struct {
		minHits int
		banned  bool
	}{{2, false}, {1, true}} {
		t.Run(fmt.Sprintf("min_hits=%d", tc.minHits), func(t *testing.T) {
			l := newLab(t, fmt.Sprintf(kOfN, tc.minHits))
			l.victim.Sysctl("net.ipv4.tcp_synack_retries", "0")
			l.flood(200)
			if n := l.halfOpen(attackerAddr); n < 100 {
				t.Fatalf("only %d half-open entries right after the flood", n)
			}
			out, err := l.synban("run", "-v", "--backend", "nftables")
			if err != nil {
				t.Fatalf("synban run: %v\n%s", err, out)
			}
			if got := l.status("nftables").banned(attackerAddr + "/32"); got != tc.banned {
				t.Fatalf("min_hits=%d: attacker banned = %v, want %v\n%s", tc.minHits, got, tc.banned, out)
			}
		})
	}
}
