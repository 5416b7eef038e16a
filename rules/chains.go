package rules

import (
	"slices"

	"github.com/synban/synban/policy"
)

// Ruleset modes (Ruleset.Mode).
const (
	// ModeTable: synban's own table with its sets and base chains.
	ModeTable = "table"
	// ModeSets: only the allow and ban sets in a table the operator owns.
	ModeSets = "sets"
)

// Hook names of base chains. Ruleset.Hooks holds only HookInput and
// HookForward; the earlier hooks are Ruleset.Prerouting and Ruleset.Devices.
const (
	HookInput      = "input"
	HookForward    = "forward"
	HookPrerouting = "prerouting"
	HookIngress    = "ingress"
)

// IngressChainPrefix starts the name of an ingress chain: "ingress_eth0".
const IngressChainPrefix = "ingress_"

// BaseChain is one base chain of synban's own table, with what it carries.
// Every base chain carries the allow rules and the ban rules first.
type BaseChain struct {
	// Name is the chain's name: the hook's, or "ingress_DEV".
	Name string
	// Hook is the netfilter hook: "ingress", "prerouting", "input" or "forward".
	Hook string
	// Device is the interface of an ingress chain; "" otherwise.
	Device string
	// Priority is the chain's priority.
	Priority int
	// Meter says the chain carries the SYN meter rules (when rs.Meter is set).
	Meter bool
	// ConnLimit says the chain carries the connection-cap rules (when
	// rs.ConnLimit is set).
	ConnLimit bool
}

// SetsMode reports whether rs only fills sets in the operator's table.
func (rs *Ruleset) SetsMode() bool { return rs.Mode == ModeSets }

// BaseChains lists the base chains synban's table has, in the order a
// packet meets them: the ingress chains (one per device), prerouting, then
// rs.Hooks in order (duplicates dropped).
//
// The SYN meter sits in the first chain every new connection passes
// exactly once: prerouting when present, else each of the Hooks chains
// (input and forward see disjoint packets). Metering in two chains on one
// path would spend a source's rate twice per packet. Ingress chains only
// cover their devices, so they never carry the meter. The connection cap
// counts conntrack entries, so it sits only in the input and forward chains,
// after conntrack. In ModeSets there are no base chains.
func (rs *Ruleset) BaseChains() []BaseChain {
	if rs.SetsMode() {
		return nil
	}
	var out []BaseChain
	for _, d := range rs.Devices {
		out = append(out, BaseChain{Name: IngressChainPrefix + d, Hook: HookIngress, Device: d, Priority: rs.IngressPriority})
	}
	if rs.Prerouting {
		out = append(out, BaseChain{Name: HookPrerouting, Hook: HookPrerouting, Priority: rs.PreroutingPriority, Meter: true})
	}
	var seen []string
	for _, h := range rs.Hooks {
		if slices.Contains(seen, h) {
			continue
		}
		seen = append(seen, h)
		out = append(out, BaseChain{Name: h, Hook: h, Priority: rs.Priority, Meter: !rs.Prerouting, ConnLimit: true})
	}
	return out
}

// compileNFTables fills the nftables integration fields of rs from the
// policy: the mode and target table, the filter hooks (input, forward) in
// rs.Hooks, and the earlier hooks (prerouting, ingress) in their own fields,
// so backends that know only input and forward (iptables) keep working.
func compileNFTables(rs *Ruleset, n *policy.NFTables) {
	rs.Mode = ModeTable
	if n.Mode == ModeSets {
		rs.Mode = ModeSets
		rs.Table, rs.Family = n.SetsTable, n.SetsFamily
	}
	for _, h := range n.Hooks {
		switch h {
		case HookPrerouting:
			rs.Prerouting = true
		case HookIngress:
			rs.Devices = slices.Clone(n.IngressDevices)
		default:
			rs.Hooks = append(rs.Hooks, h)
		}
	}
	rs.PreroutingPriority = n.PreroutingPriority
	rs.IngressPriority = n.IngressPriority
}
