package speaker

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/synban/synban/upstream"
)

// fsExamples are FlowSpec announcements covering both families, with and
// without a source, ports and both actions.
var fsExamples = []upstream.Announcement{
	{Kind: upstream.FlowSpec, Destination: pfx("203.0.113.10/32"), Source: pfx("198.51.100.7/32"), Ports: []uint16{80}, Action: upstream.Discard},
	{Kind: upstream.FlowSpec, Destination: pfx("203.0.113.10/32"), Source: pfx("198.51.100.0/24"), Ports: []uint16{443, 80}, Action: upstream.RateLimit, RateBytes: 125000},
	{Kind: upstream.FlowSpec, Destination: pfx("203.0.113.10/32"), Ports: []uint16{22}, Action: upstream.RateLimit, RateBytes: 1000},
	{Kind: upstream.FlowSpec, Destination: pfx("203.0.113.10/32"), Action: upstream.Discard},
	{Kind: upstream.FlowSpec, Destination: pfx("2001:db8:10::10/128"), Source: pfx("2001:db8:bad::/64"), Ports: []uint16{443}, Action: upstream.Discard},
	{Kind: upstream.FlowSpec, Destination: pfx("2001:db8:10::10/128"), Ports: []uint16{80, 8080}, Action: upstream.RateLimit, RateBytes: 50000},
}

// TestCLIParsesToSameNLRI proves the rendered CLI match, parsed by GoBGP's
// own FlowSpec CLI parser, gives byte for byte the NLRI the speaker sends.
func TestCLIParsesToSameNLRI(t *testing.T) {
	for _, a := range fsExamples {
		t.Run(a.CLI(), func(t *testing.T) {
			n, err := toNLRI(a)
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

func TestPathAttributes(t *testing.T) {
	attrs, err := pathAttrs(fsExamples[1], probePeer)
	if err != nil {
		t.Fatal(err)
	}
	var rate float32 = -1
	for _, at := range attrs {
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

// The well-known communities live in the GoBGP-free config package as
// numbers; they must stay GoBGP's.
func TestWellKnownCommunitiesAreGoBGPs(t *testing.T) {
	if upstream.Blackhole != upstream.Community(bgp.COMMUNITY_BLACKHOLE) || upstream.NoExport != upstream.Community(bgp.COMMUNITY_NO_EXPORT) ||
		upstream.NoAdvertise != upstream.Community(bgp.COMMUNITY_NO_ADVERTISE) {
		t.Fatalf("Blackhole %s, NoExport %s, NoAdvertise %s; GoBGP says %s, %s and %s", upstream.Blackhole, upstream.NoExport, upstream.NoAdvertise,
			upstream.Community(bgp.COMMUNITY_BLACKHOLE), upstream.Community(bgp.COMMUNITY_NO_EXPORT), upstream.Community(bgp.COMMUNITY_NO_ADVERTISE))
	}
}

// TestFamilyIsGoBGPs: upstream names families without GoBGP; the names
// must be the ones GoBGP gives the same families.
func TestFamilyIsGoBGPs(t *testing.T) {
	for _, a := range append(slices.Clone(fsExamples), rtbh("203.0.113.10/32", "192.0.2.66"), rtbh("2001:db8:10::10/128", "2001:db8::66"),
		upstream.ValidationRoute(pfx("203.0.113.10/32")), upstream.ValidationRoute(pfx("2001:db8:10::10/128"))) {
		if got, want := a.Family(), bgpFamily(a).String(); got != want {
			t.Errorf("%s: Family() = %q, GoBGP calls it %q", a.CLI(), got, want)
		}
	}
}
