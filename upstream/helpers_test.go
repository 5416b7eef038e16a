package upstream

import "net/netip"

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// fsExamples are FlowSpec announcements covering both families, with and
// without a source, ports and both actions.
var fsExamples = []Announcement{
	{Kind: FlowSpec, Destination: pfx("203.0.113.10/32"), Source: pfx("198.51.100.7/32"), Ports: []uint16{80}, Action: Discard},
	{Kind: FlowSpec, Destination: pfx("203.0.113.10/32"), Source: pfx("198.51.100.0/24"), Ports: []uint16{443, 80}, Action: RateLimit, RateBytes: 125000},
	{Kind: FlowSpec, Destination: pfx("203.0.113.10/32"), Ports: []uint16{22}, Action: RateLimit, RateBytes: 1000},
	{Kind: FlowSpec, Destination: pfx("203.0.113.10/32"), Action: Discard},
	{Kind: FlowSpec, Destination: pfx("2001:db8:10::10/128"), Source: pfx("2001:db8:bad::/64"), Ports: []uint16{443}, Action: Discard},
	{Kind: FlowSpec, Destination: pfx("2001:db8:10::10/128"), Ports: []uint16{80, 8080}, Action: RateLimit, RateBytes: 50000},
}
