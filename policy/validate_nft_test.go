package policy

import (
	"slices"
	"strings"
	"testing"
)

func TestNFTIntegrationModesParse(t *testing.T) {
	p, err := Parse("sets.toml", []byte(`
[nftables]
mode = "sets"
sets_table = "filter"
sets_family = "ip"
hooks = ["prerouting", "ingress"]
prerouting_priority = -250
ingress_devices = ["eth0", "veth-a.1"]
ingress_priority = -450
`))
	if err == nil {
		t.Fatalf("ingress_priority -450 accepted: %+v", p.NFTables)
	}
	p, err = Parse("sets.toml", []byte(`
[nftables]
mode = "sets"
sets_table = "filter"
sets_family = "ip"
hooks = ["prerouting", "ingress"]
prerouting_priority = -250
ingress_devices = ["eth0", "veth-a.1"]
ingress_priority = -400
`))
	if err != nil {
		t.Fatal(err)
	}
	n := p.NFTables
	if n.Mode != "sets" || n.SetsTable != "filter" || n.SetsFamily != "ip" || n.PreroutingPriority != -250 ||
		n.IngressPriority != -400 || !slices.Equal(n.IngressDevices, []string{"eth0", "veth-a.1"}) ||
		!slices.Equal(n.Hooks, []string{"prerouting", "ingress"}) {
		t.Errorf("decoded %+v", n)
	}
	// The own table's settings keep their defaults.
	if n.Table != "synban" || n.Family != "inet" || n.Priority != -10 {
		t.Errorf("defaults lost: %+v", n)
	}
}

func TestNFTIntegrationValidateInGo(t *testing.T) {
	p := Default()
	p.NFTables.Mode = "sets"
	if err := p.Validate(); err == nil {
		t.Error("sets mode without sets_table validated")
	}
	p.NFTables.SetsTable = "filter"
	if err := p.Validate(); err != nil {
		t.Errorf("sets mode with a table: %v", err)
	}
	p.ConnLimit.Enabled = true
	p.NFTables.Hooks = []string{"prerouting"}
	if err := p.Validate(); err == nil {
		t.Error("connlimit with only the prerouting hook validated")
	}
	p.NFTables.Hooks = []string{"prerouting", "forward"}
	if err := p.Validate(); err != nil {
		t.Errorf("connlimit with forward: %v", err)
	}
}

// The default hooks drop before conntrack; a file that turns the connection
// cap on without naming hooks gets an input chain for it, and one that names
// only prerouting is told why not.
func TestConnLimitDefaultHooks(t *testing.T) {
	p, err := Parse("cl.toml", []byte("[connlimit]\nenabled = true\n"))
	if err != nil {
		t.Fatalf("connlimit on with the default hooks: %v", err)
	}
	if !slices.Equal(p.NFTables.Hooks, []string{"prerouting", "input"}) {
		t.Errorf("hooks = %q, want [prerouting input]", p.NFTables.Hooks)
	}
	if p, err := Parse("plain.toml", []byte("[meter]\nrate = 30\n")); err != nil {
		t.Errorf("connlimit off: %v", err)
	} else if !slices.Equal(p.NFTables.Hooks, []string{"prerouting"}) {
		t.Errorf("connlimit off: hooks %q, want [prerouting]", p.NFTables.Hooks)
	}
	_, err = Parse("clpre.toml", []byte("[connlimit]\nenabled = true\n[nftables]\nhooks = [\"prerouting\"]\n"))
	if err == nil || !strings.Contains(err.Error(), "connlimit.enabled") {
		t.Errorf("connlimit with hooks = [prerouting] written: %v, want a connlimit.enabled error", err)
	}
}

func TestNFTablesTarget(t *testing.T) {
	n := Default().NFTables
	if m, tb, f := n.Target(); m != "table" || tb != "synban" || f != "inet" {
		t.Errorf("default Target() = %s %s %s", m, tb, f)
	}
	n.Mode, n.SetsTable, n.SetsFamily = "sets", "filter", "ip"
	if m, tb, f := n.Target(); m != "sets" || tb != "filter" || f != "ip" {
		t.Errorf("sets Target() = %s %s %s", m, tb, f)
	}
}
