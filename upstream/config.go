package upstream

import "github.com/synban/synban/upstream/config"

// Families a neighbor may carry (see package config).
const (
	FamilyIPv4Unicast  = config.FamilyIPv4Unicast
	FamilyIPv6Unicast  = config.FamilyIPv6Unicast
	FamilyIPv4FlowSpec = config.FamilyIPv4FlowSpec
	FamilyIPv6FlowSpec = config.FamilyIPv6FlowSpec
)

// Neighbor is one upstream router the speaker holds a session to.
type Neighbor = config.Neighbor

// Config is everything the upstream package needs; the policy fills it.
type Config = config.Config

// Action is what a FlowSpec rule does with matching traffic.
type Action = config.Action

const (
	// Discard drops matching traffic (traffic-rate 0).
	Discard = config.Discard
	// RateLimit limits matching traffic to RateBytes bytes per second.
	RateLimit = config.RateLimit
)

// Community is a standard BGP community, AS:value.
type Community = config.Community

// Well-known communities RTBH announcements carry.
const (
	// Blackhole is 65535:666 (RFC 7999).
	Blackhole = config.Blackhole
	// NoExport is 65535:65281 (RFC 1997).
	NoExport = config.NoExport
	// NoAdvertise is 65535:65282 (RFC 1997): the receiver keeps the route
	// to itself.
	NoAdvertise = config.NoAdvertise
)

// ParseCommunity parses "AS:value" with both halves 0..65535.
func ParseCommunity(s string) (Community, error) { return config.ParseCommunity(s) }
