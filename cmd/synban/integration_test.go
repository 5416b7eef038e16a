package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// handRuleset is an operator's hand-written ruleset: an input chain with
// policy drop that accepts established traffic, loopback, ssh and http.
const handRuleset = `table inet filter {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iif "lo" accept
		tcp dport { 22, 80 } accept
	}
}
`

// loadNFT writes text to a file and loads it with nft -f in the victim.
func (l *lab) loadNFT(text string) {
	l.t.Helper()
	file := filepath.Join(l.t.TempDir(), "load.nft")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		l.t.Fatal(err)
	}
	l.victim.MustRun("nft", "-f", file)
}

// setPolicy replaces the lab's policy file.
func (l *lab) setPolicy(text string) {
	l.t.Helper()
	if err := os.WriteFile(l.policy, []byte(text), 0o600); err != nil {
		l.t.Fatal(err)
	}
}

// floodAndBan floods the victim, waits for the half-open entries and runs
// synban, which must ban the attacker.
func (l *lab) floodAndBan() string {
	l.t.Helper()
	l.flood(200)
	netnstest.Eventually(l.t, 10*time.Second, func() bool { return l.halfOpen(attackerAddr) >= 150 },
		"the flood left fewer than 150 half-open entries in the victim")
	out, err := l.synban("run", "--backend", "nftables")
	if err != nil {
		l.t.Fatalf("synban run: %v", err)
	}
	if st := l.status("nftables"); !st.banned(attackerAddr + "/32") {
		l.t.Fatalf("attacker %s not banned after the flood: %+v\n%s", attackerAddr, st.Bans, out)
	}
	return out
}

// chainPackets sums the packets of rule in chain.
func (s statusJSON) chainPackets(chain, rule string) uint64 {
	var n uint64
	for _, c := range s.Counters {
		if c.Chain == chain && c.Rule == rule {
			n += c.Packets
		}
	}
	return n
}

// TestHandWrittenRulesetUntouched: with an operator's input chain (policy
// drop, ssh and http accepted) loaded, synban's own table bans the
// attacker, drops its packets, and leaves the operator's table byte for
// byte unchanged across runs. Then `nft flush ruleset` wipes everything;
// the next run restores synban's table and the ban, and says so.
func TestHandWrittenRulesetUntouched(t *testing.T) {
	requireFloodTools(t)
	l := newLab(t, e2ePolicy)
	l.loadNFT(handRuleset)
	before := l.victim.MustRun("nft", "list", "table", "inet", "filter")

	l.floodAndBan()
	if out, err := l.synban("run", "--backend", "nftables"); err != nil {
		t.Fatalf("second synban run: %v: %s", err, out)
	}
	if after := l.victim.MustRun("nft", "list", "table", "inet", "filter"); after != before {
		t.Fatalf("synban changed the hand-written table:\n--- before\n%s\n--- after\n%s", before, after)
	}
	drops := l.status("nftables").packets("ban_v4")
	sent := l.flood(100)
	netnstest.Eventually(t, 10*time.Second, func() bool { return l.status("nftables").packets("ban_v4") >= drops+uint64(sent) },
		"ban_v4 drop counter did not rise by the 100 flood packets (was %d)", drops)
	if after := l.victim.MustRun("nft", "list", "table", "inet", "filter"); after != before {
		t.Fatalf("the hand-written table changed while synban dropped:\n--- before\n%s\n--- after\n%s", before, after)
	}

	// Restore after `nft flush ruleset`.
	l.victim.MustRun("nft", "flush", "ruleset")
	out, err := l.synban("run", "--backend", "nftables")
	if err != nil {
		t.Fatalf("synban run after flush: %v: %s", err, out)
	}
	if !strings.Contains(out, "synban's firewall state was missing and has been restored") || !strings.Contains(out, "level=WARN") {
		t.Errorf("no WARN about the restore in:\n%s", out)
	}
	if st := l.status("nftables"); !st.banned(attackerAddr + "/32") {
		t.Fatalf("ban not restored after nft flush ruleset: %+v", st.Bans)
	}
	if list := l.victim.MustRun("nft", "list", "set", "inet", "synban", "ban_v4"); !strings.Contains(list, attackerAddr) {
		t.Errorf("nft does not show the restored ban:\n%s", list)
	}
	drops = l.status("nftables").packets("ban_v4")
	sent = l.flood(50)
	netnstest.Eventually(t, 10*time.Second, func() bool { return l.status("nftables").packets("ban_v4") >= drops+uint64(sent) },
		"restored ban does not drop: ban_v4 counter did not rise by 50 (was %d)", drops)
}

// TestSetsModeOperatorTable: in sets mode synban fills its sets inside a
// table the operator made from `synban render nft-include` and their own
// ruleset, creates no table, and the operator's rule drops the attacker.
func TestSetsModeOperatorTable(t *testing.T) {
	requireFloodTools(t)
	l := newLab(t, e2ePolicy+"\n[nftables]\nmode = \"sets\"\nsets_table = \"filter\"\n")
	// Before the sets exist, a run fails and names the fix.
	out, err := l.synban("run", "--backend", "nftables")
	if err == nil || !strings.Contains(out, "synban render nft-include") {
		t.Fatalf("run without the operator's table: %v\n%s", err, out)
	}
	inc, err := l.synban("render", "nft-include")
	if err != nil {
		t.Fatalf("render nft-include: %v: %s", err, inc)
	}
	if !strings.Contains(inc, "table inet filter {") || !strings.Contains(inc, "set ban_v4 {") {
		t.Fatalf("include file:\n%s", inc)
	}
	l.loadNFT(handRuleset)
	l.loadNFT(inc)
	l.victim.MustRun("nft", "insert", "rule", "inet", "filter", "input", "ip", "saddr", "@ban_v4", "counter", "drop", "comment", `"ban_v4"`)
	chain := l.victim.MustRun("nft", "list", "chain", "inet", "filter", "input")

	l.floodAndBan()
	if tables := l.victim.MustRun("nft", "list", "tables"); strings.TrimSpace(tables) != "table inet filter" {
		t.Errorf("sets mode created tables: %q", tables)
	}
	if got := l.victim.MustRun("nft", "list", "chain", "inet", "filter", "input"); got != chain {
		t.Errorf("sets mode changed the operator's chain:\n%s\nwant\n%s", got, chain)
	}
	if list := l.victim.MustRun("nft", "list", "set", "inet", "filter", "ban_v4"); !strings.Contains(list, attackerAddr) {
		t.Errorf("the operator's ban_v4 lacks the attacker:\n%s", list)
	}
	drops := l.status("nftables").chainPackets("input", "ban_v4")
	sent := l.flood(100)
	netnstest.Eventually(t, 10*time.Second, func() bool { return l.status("nftables").chainPackets("input", "ban_v4") >= drops+uint64(sent) },
		"the operator's ban_v4 rule did not count the 100 flood packets (was %d)", drops)

	// Reloading the include file (as `systemctl restart nftables` does after
	// a flush) empties nothing it should not; after a flush and reload the
	// next run refills the sets from the state store.
	l.victim.MustRun("nft", "flush", "ruleset")
	l.loadNFT(handRuleset)
	l.loadNFT(inc)
	out, err = l.synban("run", "--backend", "nftables")
	if err != nil {
		t.Fatalf("run after reload: %v: %s", err, out)
	}
	if !strings.Contains(out, "has been restored") {
		t.Errorf("no WARN about refilling the reloaded sets in:\n%s", out)
	}
	if list := l.victim.MustRun("nft", "list", "set", "inet", "filter", "ban_v4"); !strings.Contains(list, attackerAddr) {
		t.Errorf("ban_v4 not refilled after the reload:\n%s", list)
	}
}

// TestIncludeFileRestoresTable: the table-mode include file loads with
// nft -f and the next run fills it, changing no chain.
func TestIncludeFileRestoresTable(t *testing.T) {
	requireFloodTools(t)
	l := newLab(t, e2ePolicy)
	inc, err := l.synban("render", "nft-include")
	if err != nil {
		t.Fatalf("render nft-include: %v: %s", err, inc)
	}
	l.loadNFT(inc)
	chains := l.victim.MustRun("nft", "-a", "list", "chains")
	l.floodAndBan()
	if got := l.victim.MustRun("nft", "-a", "list", "chains"); got != chains {
		t.Errorf("the run replaced chains of the include file:\n%s\nwant\n%s", got, chains)
	}
	drops := l.status("nftables").packets("ban_v4")
	// hping3 may stop early, counting the victim's retransmitted SYN-ACKs
	// to the flood before the ban as replies: wait for what it sent.
	sent := l.flood(50)
	netnstest.Eventually(t, 10*time.Second, func() bool { return l.status("nftables").packets("ban_v4") >= drops+uint64(sent) },
		"ban_v4 drop counter did not rise by the %d packets sent (was %d)", sent, drops)
}

// TestIngressHookDrops: with the ingress hook on the victim's veth to the
// attacker, the ban drops the attacker's packets in the ingress chain,
// before the input chain sees them.
func TestIngressHookDrops(t *testing.T) {
	requireFloodTools(t)
	l := newLab(t, e2ePolicy)
	dev := strings.Fields(l.victim.MustRun("ip", "-o", "addr", "show", "to", victimAddr))
	if len(dev) < 2 {
		t.Fatalf("no device with %s: %v", victimAddr, dev)
	}
	ifname := dev[1]
	l.setPolicy(e2ePolicy + "\n[nftables]\nhooks = [\"input\", \"ingress\"]\ningress_devices = [\"" + ifname + "\"]\n")
	l.floodAndBan()
	if out := l.victim.MustRun("nft", "list", "chain", "inet", "synban", "ingress_"+ifname); !strings.Contains(out, `device "`+ifname+`"`) {
		t.Fatalf("ingress chain:\n%s", out)
	}
	st := l.status("nftables")
	ingress, input := st.chainPackets("ingress_"+ifname, "ban_v4"), st.chainPackets("input", "ban_v4")
	sent := l.flood(100)
	netnstest.Eventually(t, 10*time.Second, func() bool {
		return l.status("nftables").chainPackets("ingress_"+ifname, "ban_v4") >= ingress+uint64(sent)
	}, "the ingress chain's ban_v4 counter did not rise by 100 (was %d)", ingress)
	if now := l.status("nftables").chainPackets("input", "ban_v4"); now != input {
		t.Errorf("the input chain dropped %d packets the ingress chain should have", now-input)
	}
}
