// Package upstream moves a decided mitigation to the upstream routers over
// BGP: FlowSpec rules (RFC 8955/8956) against attacker prefixes and RTBH
// (RFC 7999) of a victim address, announced by synban's speaker
// (upstream/speaker, in the synban-speaker binary).
//
// The package is layered so that each part can be tested on its own:
// Announcement is the one value every other part works on (it renders both
// the GoBGP path and the gobgp CLI text); Check is the pure safety gate;
// Decide is the pure decision from measured inputs; the hand-off file carries
// the desired announcements from runs to the long-running Speaker, which
// reconciles its BGP announcements against it.
package upstream

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Kind says what an announcement asks of the upstream routers.
type Kind string

const (
	// FlowSpec is a traffic filter: match on destination, optional source,
	// TCP SYN without ACK and destination ports; then discard or rate-limit.
	FlowSpec Kind = "flowspec"
	// RTBH is remotely triggered black-holing of one victim address: a
	// unicast /32 or /128 with the BLACKHOLE community.
	RTBH Kind = "rtbh"
	// Validation is the unicast route for a FlowSpec rule's destination
	// (the victim /32 or /128, one of the host's own addresses), sent so
	// that a router validating FlowSpec (RFC 8955 section 6) accepts the
	// rule: next hop self, NO_EXPORT and NO_ADVERTISE so that it goes no
	// further than the receiving router, MED ValidationMED. The speaker
	// derives it from the FlowSpec rules (upstream.flowspec_validation_routes);
	// it is never in the hand-off file.
	Validation Kind = "validation"
)

// ValidationMED is the MED of a validation route: one below the maximum,
// so that any other route the receiver has for the same address from this
// AS is preferred (some implementations treat the maximum itself as
// unreachable, which would defeat validation).
const ValidationMED = 0xfffffffe

// Announcement is one route synban wants upstream. Everything sent over BGP
// and every rendering of it derive from this value.
//
// A FlowSpec announcement always matches protocol TCP and TCP flags SYN
// without ACK (the floods synban detects); Destination is the victim,
// Source the attacker prefix (absent for a spoofed flood), Ports the victim's
// destination ports (empty: any). An RTBH announcement has a /32 or /128
// Destination, Communities and NextHop.
type Announcement struct {
	Kind        Kind         `json:"kind"`
	Destination netip.Prefix `json:"destination"`
	Source      netip.Prefix `json:"source,omitzero"`
	Ports       []uint16     `json:"ports,omitempty"`
	Action      Action       `json:"action,omitempty"`
	// RateBytes is the rate limit in bytes per second (not bits), for
	// Action RateLimit.
	RateBytes   uint64      `json:"rate_bytes,omitempty"`
	Communities []Community `json:"communities,omitempty"`
	NextHop     netip.Addr  `json:"next_hop,omitzero"`
	// Weight orders announcements by importance (traffic they cover, larger
	// first) when a cap cuts some; it is not sent.
	Weight uint64 `json:"weight,omitempty"`
}

// IPv6 reports whether the announcement is for the IPv6 families.
func (a Announcement) IPv6() bool {
	return a.Destination.Addr().Is6() && !a.Destination.Addr().Is4In6()
}

// Family is the GoBGP family name: ipv4-flowspec, ipv6-flowspec,
// ipv4-unicast or ipv6-unicast.
func (a Announcement) Family() string {
	switch {
	case a.Kind == FlowSpec && a.IPv6():
		return FamilyIPv6FlowSpec
	case a.Kind == FlowSpec:
		return FamilyIPv4FlowSpec
	case a.IPv6():
		return FamilyIPv6Unicast
	default:
		return FamilyIPv4Unicast
	}
}

// Key identifies the announcement's NLRI: two announcements with the same
// key replace each other upstream (the same match with another action is a
// replacement, not a second rule).
func (a Announcement) Key() string {
	if a.Kind == FlowSpec {
		return a.Family() + " " + a.matchText()
	}
	return a.Family() + " " + a.Destination.String()
}

// Equal reports whether a and b would put the same route on the wire
// (Weight aside).
func (a Announcement) Equal(b Announcement) bool {
	return a.Key() == b.Key() && a.ThenText() == b.ThenText()
}

// matchText is the FlowSpec match in gobgp CLI syntax.
func (a Announcement) matchText() string {
	var b strings.Builder
	b.WriteString("destination " + a.Destination.String())
	if a.Source.IsValid() {
		b.WriteString(" source " + a.Source.String())
	}
	b.WriteString(" protocol tcp tcp-flags S&!A")
	if len(a.Ports) > 0 {
		b.WriteString(" destination-port")
		for _, p := range a.SortedPorts() {
			fmt.Fprintf(&b, " ==%d", p)
		}
	}
	return b.String()
}

// ThenText is the action part in gobgp CLI syntax (FlowSpec) or the path
// attributes (RTBH).
func (a Announcement) ThenText() string {
	if a.Kind == FlowSpec {
		if a.Action == RateLimit {
			// gobgp's CLI takes the rate as bytes per second, like the
			// traffic-rate extended community.
			return fmt.Sprintf("then rate-limit %d", a.RateBytes)
		}
		return "then discard"
	}
	var b strings.Builder
	b.WriteString("nexthop " + a.NextHop.String() + " community ")
	for i, c := range a.Communities {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(c.String())
	}
	if a.Kind == Validation {
		fmt.Fprintf(&b, " med %d", ValidationMED)
	}
	return b.String()
}

// CLI renders the announcement as the gobgp command that would add it, e.g.
// `gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32
// source 198.51.100.7/32 protocol tcp tcp-flags S&!A destination-port ==80
// then discard`.
func (a Announcement) CLI() string {
	if a.Kind == FlowSpec {
		return "gobgp global rib -a " + a.Family() + " add match " + a.matchText() + " " + a.ThenText()
	}
	return "gobgp global rib -a " + a.Family() + " add " + a.Destination.String() + " " + a.ThenText()
}

// WithdrawCLI renders the gobgp command that would withdraw a.
func (a Announcement) WithdrawCLI() string {
	if a.Kind == FlowSpec {
		return "gobgp global rib -a " + a.Family() + " del match " + a.matchText()
	}
	return "gobgp global rib -a " + a.Family() + " del " + a.Destination.String()
}

// String is the CLI rendering.
func (a Announcement) String() string { return a.CLI() }

// SortedPorts returns the destination ports sorted, without repeats.
func (a Announcement) SortedPorts() []uint16 {
	p := slices.Clone(a.Ports)
	slices.Sort(p)
	return slices.Compact(p)
}

// ValidationRoute is the validation route for a FlowSpec rule's
// destination d (a /32 or /128): the unspecified next hop, which the
// speaker replaces by the session's local address (next hop self), NO_EXPORT and
// NO_ADVERTISE.
func ValidationRoute(d netip.Prefix) Announcement {
	nh := netip.IPv4Unspecified()
	if d.Addr().Is6() {
		nh = netip.IPv6Unspecified()
	}
	return Announcement{Kind: Validation, Destination: d, Communities: []Community{NoExport, NoAdvertise}, NextHop: nh}
}
