// Package rules holds synban's backend-neutral Ruleset, the compiler that
// turns a policy and offences (Offence: what to ban and why, made by the
// engine from verdicts, manual bans, the store and the fleet) into one, and
// the interface every firewall backend implements. It imports nothing of
// synban above policy.
package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/synban/synban/policy"
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
	// SetHot4 and SetHot6 are the sensor's sets: every source whose SYNs
	// exceed the meter, keyed like the meter, with a packet counter of the
	// SYNs over the limit (see Sensor).
	SetHot4 = "hot_v4"
	SetHot6 = "hot_v6"
)

// SensorTimeout is how long a source stays in the sensor's sets after its
// last SYN over the meter: long enough that a run every few minutes reads
// its count again and knows its rate since the previous run.
const SensorTimeout = 10 * time.Minute

// AllowOverlap returns the first prefix of rs.Allow that overlaps p (same
// family), and whether there is one. It is the one test of a ban against
// the allow list: Validate refuses a Ruleset with such a ban, and the route
// backend and its dry run use it for bans that come from elsewhere (the
// state store) or from a Ruleset built by hand.
func (rs *Ruleset) AllowOverlap(p netip.Prefix) (netip.Prefix, bool) {
	p = policy.Canonical(p)
	for _, a := range rs.Allow {
		if a = policy.Canonical(a); a.Addr().Is4() == p.Addr().Is4() && a.Overlaps(p) {
			return a, true
		}
	}
	return netip.Prefix{}, false
}

// Validate checks the invariants every backend relies on: each ban's prefix
// is valid, in canonical form (policy.Canonical), not a /0, listed once,
// with a timeout that is not negative, and overlaps no allowed prefix; each
// allowed prefix is valid. Compile returns only Rulesets that pass, so
// backends trust a compiled Ruleset and do not check it again.
func (rs *Ruleset) Validate() error {
	if rs == nil {
		return errors.New("invalid ruleset: nil")
	}
	for _, a := range rs.Allow {
		if !a.IsValid() {
			return fmt.Errorf("invalid ruleset: allowed prefix %v is not valid", a)
		}
	}
	// In prefix order (as Compile leaves them) a ban listed twice sits next
	// to its twin, so 100,000 bans need no map to find one.
	ordered := true
	for i := 1; i < len(rs.Bans); i++ {
		if a, b := rs.Bans[i-1].Prefix, rs.Bans[i].Prefix; a != b && policy.ComparePrefixes(a, b) >= 0 {
			ordered = false
			break
		}
	}
	var seen map[netip.Prefix]bool
	if !ordered {
		seen = make(map[netip.Prefix]bool, len(rs.Bans))
	}
	twice := func(i int, p netip.Prefix) bool {
		if ordered {
			return i > 0 && rs.Bans[i-1].Prefix == p
		}
		dup := seen[p]
		seen[p] = true
		return dup
	}
	for i, b := range rs.Bans {
		switch p := b.Prefix; {
		case !p.IsValid():
			return fmt.Errorf("invalid ruleset: ban prefix %v is not valid", p)
		case p != policy.Canonical(p):
			return fmt.Errorf("invalid ruleset: ban %s is not in canonical form (%s)", p, policy.Canonical(p))
		case p.Bits() == 0:
			return fmt.Errorf("invalid ruleset: ban %s covers every address", p)
		case twice(i, p):
			return fmt.Errorf("invalid ruleset: ban %s listed twice", p)
		case b.Timeout < 0:
			return fmt.Errorf("invalid ruleset: ban %s has a negative timeout %s", p, b.Timeout)
		}
		if a, ok := rs.AllowOverlap(b.Prefix); ok {
			return fmt.Errorf("invalid ruleset: ban %s overlaps allowed %s", b.Prefix, a)
		}
	}
	return nil
}
