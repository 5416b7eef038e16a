package policy

import (
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/synban/synban/upstream/config"
)

// Upstream configures upstream mitigation over BGP ([upstream]): when a
// flood saturates the uplink, runs decide FlowSpec rules against the
// attackers (or a rate limit for a spoofed flood) and, as a last resort,
// RTBH of the victim address; the long-running `synban upstream` speaker
// announces them to the neighbors. Off by default.
type Upstream struct {
	// Enabled turns upstream mitigation on (default false).
	Enabled bool `toml:"enabled"`
	// LocalASN is this host's AS number (1..4294967295; required when
	// enabled).
	LocalASN int64 `toml:"local_asn"`
	// RouterID is the BGP router id, an IPv4 address (required when
	// enabled).
	RouterID string `toml:"router_id"`
	// OwnPrefixes are the only destinations ever announced (required when
	// enabled; no /0).
	OwnPrefixes []netip.Prefix `toml:"own_prefixes"`
	// Interfaces are the uplink interfaces whose inbound rate is measured
	// (required when enabled).
	Interfaces []string `toml:"interfaces"`
	// UplinkBps is the uplink's capacity in bits per second, summed over
	// Interfaces (required when enabled).
	UplinkBps int64 `toml:"uplink_bps"`
	// SaturationRatio is the share of UplinkBps at or above which the
	// uplink is saturated (default 0.8; 0 < ratio <= 1).
	SaturationRatio float64 `toml:"saturation_ratio"`
	// RealAction is what a real flood's per-source FlowSpec rules do:
	// "discard" (default), "rate-limit" or "none" (no upstream action).
	RealAction string `toml:"real_action"`
	// SpoofedAction is what a spoofed flood gets: "rate-limit" (default:
	// one rule per victim address and port, never per source) or "none".
	SpoofedAction string `toml:"spoofed_action"`
	// FlowSpecRateBytes is the rate-limit rules' rate in bytes per second
	// (not bits; default 125000, 1 Mbit/s).
	FlowSpecRateBytes int64 `toml:"flowspec_rate_bytes"`
	// MaxFlowSpecRules is the local cap of routes per BGP family, to be
	// set below the provider's prefix limit (default 20; 1..MaxUpstreamRules).
	MaxFlowSpecRules int `toml:"max_flowspec_rules"`
	// MaxChangesPerMinute dampens announcements, replacements and
	// withdrawals; the excess is deferred, never dropped (default 60).
	MaxChangesPerMinute int `toml:"max_changes_per_minute"`
	// AllowRTBH lets synban black-hole a victim /32 or /128 when FlowSpec
	// does not end the saturation within MinHold, is refused, or would need
	// more rules than the cap (default false).
	AllowRTBH bool `toml:"allow_rtbh"`
	// FlowSpecValidationRoutes sends, with each FlowSpec rule, the unicast
	// route of its destination (the victim /32 or /128, one of this host's
	// own addresses) with next hop self, NO_EXPORT, NO_ADVERTISE and a MED
	// one below the maximum, so that a provider validating FlowSpec (RFC
	// 8955 section 6) applies the rules (default false). Every neighbor must
	// then carry each FlowSpec family with its unicast family, over a
	// session of the same IP version.
	FlowSpecValidationRoutes bool `toml:"flowspec_validation_routes"`
	// RTBHCommunities are added to BLACKHOLE (65535:666) and NO_EXPORT on
	// RTBH routes, "AS:value" (default none).
	RTBHCommunities []string `toml:"rtbh_communities"`
	// RTBHNextHopV4 and RTBHNextHopV6 are the RTBH routes' next hops
	// (default 192.0.2.1 and 100::1, RFC 6666's discard prefix).
	RTBHNextHopV4 string `toml:"rtbh_next_hop_v4"`
	RTBHNextHopV6 string `toml:"rtbh_next_hop_v6"`
	// MinHold is how long FlowSpec rules hold under saturation before RTBH
	// (default 2m).
	MinHold Duration `toml:"min_hold"`
	// WithdrawAfterQuiet is how long the flood must be gone before every
	// announcement is withdrawn (default 10m).
	WithdrawAfterQuiet Duration `toml:"withdraw_after_quiet"`
	// MaxAge is the dead-man limit: the speaker withdraws an announcement
	// no run has confirmed for this long (default 5m; longer than the time
	// between runs).
	MaxAge Duration `toml:"max_age"`
	// Neighbors are the upstream routers ([[upstream.neighbor]]; at least
	// one when enabled).
	Neighbors []UpstreamNeighbor `toml:"neighbor"`
}

// UpstreamNeighbor is one upstream router synban holds a BGP session to.
type UpstreamNeighbor struct {
	// Address is the router's address.
	Address string `toml:"address" policy:"required"`
	// PeerASN is the router's AS number.
	PeerASN int64 `toml:"peer_asn" policy:"required"`
	// Families the session carries: ipv4-unicast and ipv6-unicast (RTBH),
	// ipv4-flowspec and ipv6-flowspec.
	Families []string `toml:"families" policy:"required"`
	// PasswordFile holds the TCP MD5 password (absolute path, chmod 600);
	// empty for none.
	PasswordFile string `toml:"password_file"`
	// Port is the router's BGP port (default 179).
	Port int `toml:"port"`
}

// Bounds of [upstream].
const (
	// MaxUpstreamRules bounds upstream.max_flowspec_rules: providers take
	// tens of FlowSpec rules, and a receiver over its prefix limit drops
	// the whole session.
	MaxUpstreamRules = 10000
	// maxNeighbors bounds [[upstream.neighbor]].
	maxNeighbors = 64
	// maxRTBHCommunities bounds upstream.rtbh_communities (with BLACKHOLE
	// and NO_EXPORT within the speaker's bound of 32).
	maxRTBHCommunities = 30
	// maxFamilies bounds a neighbor's families: there are four.
	maxFamilies = 4
)

var (
	realActions    = []string{string(config.Discard), string(config.RateLimit), "none"}
	spoofedActions = []string{string(config.RateLimit), "none"}
	upstreamFams   = []string{config.FamilyIPv4Unicast, config.FamilyIPv6Unicast, config.FamilyIPv4FlowSpec, config.FamilyIPv6FlowSpec}
)

// integer64 decodes a 64-bit integer (AS numbers, bits per second).
func (d *decoder) integer64(dst *int64) field {
	return func(key string, v any) {
		n, ok := v.(int64)
		if !ok {
			d.errorf(key, "must be an integer, got %s", describe(v))
			return
		}
		*dst = n
	}
}

// UpstreamConfig converts [upstream] into the upstream speaker's Config
// (package upstream/config, which links no BGP library):
// the one place where the section becomes what the speaker and the run's
// decision use. protected are the host's addresses and the allow list
// (never a source); passwords, when not nil, are the neighbors' passwords
// read from their password_file, index for index. The minimum source
// prefixes are ban.min_ipv4_length and ban.min_ipv6_length. On a
// validated policy every value parses; Validate is the upstream package's
// own check of the result.
func (p *Policy) UpstreamConfig(protected []netip.Prefix, passwords []string) config.Config {
	u := &p.Upstream
	cfg := config.Config{
		LocalASN:            uint32(min(max(u.LocalASN, 0), math.MaxUint32)),
		OwnPrefixes:         slices.Clone(u.OwnPrefixes),
		MinSourceBits4:      p.Ban.MinIPv4Length,
		MinSourceBits6:      p.Ban.MinIPv6Length,
		Protected:           slices.Clone(protected),
		MaxRules:            u.MaxFlowSpecRules,
		MaxChangesPerMinute: u.MaxChangesPerMinute,
		MaxAge:              u.MaxAge.Duration,

		FlowSpecValidationRoutes: u.FlowSpecValidationRoutes,
	}
	cfg.RouterID, _ = netip.ParseAddr(u.RouterID)
	cfg.RTBHNextHop4, _ = netip.ParseAddr(u.RTBHNextHopV4)
	cfg.RTBHNextHop6, _ = netip.ParseAddr(u.RTBHNextHopV6)
	for _, s := range u.RTBHCommunities {
		if c, err := config.ParseCommunity(s); err == nil {
			cfg.RTBHCommunities = append(cfg.RTBHCommunities, c)
		}
	}
	for i, n := range u.Neighbors {
		a, _ := netip.ParseAddr(n.Address)
		nb := config.Neighbor{Address: a.Unmap(), PeerASN: uint32(min(max(n.PeerASN, 0), math.MaxUint32)),
			Families: slices.Clone(n.Families), Port: uint16(min(max(n.Port, 0), 65535))}
		if i < len(passwords) {
			nb.Password = passwords[i]
		}
		cfg.Neighbors = append(cfg.Neighbors, nb)
	}
	return cfg
}

// validateUpstream checks [upstream]. The limits and the syntax of every
// value hold whether or not it is enabled; what an enabled section needs
// (an AS, a router id, prefixes, interfaces, a capacity, neighbors) only
// when enabled, followed by config.Config.Validate on the converted
// section.
func (d *decoder) validateUpstream(p *Policy) {
	u := &p.Upstream
	before := len(d.errs)
	asn := func(key string, v int64, set bool) {
		if (set || v != 0) && (v < 1 || v > math.MaxUint32) {
			d.errorf(key, "must be an AS number in 1..4294967295, got %d", v)
		}
	}
	asn("upstream.local_asn", u.LocalASN, false)
	if u.RouterID != "" {
		if a, err := netip.ParseAddr(u.RouterID); err != nil || !a.Is4() {
			d.errorf("upstream.router_id", "must be an IPv4 address (the BGP identifier), got %q", u.RouterID)
		}
	}
	for i, pfx := range u.OwnPrefixes {
		if pfx.Bits() == 0 {
			d.errorf(fmt.Sprintf("upstream.own_prefixes[%d]", i), "%s would let synban announce anything; name your own prefixes", pfx)
		}
	}
	for i, ifc := range u.Interfaces {
		if !deviceNames.MatchString(ifc) {
			d.errorf(fmt.Sprintf("upstream.interfaces[%d]", i), "must be an interface name (1..15 letters, digits, '_', '-' or '.'), got %q", ifc)
		} else if slices.Contains(u.Interfaces[:i], ifc) {
			d.errorf(fmt.Sprintf("upstream.interfaces[%d]", i), "duplicate interface %q", ifc)
		}
	}
	if u.UplinkBps < 0 {
		d.errorf("upstream.uplink_bps", "must be a capacity in bits per second > 0, got %d", u.UplinkBps)
	}
	if r := u.SaturationRatio; math.IsNaN(r) || r <= 0 || r > 1 {
		d.errorf("upstream.saturation_ratio", "must be in 0..1 (above 0), got %v", r)
	}
	d.oneOf("upstream.real_action", u.RealAction, realActions)
	d.oneOf("upstream.spoofed_action", u.SpoofedAction, spoofedActions)
	if r := u.FlowSpecRateBytes; r < 1 || r > 1<<40 {
		d.errorf("upstream.flowspec_rate_bytes", "must be a rate in bytes per second in 1..%d, got %d", int64(1)<<40, r)
	}
	d.between("upstream.max_flowspec_rules", u.MaxFlowSpecRules, 1, MaxUpstreamRules)
	d.between("upstream.max_changes_per_minute", u.MaxChangesPerMinute, 1, 100000)
	for i, s := range u.RTBHCommunities {
		if _, err := config.ParseCommunity(s); err != nil {
			d.errorf(fmt.Sprintf("upstream.rtbh_communities[%d]", i), "%v", err)
		}
	}
	if a, err := netip.ParseAddr(u.RTBHNextHopV4); err != nil || !a.Is4() {
		d.errorf("upstream.rtbh_next_hop_v4", "must be an IPv4 address, got %q", u.RTBHNextHopV4)
	}
	if a, err := netip.ParseAddr(u.RTBHNextHopV6); err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
		d.errorf("upstream.rtbh_next_hop_v6", "must be an IPv6 address, got %q", u.RTBHNextHopV6)
	}
	d.positiveDuration("upstream.min_hold", u.MinHold)
	d.positiveDuration("upstream.withdraw_after_quiet", u.WithdrawAfterQuiet)
	d.positiveDuration("upstream.max_age", u.MaxAge)
	if u.MaxAge.Duration > 0 && u.MaxAge.Duration < 10*time.Second {
		d.errorf("upstream.max_age", "must be at least 10s (longer than the time between runs), got %s", u.MaxAge)
	}
	seen := map[netip.Addr]int{}
	for i, n := range u.Neighbors {
		k := fmt.Sprintf("upstream.neighbor[%d]", i)
		if a, err := netip.ParseAddr(n.Address); err != nil || a.Zone() != "" {
			d.errorf(k+".address", "must be an IPv4 or IPv6 address, got %q", n.Address)
		} else if j, dup := seen[a.Unmap()]; dup {
			d.errorf(k+".address", "%s is also upstream.neighbor[%d]", a, j)
		} else {
			seen[a.Unmap()] = i
		}
		asn(k+".peer_asn", n.PeerASN, true)
		if len(n.Families) == 0 {
			d.errorf(k+".families", "must name at least one of %s", quoteList(upstreamFams))
		}
		for j, f := range n.Families {
			fk := fmt.Sprintf("%s.families[%d]", k, j)
			d.oneOf(fk, f, upstreamFams)
			if slices.Contains(n.Families[:j], f) {
				d.errorf(fk, "duplicate family %q", f)
			}
		}
		if u.FlowSpecValidationRoutes {
			d.validationFamilies(k, n)
		}
		if n.PasswordFile != "" && !filepath.IsAbs(n.PasswordFile) {
			d.errorf(k+".password_file", "must be an absolute path, got %q", n.PasswordFile)
		}
		if n.Port < 0 || n.Port > 65535 || n.Port == 0 && d.pos.has(k+".port") {
			d.errorf(k+".port", "must be in 1..65535, got %d", n.Port)
		}
	}
	if u.FlowSpecValidationRoutes && len(u.Neighbors) > 0 && !slices.ContainsFunc(u.Neighbors, func(n UpstreamNeighbor) bool {
		return slices.Contains(n.Families, config.FamilyIPv4FlowSpec) || slices.Contains(n.Families, config.FamilyIPv6FlowSpec)
	}) {
		d.errorf("upstream.flowspec_validation_routes", "no [[upstream.neighbor]] carries ipv4-flowspec or ipv6-flowspec")
	}
	if !u.Enabled {
		return
	}
	if u.LocalASN == 0 {
		d.errorf("upstream.local_asn", "required when upstream.enabled is true")
	}
	if u.RouterID == "" {
		d.errorf("upstream.router_id", "required when upstream.enabled is true (an IPv4 address)")
	}
	if len(u.OwnPrefixes) == 0 {
		d.errorf("upstream.own_prefixes", "required when upstream.enabled is true: the only destinations ever announced")
	}
	if len(u.Interfaces) == 0 {
		d.errorf("upstream.interfaces", "required when upstream.enabled is true: the uplink interfaces to measure")
	}
	if u.UplinkBps == 0 {
		d.errorf("upstream.uplink_bps", "required when upstream.enabled is true: the uplink's capacity in bits per second")
	}
	if len(u.Neighbors) == 0 {
		d.errorf("upstream.neighbor", "at least one [[upstream.neighbor]] is required when upstream.enabled is true")
	}
	if u.RealAction == "none" && u.SpoofedAction == "none" {
		d.errorf("upstream.real_action", "\"none\" with spoofed_action \"none\" does nothing; set one or disable [upstream]")
	}
	if len(d.errs) > before {
		return // the conversion below needs every value to parse
	}
	// The upstream package's own check of what the section becomes.
	if err := p.UpstreamConfig(nil, nil).Validate(); err != nil {
		var msgs []string
		for _, e := range unjoin(err) {
			msgs = append(msgs, e.Error())
		}
		d.errorf("upstream", "%s", strings.Join(msgs, "; "))
	}
}

// validationFamilies checks one neighbor against
// upstream.flowspec_validation_routes: a validation route goes to every
// neighbor carrying its unicast family, so each FlowSpec family needs its
// unicast family (the route must come from the same peer as the rule), a
// unicast family without its FlowSpec family would receive routes for rules
// it is not sent, and next hop self needs a session of the route's IP
// version (synban does not negotiate extended next hops).
func (d *decoder) validationFamilies(k string, n UpstreamNeighbor) {
	a, err := netip.ParseAddr(n.Address)
	for _, p := range [][3]string{{config.FamilyIPv4FlowSpec, config.FamilyIPv4Unicast, "4"}, {config.FamilyIPv6FlowSpec, config.FamilyIPv6Unicast, "6"}} {
		fs, uc, v := p[0], p[1], p[2]
		hasFS, hasUC := slices.Contains(n.Families, fs), slices.Contains(n.Families, uc)
		switch {
		case hasFS && !hasUC:
			d.errorf(k+".families", "upstream.flowspec_validation_routes needs %q with %q: a rule's unicast route must come from the same peer", uc, fs)
		case hasUC && !hasFS:
			d.errorf(k+".families", "upstream.flowspec_validation_routes would send validation routes on %q without %q; give this neighbor both or neither", uc, fs)
		case hasFS && err == nil && (v == "4") != a.Unmap().Is4():
			d.errorf(k+".families", "upstream.flowspec_validation_routes sends %q routes with next hop self, which needs an IPv%s session to this neighbor", uc, v)
		}
	}
}

// unjoin splits an errors.Join into its errors.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
