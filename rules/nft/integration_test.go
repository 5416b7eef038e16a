package nft

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backendtest"
	"github.com/synban/synban/templates"
)

// loadFile writes text to a file and loads it with nft -f in ns.
func loadFile(t *testing.T, ns *netnstest.NS, text string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "load.nft")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.MustRun("nft", "-f", file)
}

func include(t *testing.T, rs *rules.Ruleset) string {
	t.Helper()
	var b strings.Builder
	if err := templates.NFTInclude(&b, rs, "test"); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// operatorTable is a hand-written table with an input chain that accepts
// ssh and http; the operator then loads synban's sets into it.
const operatorTable = `table inet filter {
	chain input {
		type filter hook input priority 0; policy drop;
		ct state established,related accept
		iif "lo" accept
		tcp dport { 22, 80 } accept
	}
}
`

func setsRuleset(bans ...rules.Ban) *rules.Ruleset {
	rs := fullRuleset(bans...)
	rs.Mode, rs.Table, rs.Family = rules.ModeSets, "filter", "inet"
	return rs
}

// TestSetsMode fills synban's sets inside a table the test made (from the
// sets-mode include file) and checks synban changes nothing else in it:
// chains, rules, other sets; Flush only empties the sets.
func TestSetsMode(t *testing.T) {
	ns, _ := setup(t, "sets")
	b, err := New(Options{NetNS: ns.Path(), Logger: testLogger(t), Table: "filter", Mode: rules.ModeSets})
	if err != nil {
		t.Fatal(err)
	}
	rs := setsRuleset(backendtest.SampleBans(time.Hour)...)
	ctx := context.Background()

	// No table yet: an error naming it and the include hint, nothing created.
	_, err = b.Apply(ctx, rs)
	if !errors.Is(err, ErrSetsMissing) || !strings.Contains(err.Error(), "table inet filter does not exist") ||
		!strings.Contains(err.Error(), "synban render nft-include") {
		t.Fatalf("Apply without the table = %v, want ErrSetsMissing naming the table and the hint", err)
	}
	if out := ns.MustRun("nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Fatalf("Apply in sets mode created something:\n%s", out)
	}

	// A table without synban's ban sets: the error names each one missing.
	loadFile(t, ns, operatorTable+"table inet filter {\n\tset allow_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t}\n}\n")
	_, err = b.Apply(ctx, rs)
	if !errors.Is(err, ErrSetsMissing) {
		t.Fatalf("Apply with missing sets = %v", err)
	}
	for _, s := range []string{"allow_v6", "ban_v4", "ban_net_v4", "ban_v6", "ban_net_v6"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not name missing set %s: %v", s, err)
		}
	}
	if strings.Contains(err.Error(), "no set allow_v4") {
		t.Errorf("error names allow_v4, which exists: %v", err)
	}

	// An unfit set (no timeout flag) is refused by name.
	ns.MustRun("nft", "flush", "ruleset")
	inc := include(t, rs)
	loadFile(t, ns, operatorTable+strings.Replace(inc, "flags timeout\n", "\n", 1))
	if _, err := b.Apply(ctx, rs); err == nil || !strings.Contains(err.Error(), "set ban_v4 lacks flags timeout") {
		t.Fatalf("Apply with ban_v4 lacking timeout = %v", err)
	}

	// The include file, plus the operator's own rule using a ban set.
	ns.MustRun("nft", "flush", "ruleset")
	loadFile(t, ns, operatorTable+inc)
	ns.MustRun("nft", "insert", "rule", "inet", "filter", "input", "ip", "saddr", "@ban_v4", "counter", "drop", "comment", `"ban_v4"`)
	chainsBefore := normalize(ns.MustRun("nft", "list", "chains"))
	inputBefore := normalize(ns.MustRun("nft", "list", "chain", "inet", "filter", "input"))

	res, err := b.Apply(ctx, rs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !res.Created || res.Added != 4 {
		t.Errorf("first Apply into freshly loaded sets = %+v, want Created (refilled) and 4 added", res)
	}
	res, err = b.Apply(ctx, rs)
	// The same bans again lengthen none of them: nothing to send.
	if err != nil || res.Created || res.Added != 0 || res.Refreshed != 0 {
		t.Errorf("second Apply = %+v, %v; want nothing created, added or refreshed", res, err)
	}
	if got := normalize(ns.MustRun("nft", "list", "chains")); got != chainsBefore {
		t.Errorf("sets mode changed the chains:\n%s\nwant\n%s", got, chainsBefore)
	}
	if got := normalize(ns.MustRun("nft", "list", "chain", "inet", "filter", "input")); got != inputBefore {
		t.Errorf("sets mode changed the operator's input chain:\n%s\nwant\n%s", got, inputBefore)
	}
	if out := ns.MustRun("nft", "list", "tables"); strings.TrimSpace(out) != "table inet filter" {
		t.Errorf("tables after Apply: %q, want only the operator's", out)
	}
	// Independent read: the elements are in the operator's sets.
	for set, want := range map[string]string{"ban_v4": "203.0.113.7", "ban_net_v4": "198.51.100.0/24", "ban_v6": "2001:db8::7", "allow_v4": "127.0.0.0/8"} {
		if out := ns.MustRun("nft", "list", "set", "inet", "filter", set); !strings.Contains(out, want) {
			t.Errorf("set %s lacks %s:\n%s", set, want, out)
		}
	}
	bans, err := b.Bans(ctx)
	if err != nil || len(bans) != 4 {
		t.Errorf("Bans = %v, %v; want 4", bans, err)
	}
	cnt, err := b.Counters(ctx)
	if err != nil || len(cnt) != 1 || cnt[0].Chain != "input" || cnt[0].Rule != rules.SetBan4 {
		t.Errorf("Counters = %+v, %v; want the operator's ban_v4 rule only", cnt, err)
	}
	if n, err := b.Unban(ctx, []netip.Prefix{rs.Bans[0].Prefix}); err != nil || n != 1 {
		t.Errorf("Unban = %d, %v", n, err)
	}

	if err := b.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if bans, _ := b.Bans(ctx); len(bans) != 0 {
		t.Errorf("bans after Flush: %v", bans)
	}
	if got := normalize(ns.MustRun("nft", "list", "chain", "inet", "filter", "input")); got != inputBefore {
		t.Errorf("Flush changed the operator's input chain:\n%s", got)
	}
	if out := ns.MustRun("nft", "list", "sets"); !strings.Contains(out, "set ban_net_v6") || !strings.Contains(out, "set meter_v4") {
		t.Errorf("Flush deleted sets:\n%s", out)
	}
}

// TestIncludeFileReload: the table-mode include file loads with nft -f and
// equals what Apply builds (Apply then only fills elements and says it
// restored), and loading it again keeps the bans.
func TestIncludeFileReload(t *testing.T) {
	ns, b := setup(t, "include")
	rs := fullRuleset(backendtest.SampleBans(time.Hour)...)
	rs.Prerouting, rs.PreroutingPriority = true, -300
	inc := include(t, rs)
	loadFile(t, ns, inc)
	before := normalizeKeepHandles(ns.MustRun("nft", "-a", "list", "chains"))
	res := apply(t, b, rs)
	if !res.Created || res.Added != 4 {
		t.Errorf("Apply over the include file = %+v, want Created (refilled) and 4 added", res)
	}
	for _, c := range res.Changed {
		if !strings.HasPrefix(c, "elements of ") {
			t.Errorf("Apply over the include file changed structure: %v", res.Changed)
		}
	}
	if after := normalizeKeepHandles(ns.MustRun("nft", "-a", "list", "chains")); after != before {
		t.Errorf("Apply replaced chains of the include file:\n%s\nwant\n%s", after, before)
	}
	want := normalize(ns.MustRun("nft", "list", "table", "inet", "synban"))
	loadFile(t, ns, inc)
	if got := normalize(ns.MustRun("nft", "list", "table", "inet", "synban")); got != want {
		t.Errorf("loading the include file again changed the table:\n%s\nwant\n%s", got, want)
	}
	if res := apply(t, b, rs); res.Created || len(res.Changed) != 0 {
		t.Errorf("Apply after reloading the include = %+v, want nothing created or changed", res)
	}
}

// earlyRuleset has every kind of base chain: ingress on dev, prerouting,
// input and forward.
func earlyRuleset(dev string, bans ...rules.Ban) *rules.Ruleset {
	rs := fullRuleset(bans...)
	rs.Prerouting, rs.PreroutingPriority = true, -300
	rs.Devices, rs.IngressPriority = []string{dev}, -250
	return rs
}

// TestEarlyHooksMatchTemplate: prerouting and ingress chains built over
// netlink list the same as the template's, with the meter only in
// prerouting and the connection cap only in input and forward.
func TestEarlyHooksMatchTemplate(t *testing.T) {
	nsB, b := setup(t, "earlyb")
	nsT := netnstest.New(t, "earlyt")
	for _, ns := range []*netnstest.NS{nsB, nsT} {
		ns.MustRun("ip", "link", "add", "eth9", "type", "veth", "peer", "name", "eth9p")
	}
	rs := earlyRuleset("eth9", backendtest.SampleBans(time.Hour)...)
	apply(t, b, rs)
	got := normalize(nsB.MustRun("nft", "list", "table", "inet", "synban"))
	script, err := templates.NFTString(rs, "test")
	if err != nil {
		t.Fatal(err)
	}
	loadFile(t, nsT, script)
	want := normalize(nsT.MustRun("nft", "list", "table", "inet", "synban"))
	if got != want {
		t.Errorf("backend's table differs from the template's:\n--- backend\n%s\n--- template\n%s", got, want)
	}
	chains := map[string]string{}
	for _, part := range regexp.MustCompile(`(?m)^\s*chain `).Split(got, -1)[1:] {
		name, _, _ := strings.Cut(part, " ")
		chains[name] = part
	}
	for name, wantHas := range map[string][]string{
		"ingress_eth9": {`hook ingress device "eth9" priority -250`, "@ban_v4", "!meter", "!connlimit"},
		"prerouting":   {"hook prerouting priority raw", "@ban_net_v6", "@meter_v4", "@meter_v6", "!connlimit"},
		"input":        {"hook input priority filter - 10", "@ban_v4", "!meter", "@connlimit_v4"},
		"forward":      {"hook forward", "@ban_v4", "!meter", "@connlimit_v6"},
	} {
		c, ok := chains[name]
		if !ok {
			t.Errorf("no chain %s in\n%s", name, got)
			continue
		}
		for _, w := range wantHas {
			if neg, ok := strings.CutPrefix(w, "!"); ok {
				if strings.Contains(c, neg) {
					t.Errorf("chain %s has %s:\n%s", name, neg, c)
				}
			} else if !strings.Contains(c, w) {
				t.Errorf("chain %s lacks %s:\n%s", name, w, c)
			}
		}
	}
	// Dropping the early hooks removes their chains and keeps the bans.
	rs.Prerouting, rs.Devices = false, nil
	res := apply(t, b, rs)
	if res.Added != 0 || len(res.Changed) == 0 {
		t.Errorf("Apply without early hooks = %+v, want chains changed and no ban added", res)
	}
	if out := nsB.MustRun("nft", "list", "chains"); strings.Contains(out, "prerouting") || strings.Contains(out, "ingress") {
		t.Errorf("early chains left behind:\n%s", out)
	}
}

// TestIngressDrops bans a peer and checks the ingress chain on the veth
// drops its packets: the ingress chain's ban_v4 counter rises, and no
// other chain sees them.
func TestIngressDrops(t *testing.T) {
	victim, b := setup(t, "ingv")
	peer := netnstest.New(t, "ingp")
	ifV, _ := netnstest.Link(t, victim, peer, []string{"10.71.0.1/24"}, []string{"10.71.0.2/24"})
	rs := backendtest.BaseRuleset(rules.Ban{Prefix: netip.MustParsePrefix("10.71.0.2/32"), Timeout: time.Hour, Reason: "test"})
	rs.Devices, rs.IngressPriority = []string{ifV}, -300
	apply(t, b, rs)
	// Bounded: 20 pings, 10 ms apart, 3 s at most. All are dropped.
	_, _ = peer.Run("timeout", "5", "ping", "-q", "-c", "20", "-i", "0.01", "-W", "1", "10.71.0.1")
	var ingress, input uint64
	netnstest.Eventually(t, 5*time.Second, func() bool {
		cnt, err := b.Counters(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ingress, input = 0, 0
		for _, c := range cnt {
			if c.Rule == rules.SetBan4 && c.Chain == rules.IngressChainPrefix+ifV {
				ingress = c.Packets
			}
			if c.Rule == rules.SetBan4 && c.Chain == "input" {
				input = c.Packets
			}
		}
		return ingress >= 20
	}, "ingress ban_v4 counter %d, want >= 20", ingress)
	if input != 0 {
		t.Errorf("input chain counted %d packets that ingress should have dropped", input)
	}
	// Independent read with nft.
	out := victim.MustRun("nft", "list", "chain", "inet", "synban", rules.IngressChainPrefix+ifV)
	if !strings.Contains(out, `device "`+ifV+`"`) || !strings.Contains(out, `drop comment "ban_v4"`) {
		t.Errorf("ingress chain listing:\n%s", out)
	}
}
