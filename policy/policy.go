// Package policy holds synban's TOML policy: its schema, documented defaults,
// strict decoding and validation with file:line:key error messages, and the
// never-ban guard that every later stage consults.
package policy

import (
	"fmt"
	"net/netip"
	"time"
)

// Policy is a validated policy with every default filled in. The zero value
// is not useful; obtain one from Load, Parse or Default.
type Policy struct {
	// Source names where the policy came from: a file path, or "<embedded default>".
	Source string `toml:"-"`

	// Backend selects the firewall backend: "auto" (default), "nftables",
	// "iptables" or "route".
	Backend string `toml:"backend"`

	Sample    Sample    `toml:"sample"`
	Rules     []Rule    `toml:"rule"`
	Prefix    Prefix    `toml:"prefix"`
	Allow     Allow     `toml:"allow"`
	Ban       Ban       `toml:"ban"`
	Meter     Meter     `toml:"meter"`
	ConnLimit ConnLimit `toml:"connlimit"`
	NFTables  NFTables  `toml:"nftables"`
	Spoof     Spoof     `toml:"spoof"`
	Route     Route     `toml:"route"`
	IPTables  IPTables  `toml:"iptables"`
	Sysctl    Sysctl    `toml:"sysctl"`
	Metrics   Metrics   `toml:"metrics"`
	CrowdSec  CrowdSec  `toml:"crowdsec"`
	Upstream  Upstream  `toml:"upstream"`
	XDP       XDP       `toml:"xdp"`
}

// Sample configures the sampling window of one run.
type Sample struct {
	// Source is "auto" (default), "sockdiag", "procfs" or "conntrack".
	Source string `toml:"source"`
	// Count is the number of samples taken in one run (default 1).
	Count int `toml:"count"`
	// Interval is the time between samples (default 1s).
	Interval Duration `toml:"interval"`
	// MinHits is how many of the Count samples a source must cross a
	// threshold in to be an offender (default 1; at most Count).
	MinHits int `toml:"min_hits"`
}

// State names a TCP connection state a rule counts.
type State string

// The states a rule may count.
const (
	StateSynRecv     State = "syn_recv"
	StateEstablished State = "established"
	StateAny         State = "any" // every non-listening state
	// StateSynRate counts no connection: its threshold is SYNs per second
	// over the SYN meter, per source, as the firewall's sensor records them
	// (see rules.Sensor). It needs the meter on; the meter's ports apply.
	StateSynRate State = "syn_rate"
)

// Rule is one detection rule: a source holding more than Threshold
// connections in State (to one of Ports, when given) is an offender. Name,
// State and Threshold are required in every [[rule]].
type Rule struct {
	// Name identifies the rule in verdicts, logs and ban reasons.
	Name string `toml:"name" policy:"required"`
	// State is the TCP state counted.
	State State `toml:"state" policy:"required"`
	// Threshold is the per-source count at or above which a source offends
	// (>0); for state syn_rate, SYNs per second over the meter.
	Threshold int `toml:"threshold" policy:"required"`
	// Ports restricts counting to these local ports; empty means all.
	Ports []uint16 `toml:"ports"`
	// BanFor overrides Ban.Duration for offenders of this rule; 0 means the
	// default (at most Ban.MaxDuration).
	BanFor Duration `toml:"ban_for"`
}

// Prefix configures aggregation of sources by network prefix.
type Prefix struct {
	// Enabled turns prefix aggregation on (default true).
	Enabled bool `toml:"enabled"`
	// IPv4Length is the IPv4 prefix length sources are grouped by (default
	// 24; 8..32 and not shorter than Ban.MinIPv4Length).
	IPv4Length int `toml:"ipv4_length"`
	// IPv6Length is the IPv6 prefix length sources are grouped by (default
	// 64; 16..128 and not shorter than Ban.MinIPv6Length).
	IPv6Length int `toml:"ipv6_length"`
	// IPv4Threshold is the count per IPv4 prefix, summed over sources, for
	// each rule's state, at or above which the prefix offends (default 200).
	IPv4Threshold int `toml:"ipv4_threshold"`
	// IPv6Threshold likewise for IPv6 prefixes (default 200).
	IPv6Threshold int `toml:"ipv6_threshold"`
}

// Aggregation returns the prefix length and threshold sources of a family
// (IPv4 when is4) are aggregated by, and 0, 0 when that family is not
// aggregated (aggregation off, or a length or threshold out of range). It
// is the one answer: the detector's analysis, explain and top ask it.
func (p *Prefix) Aggregation(is4 bool) (bits, threshold int) {
	bits, threshold, maxBits := p.IPv6Length, p.IPv6Threshold, 128
	if is4 {
		bits, threshold, maxBits = p.IPv4Length, p.IPv4Threshold, 32
	}
	if !p.Enabled || bits <= 0 || bits > maxBits || threshold <= 0 {
		return 0, 0
	}
	return bits, threshold
}

// Allow lists addresses and prefixes that are never banned.
type Allow struct {
	// Addresses holds addresses and prefixes, IPv4 or IPv6, masked, with
	// IPv4-mapped IPv6 entries stored as IPv4 (default empty). In TOML they
	// are strings: "192.0.2.1", "2001:db8::/32". A /0 ("0.0.0.0/0", "::/0",
	// "::ffff:0:0/96") is an error: nothing could ever be banned.
	Addresses []netip.Prefix `toml:"addresses"`
	// Host allows the host's own addresses, loopback and default gateways
	// (default true).
	Host bool `toml:"host"`
}

// Ban holds the ban defaults.
type Ban struct {
	// Duration is how long a ban lasts (default 10m; at most MaxTimeout).
	Duration Duration `toml:"duration"`
	// MaxEntries caps the number of ban entries per address family (default 65536).
	MaxEntries int `toml:"max_entries"`
	// EscalateFactor multiplies the previous ban's length for a source banned
	// again within EscalateWindow (default 2.0; 1 disables escalation; >= 1).
	EscalateFactor float64 `toml:"escalate_factor"`
	// MaxDuration caps every ban, however it arrives: escalated, a rule's
	// BanFor, a manual ban's --for, a ban restored from the state store
	// (default 24h; >= Duration and >= every rule's BanFor; at most
	// MaxTimeout).
	MaxDuration Duration `toml:"max_duration"`
	// EscalateWindow is how long a past ban counts towards escalation (default 24h).
	EscalateWindow Duration `toml:"escalate_window"`
	// MinIPv4Length is the shortest IPv4 prefix synban bans (default 16;
	// 1..32): a broader ban, automatic or restored, is left out, and a
	// manual one needs --force. prefix.ipv4_length may not be shorter.
	MinIPv4Length int `toml:"min_ipv4_length"`
	// MinIPv6Length is the shortest IPv6 prefix synban bans (default 32;
	// 1..128), as MinIPv4Length. prefix.ipv6_length may not be shorter.
	MinIPv6Length int `toml:"min_ipv6_length"`
}

// MinLength returns the shortest prefix length a ban of addr's family may
// have: Ban.MinIPv4Length for IPv4 (and IPv4-mapped IPv6), else
// Ban.MinIPv6Length; with the key that sets it.
func (b *Ban) MinLength(addr netip.Addr) (bits int, key string) {
	if addr.Unmap().Is4() {
		return b.MinIPv4Length, "ban.min_ipv4_length"
	}
	return b.MinIPv6Length, "ban.min_ipv6_length"
}

// Spoof configures the classification of spoofed SYN floods, whose source
// addresses are forged: banning them is pointless (and may ban innocents), so
// their sources are not banned; the meter and SYN cookies are the answer.
type Spoof struct {
	// Enabled turns the classification on (default true).
	Enabled bool `toml:"enabled"`
	// MinSources is the number of distinct half-open sources in the window at
	// or above which a flood may be spoofed (default 256) ...
	MinSources int `toml:"min_sources"`
	// MaxPerSource ... when each of them holds at most this many half-open
	// entries (default 2).
	MaxPerSource int `toml:"max_per_source"`
	// CookieRatio: a flood is also spoofed when SyncookiesRecv/SyncookiesSent
	// over the window is below this ratio (default 0.1; 0..1).
	CookieRatio float64 `toml:"cookie_ratio"`
	// ApplySysctl lets synban set net.ipv4.tcp_syncookies=1 during a spoofed
	// flood (default false).
	ApplySysctl bool `toml:"apply_sysctl"`
}

// Route configures the last-resort backend: reject routes.
type Route struct {
	// Type is the route type: "prohibit" (default), "blackhole" or "unreachable".
	Type string `toml:"type"`
	// Protocol is the route protocol number that tags synban's routes
	// (default 211; 5..255, as 0..4 are reserved by the kernel).
	Protocol int `toml:"protocol"`
}

// IPTables configures the iptables+ipset backend.
type IPTables struct {
	// Chain is synban's own chain (default "SYNBAN").
	Chain string `toml:"chain"`
	// Path is the iptables program; "" (default) auto-detects: "iptables"
	// when it is the nf_tables build, else "iptables-legacy".
	Path string `toml:"path"`
	// DockerUser also jumps to Chain from DOCKER-USER (default false), so
	// bans cover traffic to published container ports.
	DockerUser bool `toml:"docker_user"`
}

// Meter configures the per-source SYN rate-limit meter.
type Meter struct {
	// Enabled turns the meter on (default true).
	Enabled bool `toml:"enabled"`
	// Rate is the new-connection (SYN) rate per second per source above which
	// SYNs are dropped (default 20).
	Rate int `toml:"rate"`
	// Burst is the number of packets allowed above Rate in a burst (default
	// 40; at most MaxMeterBurst).
	Burst int `toml:"burst"`
	// IdleTimeout is how long a source's meter entry lives without traffic
	// (default 60s; at most MaxTimeout).
	IdleTimeout Duration `toml:"idle_timeout"`
	// Ports restricts the meter to these local ports; empty means all.
	Ports []uint16 `toml:"ports"`
	// IPv6Length keys IPv6 meters on this prefix length (default 64; 128 = per address).
	IPv6Length int `toml:"ipv6_length"`
	// Size caps the meter's entries per family (default 65536).
	Size int `toml:"size"`
}

// ConnLimit configures the optional per-source connection cap.
type ConnLimit struct {
	// Enabled turns the cap on (default false).
	Enabled bool `toml:"enabled"`
	// Max is the number of concurrent connections a source may hold
	// (default 100; at most MaxConnLimit).
	Max int `toml:"max"`
	// Ports restricts the cap to these local ports; empty means all.
	Ports []uint16 `toml:"ports"`
}

// NFTables configures synban's nftables integration: its own table (mode
// "table"), or only named sets inside a table the operator owns (mode "sets").
type NFTables struct {
	// Mode is "table" (default): synban keeps its own table with its sets
	// and base chains; or "sets": synban only fills the allow and ban sets
	// (named like rules.SetBan4 ...) inside SetsTable, a table the operator
	// owns and references from their own ruleset, and creates nothing else.
	Mode string `toml:"mode"`
	// SetsTable is the operator's table holding the sets in mode "sets"
	// (required there; an error in mode "table").
	SetsTable string `toml:"sets_table"`
	// SetsFamily is SetsTable's family: "inet" (default), "ip" or "ip6".
	SetsFamily string `toml:"sets_family"`
	// Table is the table name (default "synban").
	Table string `toml:"table"`
	// Family is the table family: "inet" (default).
	Family string `toml:"family"`
	// Hooks are the hooks synban attaches base chains to: "prerouting"
	// (default: at PreroutingPriority, by default before conntrack, so
	// dropped packets cost no conntrack entry; it carries the SYN meter and
	// also sees routed and container traffic), "input" (after conntrack;
	// with ConnLimit enabled and no hooks in the file, the default is
	// ["prerouting", "input"]), "forward" (container traffic: Docker's
	// published ports are forwarded) and "ingress" (one chain per
	// IngressDevices entry, allow and ban rules only). At least one of
	// "input", "forward" or "prerouting" is required.
	Hooks []string `toml:"hooks"`
	// Priority is the input and forward chains' priority (default -10,
	// before the filter hook at 0 that firewalld, ufw and hand-written
	// rulesets use).
	Priority int `toml:"priority"`
	// PreroutingPriority is the prerouting chain's priority (default -300,
	// raw: before conntrack, so dropped packets never create conntrack entries).
	PreroutingPriority int `toml:"prerouting_priority"`
	// IngressDevices are the interfaces the "ingress" hook attaches to
	// (required with "ingress", an error without it).
	IngressDevices []string `toml:"ingress_devices"`
	// IngressPriority is the ingress chains' priority (default -300).
	IngressPriority int `toml:"ingress_priority"`
}

// Duration is a time.Duration decoded from a TOML string such as "10m".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string such as "90s", "10m" or "1h30m".
// It accepts any value time.ParseDuration accepts; the policy validation
// rejects zero and negative durations where they make no sense.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a Go duration such as \"90s\", \"10m\" or \"1h30m\"", text)
	}
	d.Duration = v
	return nil
}

// MarshalText renders d as a Go duration string ("10m0s").
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String renders d as a Go duration string ("10m0s").
func (d Duration) String() string { return d.Duration.String() }

// RuleByName returns the rule called name.
func (p *Policy) RuleByName(name string) (*Rule, bool) {
	for i := range p.Rules {
		if p.Rules[i].Name == name {
			return &p.Rules[i], true
		}
	}
	return nil, false
}
