package upstream

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

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

func TestCLIText(t *testing.T) {
	got := fsExamples[0].CLI()
	want := "gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 source 198.51.100.7/32 protocol tcp tcp-flags S&!A destination-port ==80 then discard"
	if got != want {
		t.Fatalf("CLI:\n got %s\nwant %s", got, want)
	}
	if got := fsExamples[1].CLI(); !strings.HasSuffix(got, "destination-port ==80 ==443 then rate-limit 125000") {
		t.Fatalf("rate-limit CLI: %s", got)
	}
	r := Announcement{Kind: RTBH, Destination: pfx("203.0.113.10/32"), Communities: []Community{Blackhole, NoExport}, NextHop: addr("192.0.2.1")}
	if got, want := r.CLI(), "gobgp global rib -a ipv4-unicast add 203.0.113.10/32 nexthop 192.0.2.1 community 65535:666,65535:65281"; got != want {
		t.Fatalf("RTBH CLI:\n got %s\nwant %s", got, want)
	}
}

// TestCLIParsesToSameNLRI proves the rendered CLI match, parsed by GoBGP's
// own FlowSpec CLI parser, gives byte for byte the NLRI the speaker sends.
func TestCLIParsesToSameNLRI(t *testing.T) {
	for _, a := range fsExamples {
		t.Run(a.CLI(), func(t *testing.T) {
			n, err := a.nlri()
			if err != nil {
				t.Fatal(err)
			}
			sent, err := n.Serialize()
			if err != nil {
				t.Fatal(err)
			}
			cli := a.CLI()
			_, match, ok := strings.Cut(cli, " add match ")
			if !ok {
				t.Fatalf("no match in %s", cli)
			}
			match, _, _ = strings.Cut(match, " then ")
			if w := a.WithdrawCLI(); !strings.HasSuffix(w, " del match "+match) {
				t.Fatalf("withdrawal %q does not name the same match %q", w, match)
			}
			fam := bgp.RF_FS_IPv4_UC
			if a.IPv6() {
				fam = bgp.RF_FS_IPv6_UC
			}
			cs, err := bgp.ParseFlowSpecComponents(fam, match)
			if err != nil {
				t.Fatalf("gobgp parser refuses %q: %v", match, err)
			}
			parsed, err := bgp.NewFlowSpecUnicast(fam, cs)
			if err != nil {
				t.Fatal(err)
			}
			back, err := parsed.Serialize()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sent, back) {
				t.Fatalf("NLRI differs:\n sent   %x (%s)\n parsed %x (%s)", sent, n, back, parsed)
			}
		})
	}
}

func TestKeyIsTheMatch(t *testing.T) {
	a := fsExamples[0]
	b := a
	b.Action, b.RateBytes = RateLimit, 1000
	if a.Key() != b.Key() {
		t.Fatalf("same match, other action: keys differ: %q %q", a.Key(), b.Key())
	}
	if a.Equal(b) {
		t.Fatal("other action compares equal")
	}
	c := a
	c.Ports = []uint16{81}
	if a.Key() == c.Key() {
		t.Fatal("other port, same key")
	}
	d := a
	d.Ports = []uint16{80, 80}
	if a.Key() != d.Key() || !a.Equal(d) {
		t.Fatal("a repeated port changes the key")
	}
}

func TestPathAttributes(t *testing.T) {
	p, err := fsExamples[1].Path()
	if err != nil {
		t.Fatal(err)
	}
	var rate float32 = -1
	for _, at := range p.Attrs {
		if ec, ok := at.(*bgp.PathAttributeExtendedCommunities); ok {
			for _, v := range ec.Value {
				if tr, ok := v.(*bgp.TrafficRateExtended); ok {
					rate = tr.Rate
				}
			}
		}
	}
	if rate != 125000 {
		t.Fatalf("traffic-rate %v, want 125000 bytes/s", rate)
	}
}

func TestCommunityText(t *testing.T) {
	c, err := ParseCommunity("65535:666")
	if err != nil || c != Blackhole {
		t.Fatalf("ParseCommunity: %v %v", c, err)
	}
	for _, bad := range []string{"666", "65536:1", "1:65536", "a:b", ""} {
		if _, err := ParseCommunity(bad); err == nil {
			t.Errorf("ParseCommunity(%q) accepted", bad)
		}
	}
}

// The well-known communities live in the GoBGP-free config package as
// numbers; they must stay GoBGP's.
func TestWellKnownCommunitiesAreGoBGPs(t *testing.T) {
	if Blackhole != Community(bgp.COMMUNITY_BLACKHOLE) || NoExport != Community(bgp.COMMUNITY_NO_EXPORT) ||
		NoAdvertise != Community(bgp.COMMUNITY_NO_ADVERTISE) {
		t.Fatalf("Blackhole %s, NoExport %s, NoAdvertise %s; GoBGP says %s, %s and %s", Blackhole, NoExport, NoAdvertise,
			Community(bgp.COMMUNITY_BLACKHOLE), Community(bgp.COMMUNITY_NO_EXPORT), Community(bgp.COMMUNITY_NO_ADVERTISE))
	}
}
