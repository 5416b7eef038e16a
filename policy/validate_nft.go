package policy

import (
	"fmt"
	"slices"
)

// defaultHooks adds "input" to the default hooks when a policy file turns
// the connection cap on without naming hooks: the default drops before
// conntrack (prerouting), and the cap counts conntrack entries, which only
// the input and forward chains see (policy/default.toml says so). A hook
// list the file gives is kept as written and validated.
func (d *decoder) defaultHooks(p *Policy) {
	if p.ConnLimit.Enabled && !d.pos.has("nftables.hooks") && slices.Equal(p.NFTables.Hooks, []string{"prerouting"}) {
		p.NFTables.Hooks = []string{"prerouting", "input"}
	}
}

// validateNFTIntegration checks the [nftables] keys of the integration
// modes: mode and the sets-mode table, the early hooks and their devices.
func (d *decoder) validateNFTIntegration(p *Policy) {
	n := &p.NFTables
	d.oneOf("nftables.mode", n.Mode, nftModes)
	switch n.Mode {
	case "sets":
		switch t := n.SetsTable; {
		case t == "" && !d.pos.has("nftables.sets_table"):
			d.errorf("nftables.mode", `"sets" needs nftables.sets_table: name the table of yours that holds synban's sets`)
		case t == "":
			d.errorf("nftables.sets_table", `is required with mode = "sets": name the table of yours that holds synban's sets`)
		case !nftNames.MatchString(t):
			d.errorf("nftables.sets_table", "must be 1..64 letters, digits, '_', '-' or '.', starting with a letter, got %q", t)
		case slices.Contains(nftKeywords, t):
			d.errorf("nftables.sets_table", "%q is an nft keyword, which nft does not accept as a table name", t)
		}
		d.oneOf("nftables.sets_family", n.SetsFamily, setsFamilies)
	case "table":
		if n.SetsTable != "" {
			d.errorf("nftables.sets_table", `is only used with mode = "sets" (mode is %q%s)`, n.Mode, d.defaulted("nftables.mode"))
		}
	}

	if len(n.Hooks) > 0 && !slices.ContainsFunc(n.Hooks, func(h string) bool {
		return h == "input" || h == "forward" || h == "prerouting"
	}) {
		d.errorf("nftables.hooks", `must include "input", "forward" or "prerouting": "ingress" alone covers only the named devices and carries no SYN meter`)
	}
	if p.ConnLimit.Enabled && !slices.Contains(n.Hooks, "input") && !slices.Contains(n.Hooks, "forward") {
		d.errorf("connlimit.enabled", `needs "input" or "forward" in nftables.hooks: the connection cap counts conntrack entries, which the earlier hooks do not see yet`)
	}
	d.between("nftables.prerouting_priority", n.PreroutingPriority, -400, 400)
	d.between("nftables.ingress_priority", n.IngressPriority, -400, 400)

	ingress := slices.Contains(n.Hooks, "ingress")
	switch {
	case ingress && len(n.IngressDevices) == 0:
		if d.pos.has("nftables.ingress_devices") {
			d.errorf("nftables.ingress_devices", `must name at least one interface when nftables.hooks has "ingress"`)
		} else {
			d.errorf("nftables.hooks", `has "ingress" but nftables.ingress_devices names no interface (e.g. ingress_devices = ["eth0"])`)
		}
	case !ingress && len(n.IngressDevices) > 0:
		d.errorf("nftables.ingress_devices", `is set but nftables.hooks has no "ingress"`)
	}
	if len(n.IngressDevices) > maxDevices {
		d.errorf("nftables.ingress_devices", "must have at most %d entries, got %d", maxDevices, len(n.IngressDevices))
		return
	}
	seen := make(map[string]bool, len(n.IngressDevices))
	for i, dev := range n.IngressDevices {
		k := fmt.Sprintf("nftables.ingress_devices[%d]", i)
		switch {
		case !deviceNames.MatchString(dev):
			d.errorf(k, "must be an interface name of 1..15 letters, digits, '_', '.' or '-', got %q", dev)
		case seen[dev]:
			d.errorf(k, "duplicate device %q", dev)
		}
		seen[dev] = true
	}
}

// Target returns the nftables mode and the table synban's nftables backend
// works in: synban's own Table and Family in mode "table", the operator's
// SetsTable and SetsFamily in mode "sets".
func (n *NFTables) Target() (mode, table, family string) {
	if n.Mode == "sets" {
		return n.Mode, n.SetsTable, n.SetsFamily
	}
	return "table", n.Table, n.Family
}
