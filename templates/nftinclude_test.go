package templates

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules"
)

// integrationRulesets exercise the nftables integration modes: the early
// hooks, and sets mode in an operator's inet and ip tables.
func integrationRulesets() map[string]*rules.Ruleset {
	full := handRulesets()["hand-full"]
	early := *full
	early.Prerouting, early.PreroutingPriority = true, -300
	early.Devices, early.IngressPriority = []string{"eth0", "veth-a.1"}, -250
	sets := *full
	sets.Mode, sets.Table = rules.ModeSets, "filter"
	sets4 := *handRulesets()["hand-ip-family"]
	sets4.Mode, sets4.Table = rules.ModeSets, "filter"
	return map[string]*rules.Ruleset{"early-hooks": &early, "sets-inet": &sets, "sets-ip": &sets4}
}

func render(t *testing.T, f func(*strings.Builder) error) []byte {
	t.Helper()
	var b strings.Builder
	if err := f(&b); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

// TestNFTIntegrationGolden renders the dry run and the include file of
// each integration ruleset against golden files, and has nft check the
// include files and the early-hooks dry run.
func TestNFTIntegrationGolden(t *testing.T) {
	for name, rs := range integrationRulesets() {
		t.Run(name, func(t *testing.T) {
			script := render(t, func(b *strings.Builder) error { return NFT(b, rs, "hand-built "+name) })
			checkGolden(t, name, script)
			inc := render(t, func(b *strings.Builder) error { return NFTInclude(b, rs, "hand-built "+name) })
			checkGolden(t, name+"-include", inc)
			if strings.Contains(string(inc), "elements =") {
				t.Errorf("include file carries elements:\n%s", inc)
			}
			nftCheck(t, inc)
			if !rs.SetsMode() {
				nftCheck(t, script)
			}
		})
	}
}

// TestSetsModeScriptsLoad loads the sets-mode include file into a table
// with a chain of the operator's, pastes the example rules into that chain,
// then applies the sets-mode dry run: the elements land in the operator's
// sets, the chain keeps its rules, and loading the include file again keeps
// the elements.
func TestSetsModeScriptsLoad(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, "setsload")
	load := func(text string) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "x.nft")
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		ns.MustRun("nft", "-f", f)
	}
	rs := integrationRulesets()["sets-inet"]
	inc := string(render(t, func(b *strings.Builder) error { return NFTInclude(b, rs, "t") }))
	load("table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t\ttcp dport 22 accept\n\t}\n}\n")
	load(inc)
	var pasted []string
	for _, l := range strings.Split(inc, "\n") {
		if r, ok := strings.CutPrefix(l, "#\t"); ok && !strings.HasPrefix(r, "include ") {
			pasted = append(pasted, r)
		}
	}
	if len(pasted) != 10 {
		t.Fatalf("include file shows %d example rules, want 10 (allow, bans, meter, connlimit):\n%s", len(pasted), inc)
	}
	load("table inet filter {\n\tchain input {\n\t\t" + strings.Join(pasted, "\n\t\t") + "\n\t}\n}\n")
	chain := ns.MustRun("nft", "list", "chain", "inet", "filter", "input")
	load(string(render(t, func(b *strings.Builder) error { return NFT(b, rs, "t") })))
	if got := ns.MustRun("nft", "list", "chain", "inet", "filter", "input"); got != chain {
		t.Errorf("the sets-mode script changed the operator's chain:\n%s\nwant\n%s", got, chain)
	}
	for set, want := range map[string]string{"ban_v4": "203.0.113.7", "ban_net_v6": "2001:db8:bad::/48", "allow_v4": "192.0.2.1"} {
		if out := ns.MustRun("nft", "list", "set", "inet", "filter", set); !strings.Contains(out, want) {
			t.Errorf("set %s lacks %s:\n%s", set, want, out)
		}
	}
	load(inc)
	if out := ns.MustRun("nft", "list", "set", "inet", "filter", "ban_v4"); !strings.Contains(out, "203.0.113.7") {
		t.Errorf("loading the include file again emptied ban_v4:\n%s", out)
	}
	if out := ns.MustRun("nft", "list", "tables"); strings.TrimSpace(out) != "table inet filter" {
		t.Errorf("tables: %q", out)
	}
}
