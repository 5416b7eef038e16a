// Package config holds what the upstream speaker and a run's decision are
// configured with (Config, Neighbor), and the small value types the policy
// names (Action, Community, the BGP families). It imports no BGP library, so
// the policy can convert and validate [upstream] without linking GoBGP; the
// upstream package re-exports every name here.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Families a neighbor may carry.
const (
	FamilyIPv4Unicast  = "ipv4-unicast"
	FamilyIPv6Unicast  = "ipv6-unicast"
	FamilyIPv4FlowSpec = "ipv4-flowspec"
	FamilyIPv6FlowSpec = "ipv6-flowspec"
)

var knownFamilies = map[string]bool{
	FamilyIPv4Unicast: true, FamilyIPv6Unicast: true,
	FamilyIPv4FlowSpec: true, FamilyIPv6FlowSpec: true,
}

// Neighbor is one upstream router the speaker holds a session to.
type Neighbor struct {
	Address netip.Addr
	PeerASN uint32
	// Families the session negotiates (ipv4-unicast, ipv6-unicast,
	// ipv4-flowspec, ipv6-flowspec).
	Families []string
	// Port is the neighbor's BGP port; 0 means 179.
	Port uint16
	// LocalAddress, when valid, is the address the session is sourced from.
	LocalAddress netip.Addr
	// Password is the TCP MD5 password (read by the policy from its
	// password_file); empty for none.
	Password string
	// Passive waits for the neighbor to connect instead of connecting.
	Passive bool
}

// Config is everything the upstream package needs; the policy fills it.
type Config struct {
	LocalASN uint32
	RouterID netip.Addr
	// ListenPort is the local BGP port; 0 or negative means do not listen
	// (sessions are then only made outwards).
	ListenPort int32
	Neighbors  []Neighbor

	// OwnPrefixes are the only destinations ever announced.
	OwnPrefixes []netip.Prefix
	// MinSourceBits4 and MinSourceBits6 are the shortest source prefixes a
	// FlowSpec rule may name (the minimum ban prefix lengths).
	MinSourceBits4, MinSourceBits6 int
	// Protected are the host's own addresses and the allow list: never a
	// source in a rule.
	Protected []netip.Prefix
	// MaxRules is the local cap per BGP family, set below the provider's
	// prefix limit: a receiver over its limit drops the whole session.
	MaxRules int
	// MaxChangesPerMinute dampens announcements and replacements; changes
	// over it are deferred, never dropped.
	MaxChangesPerMinute int
	// MaxAge is the dead-man limit: an announcement no run has confirmed for
	// this long is withdrawn.
	MaxAge time.Duration

	// FlowSpecValidationRoutes sends, with each FlowSpec rule, the unicast
	// route of its destination (upstream.ValidationRoute: the victim /32 or
	// /128, next hop self, NO_EXPORT and NO_ADVERTISE) so that a router
	// validating FlowSpec (RFC 8955 section 6) applies the rule. Validate
	// requires every neighbor to carry each FlowSpec family together with
	// its unicast family, over a session of the same IP version.
	FlowSpecValidationRoutes bool

	// RTBHCommunities are added to BLACKHOLE and NO_EXPORT on RTBH routes.
	RTBHCommunities []Community
	// RTBHNextHop4 and RTBHNextHop6 are the RTBH next hops per family.
	RTBHNextHop4, RTBHNextHop6 netip.Addr
}

// Validate reports every problem in c, naming the field.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.LocalASN == 0 {
		bad("local_asn: must be set (1..4294967295)")
	}
	if !c.RouterID.Is4() {
		bad("router_id %q: must be an IPv4 address", c.RouterID)
	}
	if c.ListenPort > 65535 {
		bad("listen port %d: above 65535", c.ListenPort)
	}
	if len(c.Neighbors) == 0 {
		bad("neighbor: at least one is needed")
	}
	seen := map[netip.Addr]bool{}
	for i, n := range c.Neighbors {
		where := fmt.Sprintf("neighbor %d (%s)", i+1, n.Address)
		if !n.Address.IsValid() {
			bad("neighbor %d: address must be set", i+1)
		} else if seen[n.Address] {
			bad("%s: address listed twice", where)
		}
		seen[n.Address] = true
		if n.PeerASN == 0 {
			bad("%s: peer_asn must be set", where)
		}
		if len(n.Families) == 0 {
			bad("%s: families: at least one of ipv4-unicast, ipv6-unicast, ipv4-flowspec, ipv6-flowspec", where)
		}
		for _, f := range n.Families {
			if !knownFamilies[f] {
				bad("%s: family %q: want ipv4-unicast, ipv6-unicast, ipv4-flowspec or ipv6-flowspec", where, f)
			}
		}
		if len(n.Password) > 80 {
			bad("%s: password longer than 80 bytes (TCP MD5 limit)", where)
		}
	}
	if c.FlowSpecValidationRoutes {
		for _, e := range c.validationErrors() {
			bad("%s", e)
		}
	}
	if len(c.OwnPrefixes) == 0 {
		bad("own_prefixes: at least one is needed (the only destinations ever announced)")
	}
	for _, p := range c.OwnPrefixes {
		if !p.IsValid() || p.Bits() == 0 {
			bad("own_prefixes: %s: must be a valid prefix longer than /0", p)
		}
	}
	if c.MinSourceBits4 < 1 || c.MinSourceBits4 > 32 {
		bad("minimum IPv4 source prefix /%d: want 1..32", c.MinSourceBits4)
	}
	if c.MinSourceBits6 < 1 || c.MinSourceBits6 > 128 {
		bad("minimum IPv6 source prefix /%d: want 1..128", c.MinSourceBits6)
	}
	if c.MaxRules < 1 {
		bad("max_flowspec_rules %d: must be at least 1 (and below the provider's prefix limit)", c.MaxRules)
	}
	if c.MaxChangesPerMinute < 1 {
		bad("max changes per minute %d: must be at least 1", c.MaxChangesPerMinute)
	}
	if c.MaxAge <= 0 {
		bad("max_age %s: must be positive (the dead-man limit)", c.MaxAge)
	}
	if c.RTBHNextHop4.IsValid() && !c.RTBHNextHop4.Is4() {
		bad("rtbh_next_hop_v4 %s: not an IPv4 address", c.RTBHNextHop4)
	}
	if c.RTBHNextHop6.IsValid() && (!c.RTBHNextHop6.Is6() || c.RTBHNextHop6.Is4In6()) {
		bad("rtbh_next_hop_v6 %s: not an IPv6 address", c.RTBHNextHop6)
	}
	return errors.Join(errs...)
}

// Action is what a FlowSpec rule does with matching traffic.
type Action string

const (
	// Discard drops matching traffic (traffic-rate 0).
	Discard Action = "discard"
	// RateLimit limits matching traffic to RateBytes bytes per second.
	RateLimit Action = "rate-limit"
)

// Community is a standard BGP community, AS:value.
type Community uint32

// Well-known communities RTBH announcements carry.
const (
	// Blackhole is 65535:666 (RFC 7999).
	Blackhole = Community(0xffff029a)
	// NoExport is 65535:65281 (RFC 1997).
	NoExport = Community(0xffffff01)
	// NoAdvertise is 65535:65282 (RFC 1997): the receiver keeps the route
	// to itself.
	NoAdvertise = Community(0xffffff02)
)

// ParseCommunity parses "AS:value" with both halves 0..65535.
func ParseCommunity(s string) (Community, error) {
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want AS:value", s)
	}
	a, err := strconv.ParseUint(hi, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("community %q: AS part: %w", s, err)
	}
	v, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("community %q: value part: %w", s, err)
	}
	return Community(a<<16 | v), nil
}

// String renders AS:value.
func (c Community) String() string { return fmt.Sprintf("%d:%d", uint32(c)>>16, uint32(c)&0xffff) }

// MarshalText renders AS:value.
func (c Community) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText parses AS:value.
func (c *Community) UnmarshalText(b []byte) error {
	v, err := ParseCommunity(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// validationErrors says why FlowSpecValidationRoutes cannot be used with
// these neighbors. A validation route goes to every neighbor carrying its
// unicast family, so a neighbor must carry each FlowSpec family with its
// unicast family (the route must come from the same peer as the rule) and
// no unicast family without its FlowSpec family (it would get routes for
// rules it is not sent); the session must be of the route's IP version,
// since next hop self is the session's local address and synban does not
// negotiate extended next hops.
func (c Config) validationErrors() []string {
	var errs []string
	anyFlowSpec := false
	for i, n := range c.Neighbors {
		where := fmt.Sprintf("neighbor %d (%s)", i+1, n.Address)
		has := map[string]bool{}
		for _, f := range n.Families {
			has[f] = true
		}
		for _, p := range [][3]string{{FamilyIPv4FlowSpec, FamilyIPv4Unicast, "4"}, {FamilyIPv6FlowSpec, FamilyIPv6Unicast, "6"}} {
			fs, uc, v := p[0], p[1], p[2]
			switch {
			case has[fs] && !has[uc]:
				errs = append(errs, fmt.Sprintf("%s: flowspec_validation_routes needs %s with %s: the rule's unicast route must come from the same peer", where, uc, fs))
			case has[uc] && !has[fs]:
				errs = append(errs, fmt.Sprintf("%s: flowspec_validation_routes would send it validation routes on %s without %s; give it both or neither", where, uc, fs))
			case has[fs] && n.Address.IsValid() && (v == "4") != n.Address.Is4():
				errs = append(errs, fmt.Sprintf("%s: flowspec_validation_routes sends %s routes with next hop self, which needs an IPv%s session (extended next hop is not negotiated)", where, uc, v))
			}
			anyFlowSpec = anyFlowSpec || has[fs]
		}
	}
	if !anyFlowSpec && len(c.Neighbors) > 0 {
		errs = append(errs, "flowspec_validation_routes: no neighbor carries ipv4-flowspec or ipv6-flowspec")
	}
	return errs
}
