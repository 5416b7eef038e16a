package speaker

import (
	"net/netip"
	"time"

	"github.com/synban/synban/upstream"
)

// The speaker's tests build announcements and configurations as
// upstream's own tests do (upstream/check_test.go): the same fixtures,
// kept beside the tests that use them because test files cannot be
// imported across packages.

func testConfig() upstream.Config {
	return upstream.Config{
		LocalASN: 64512, RouterID: addr("192.0.2.254"),
		Neighbors:           []upstream.Neighbor{{Address: addr("192.0.2.1"), PeerASN: 64500, Families: []string{upstream.FamilyIPv4FlowSpec}}},
		OwnPrefixes:         []netip.Prefix{pfx("203.0.113.0/24"), pfx("2001:db8:10::/48")},
		MinSourceBits4:      24,
		MinSourceBits6:      64,
		Protected:           []netip.Prefix{pfx("203.0.113.10/32"), pfx("198.51.100.200/32"), pfx("2001:db8:10::10/128")},
		MaxRules:            3,
		MaxChangesPerMinute: 60,
		MaxAge:              time.Minute,
		RTBHNextHop4:        addr("192.0.2.66"),
		RTBHNextHop6:        addr("2001:db8::66"),
	}
}

func fs(dst, src string) upstream.Announcement {
	a := upstream.Announcement{Kind: upstream.FlowSpec, Destination: pfx(dst), Ports: []uint16{80}, Action: upstream.Discard}
	if src != "" {
		a.Source = pfx(src)
	}
	return a
}

func rtbh(dst, nh string) upstream.Announcement {
	return upstream.Announcement{Kind: upstream.RTBH, Destination: pfx(dst), Communities: []upstream.Community{upstream.Blackhole, upstream.NoExport}, NextHop: addr(nh)}
}

func clis(as []upstream.Announcement) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.CLI())
	}
	return out
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }
