// Package rules holds synban's backend-neutral Ruleset, the compiler that
// turns a policy and verdicts into one, and the interface every firewall
// backend implements.
package rules

import (
	"net/netip"
	"time"
)

// Ruleset is the desired firewall state: pure data, rendered by templates
// for dry runs and applied by backends.
type Ruleset struct {
	// Table is synban's own table name; Family its family ("inet").
	Table, Family string
	// Hooks are the base chains to create ("input", "forward"), one chain each,
	// named like the hook.
	Hooks []string
	// Priority is the base chains' priority.
	Priority int
	// Allow holds the never-ban prefixes, IPv4 and IPv6 (checked first, accepted).
	Allow []netip.Prefix
	// Bans are the banned addresses and prefixes, sorted, IPv4 first.
	Bans []Ban
	// MaxEntries is the size of each ban set.
	MaxEntries int
	// Meter is the per-source SYN meter; nil when disabled.
	Meter *Meter
	// ConnLimit is the per-source connection cap; nil when disabled.
	ConnLimit *ConnLimit

	// Mode is ModeTable ("" means the same): synban's own table, Table, with
	// its sets and base chains; or ModeSets: only the allow and ban sets
	// inside Table, a table the operator owns (Family "inet", "ip" or
	// "ip6"), whose elements are reconciled and nothing else is touched.
	Mode string
	// Prerouting adds the base chain "prerouting" at PreroutingPriority (by
	// default raw, before conntrack). It carries the allow and ban rules and
	// the SYN meter, which then leaves the Hooks chains (see BaseChains).
	Prerouting         bool
	PreroutingPriority int
	// Devices are the interfaces of the ingress hook: one base chain
	// "ingress_DEV" per device at IngressPriority, with the allow and ban
	// rules only. Empty means no ingress chains.
	Devices         []string
	IngressPriority int
}

// Ban is one banned address (a /32 or /128) or prefix.
type Ban struct {
	Prefix netip.Prefix
	// Timeout is the ban's lifetime from when it is applied.
	Timeout time.Duration
	// Reason explains the ban (stored as the set element's comment).
	Reason string
}

// Meter is a per-source SYN rate limit: SYNs above Rate per second (plus
// Burst) from one source are dropped.
type Meter struct {
	Rate, Burst int
	// Timeout is how long an idle source's entry lives.
	Timeout time.Duration
	// Ports restricts the meter to these destination ports; empty means all.
	Ports []uint16
	// IPv6Length is the prefix length IPv6 sources are keyed on (128 = per address).
	IPv6Length int
	// Size caps the meter's entries per family.
	Size int
}

// ConnLimit caps concurrent connections per source.
type ConnLimit struct {
	Max int
	// Ports restricts the cap to these destination ports; empty means all.
	Ports []uint16
	// Size caps the tracked sources per family.
	Size int
}

// Set and chain names shared by every backend and template, so a dry run and
// an applied ruleset name things the same way.
const (
	SetAllow4  = "allow_v4"
	SetAllow6  = "allow_v6"
	SetBan4    = "ban_v4"     // single IPv4 addresses, timeout flag
	SetBan6    = "ban_v6"     // single IPv6 addresses, timeout flag
	SetBanNet4 = "ban_net_v4" // IPv4 prefixes, interval and timeout flags
	SetBanNet6 = "ban_net_v6" // IPv6 prefixes, interval and timeout flags
	SetMeter4  = "meter_v4"
	SetMeter6  = "meter_v6"
	SetConn4   = "connlimit_v4"
	SetConn6   = "connlimit_v6"
)
