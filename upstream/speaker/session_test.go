package speaker

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/synban/synban/upstream"
)

// TestOpenCapabilities: the OPEN carries exactly the capabilities synban
// uses (multiprotocol per configured family, route refresh, four-octet
// AS: no extended next hop, no graceful restart, no add-path), AS_TRANS
// for a four-octet local AS; an OPEN from the wrong AS is answered with a
// NOTIFICATION "bad peer AS" and ends the session.
func TestOpenCapabilities(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	ss := newSession(upstream.Neighbor{Address: addr("192.0.2.1"), PeerASN: 65001, Families: allFamilies}, 4200000000, addr("192.0.2.2"), testLogger(t), func(*session) {})
	errc := make(chan error, 1)
	go func() { errc <- ss.handle(a) }()
	m, err := readMessage(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := m.Body.(*bgp.BGPOpen)
	if !ok {
		t.Fatalf("first message %T, want OPEN", m.Body)
	}
	if o.MyAS != bgp.AS_TRANS || o.HoldTime != 90 || o.ID != addr("192.0.2.2") {
		t.Errorf("OPEN my AS %d hold %d id %s, want %d 90 192.0.2.2", o.MyAS, o.HoldTime, o.ID, bgp.AS_TRANS)
	}
	var got []string
	for _, op := range o.OptParams {
		c, ok := op.(*bgp.OptionParameterCapability)
		if !ok {
			t.Errorf("optional parameter %T", op)
			continue
		}
		for _, cp := range c.Capability {
			switch v := cp.(type) {
			case *bgp.CapMultiProtocol:
				got = append(got, "mp "+v.CapValue.String())
			case *bgp.CapFourOctetASNumber:
				got = append(got, fmt.Sprintf("as4 %d", v.CapValue))
			case *bgp.CapRouteRefresh:
				got = append(got, "route-refresh")
			default:
				got = append(got, fmt.Sprintf("capability %d", cp.Code()))
			}
		}
	}
	want := []string{"mp ipv4-unicast", "mp ipv6-unicast", "mp ipv4-flowspec", "mp ipv6-flowspec", "route-refresh", "as4 4200000000"}
	if !slices.Equal(got, want) {
		t.Errorf("capabilities %q, want %q", got, want)
	}

	reply, err := bgp.NewBGPOpenMessage(65002, 90, addr("192.0.2.1"), []bgp.OptionParameterInterface{
		bgp.NewOptionParameterCapability([]bgp.ParameterCapabilityInterface{bgp.NewCapFourOctetASNumber(65002)}),
	})
	if err != nil {
		t.Fatal(err)
	}
	wire, err := reply.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = b.Write(wire) }()
	m, err = readMessage(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, ok := m.Body.(*bgp.BGPNotification)
	if !ok || n.ErrorCode != bgp.BGP_ERROR_OPEN_MESSAGE_ERROR || n.ErrorSubcode != bgp.BGP_ERROR_SUB_BAD_PEER_AS {
		t.Fatalf("answer to the wrong AS: %T %+v, want NOTIFICATION bad peer AS", m.Body, m.Body)
	}
	var ne *errNotification
	if err := <-errc; !errors.As(err, &ne) || !ne.sent {
		t.Fatalf("session ended with %v, want the NOTIFICATION it sent", err)
	}
}

// TestPathAttrsPerPeer: towards an external neighbor AS_PATH is the local
// AS (four-octet, or AS_TRANS with AS4_PATH for a neighbor without
// four-octet AS numbers) and there is no LOCAL_PREF; towards an internal
// one AS_PATH is empty and LOCAL_PREF is 100; a validation route's
// unspecified next hop becomes the session's local address.
func TestPathAttrsPerPeer(t *testing.T) {
	v := upstream.ValidationRoute(pfx("203.0.113.10/32"))
	for _, c := range []struct {
		name string
		p    peer
		want string
	}{
		{"ebgp as4", peer{localASN: 4200000000, external: true, as4: true, local: addr("192.0.2.2")}, "path [4200000000] as4 [] pref 0 nh 192.0.2.2"},
		{"ebgp 2-octet neighbor", peer{localASN: 4200000000, external: true, local: addr("192.0.2.2")}, "path [23456] as4 [4200000000] pref 0 nh 192.0.2.2"},
		{"ebgp small as, 2-octet neighbor", peer{localASN: 64512, external: true, local: addr("192.0.2.2")}, "path [64512] as4 [] pref 0 nh 192.0.2.2"},
		{"ibgp", peer{localASN: 64512, as4: true, local: addr("192.0.2.3")}, "path [] as4 [] pref 100 nh 192.0.2.3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			attrs, err := pathAttrs(v, c.p)
			if err != nil {
				t.Fatal(err)
			}
			var path, as4 []uint32
			var pref uint32
			var nh string
			last := bgp.BGPAttrType(0)
			for _, a := range attrs {
				if a.GetType() < last {
					t.Errorf("attribute %d after %d: not in type code order", a.GetType(), last)
				}
				last = a.GetType()
				switch x := a.(type) {
				case *bgp.PathAttributeAsPath:
					for _, s := range x.Value {
						path = append(path, s.GetAS()...)
					}
				case *bgp.PathAttributeAs4Path:
					for _, s := range x.Value {
						as4 = append(as4, s.AS...)
					}
				case *bgp.PathAttributeLocalPref:
					pref = x.Value
				case *bgp.PathAttributeNextHop:
					nh = x.Value.String()
				}
			}
			if got := fmt.Sprintf("path %v as4 %v pref %d nh %s", path, as4, pref, nh); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
	if _, err := pathAttrs(v, peer{localASN: 1, external: true, as4: true, local: addr("2001:db8::2")}); err == nil {
		t.Error("IPv4 validation route with next hop self on an IPv6 session: no error")
	}
}
