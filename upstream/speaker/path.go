package speaker

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/synban/synban/upstream"
)

func bgpFamily(a upstream.Announcement) bgp.Family {
	switch {
	case a.Kind == upstream.FlowSpec && a.IPv6():
		return bgp.RF_FS_IPv6_UC
	case a.Kind == upstream.FlowSpec:
		return bgp.RF_FS_IPv4_UC
	case a.IPv6():
		return bgp.RF_IPv6_UC
	default:
		return bgp.RF_IPv4_UC
	}
}

// TCP flag bits (RFC 793) used in the FlowSpec TCP flags component.
const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// components builds the FlowSpec NLRI components.
func components(a upstream.Announcement) ([]bgp.FlowSpecComponentInterface, error) {
	dst, err := bgp.NewIPAddrPrefix(a.Destination)
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", a.Destination, err)
	}
	var cs []bgp.FlowSpecComponentInterface
	if a.IPv6() {
		cs = append(cs, bgp.NewFlowSpecDestinationPrefix6(dst, 0))
	} else {
		cs = append(cs, bgp.NewFlowSpecDestinationPrefix(dst))
	}
	if a.Source.IsValid() {
		src, err := bgp.NewIPAddrPrefix(a.Source)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", a.Source, err)
		}
		if a.IPv6() {
			cs = append(cs, bgp.NewFlowSpecSourcePrefix6(src, 0))
		} else {
			cs = append(cs, bgp.NewFlowSpecSourcePrefix(src))
		}
	}
	// protocol == 6 (tcp)
	cs = append(cs, bgp.NewFlowSpecComponent(bgp.FLOW_SPEC_TYPE_IP_PROTO, []*bgp.FlowSpecComponentItem{
		bgp.NewFlowSpecComponentItem(uint8(bgp.DEC_NUM_OP_EQ)|uint8(bgp.DEC_NUM_OP_END), 6),
	}))
	// SYN set, and (AND) not ACK set.
	cs = append(cs, bgp.NewFlowSpecComponent(bgp.FLOW_SPEC_TYPE_TCP_FLAG, []*bgp.FlowSpecComponentItem{
		bgp.NewFlowSpecComponentItem(0, tcpSYN),
		bgp.NewFlowSpecComponentItem(uint8(bgp.BITMASK_FLAG_OP_AND)|uint8(bgp.BITMASK_FLAG_OP_NOT)|uint8(bgp.BITMASK_FLAG_OP_END), tcpACK),
	}))
	if ports := a.SortedPorts(); len(ports) > 0 {
		items := make([]*bgp.FlowSpecComponentItem, len(ports))
		for i, p := range ports {
			op := uint8(bgp.DEC_NUM_OP_EQ)
			if i == len(ports)-1 {
				op |= uint8(bgp.DEC_NUM_OP_END)
			}
			items[i] = bgp.NewFlowSpecComponentItem(op, uint64(p))
		}
		cs = append(cs, bgp.NewFlowSpecComponent(bgp.FLOW_SPEC_TYPE_DST_PORT, items))
	}
	return cs, nil
}

// toNLRI builds the NLRI the announcement is keyed on.
func toNLRI(a upstream.Announcement) (bgp.NLRI, error) {
	if !a.Destination.IsValid() {
		return nil, fmt.Errorf("announcement without a destination")
	}
	if a.Kind == upstream.FlowSpec {
		cs, err := components(a)
		if err != nil {
			return nil, err
		}
		n, err := bgp.NewFlowSpecUnicast(bgpFamily(a), cs)
		if err != nil {
			return nil, fmt.Errorf("flowspec nlri for %s: %w", a.Destination, err)
		}
		return n, nil
	}
	n, err := bgp.NewIPAddrPrefix(a.Destination)
	if err != nil {
		return nil, fmt.Errorf("rtbh nlri for %s: %w", a.Destination, err)
	}
	return n, nil
}

// peer is what the attributes of an UPDATE depend on: the session's
// neighbor and the capabilities it negotiated.
type peer struct {
	localASN uint32
	external bool       // eBGP: the local AS goes into AS_PATH, no LOCAL_PREF
	as4      bool       // the neighbor negotiated four-octet AS numbers (RFC 6793)
	local    netip.Addr // the session's local address: "next hop self"
}

// probePeer is the neighbor Reconcile builds each announcement's UPDATE
// for before it keeps the announcement, so that one that cannot be encoded
// is refused with its reason instead of failing on every session.
var probePeer = peer{localASN: 64512, external: true, as4: true}

// nextHop is a's next hop towards p: an unspecified one means next hop
// self, the session's local address (it must be of the route's family).
func (p peer) nextHop(a upstream.Announcement) (netip.Addr, error) {
	nh := a.NextHop
	if nh.IsUnspecified() {
		nh = p.local
		if !nh.IsValid() { // probePeer: any address of the family
			nh = netip.IPv4Unspecified()
			if a.IPv6() {
				nh = netip.IPv6Unspecified()
			}
			return nh, nil
		}
		nh = nh.Unmap()
	}
	if !nh.IsValid() || nh.Is6() != a.IPv6() {
		return netip.Addr{}, fmt.Errorf("%s of %s: next hop %s is not of the route's family (next hop self needs a session of the same IP version)", a.Kind, a.Destination, nh)
	}
	return nh, nil
}

// pathAttrs builds the path attributes that announce a to p, in type code
// order: ORIGIN IGP; AS_PATH (the local AS towards an external neighbor,
// empty towards an internal one, with AS4_PATH when a neighbor without
// four-octet AS numbers needs AS_TRANS); NEXT_HOP for IPv4 unicast; MED
// on validation routes; LOCAL_PREF 100 towards an internal neighbor;
// COMMUNITIES on RTBH and validation routes; MP_REACH_NLRI (without a
// next hop for FlowSpec, RFC 8955 section 4); and traffic-rate (0 bytes/s
// discards) on FlowSpec.
func pathAttrs(a upstream.Announcement, p peer) ([]bgp.PathAttributeInterface, error) {
	n, err := toNLRI(a)
	if err != nil {
		return nil, err
	}
	fam := bgpFamily(a)
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	var seg []bgp.AsPathParamInterface
	switch {
	case !p.external:
	case p.as4:
		seg = []bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{p.localASN})}
	case p.localASN <= 0xffff:
		seg = []bgp.AsPathParamInterface{bgp.NewAsPathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint16{uint16(p.localASN)})}
	default:
		seg = []bgp.AsPathParamInterface{bgp.NewAsPathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint16{bgp.AS_TRANS})}
		attrs = append(attrs, bgp.NewPathAttributeAs4Path([]*bgp.As4PathParam{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{p.localASN})}))
	}
	attrs = append(attrs, bgp.NewPathAttributeAsPath(seg))
	if !p.external {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(100))
	}
	switch a.Kind {
	case upstream.FlowSpec:
		mp, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: n}})
		if err != nil {
			return nil, fmt.Errorf("flowspec mp_reach for %s: %w", a.Destination, err)
		}
		var rate float32
		if a.Action == upstream.RateLimit {
			rate = float32(a.RateBytes)
		}
		attrs = append(attrs, mp, bgp.NewPathAttributeExtendedCommunities([]bgp.ExtendedCommunityInterface{
			bgp.NewTrafficRateExtended(0, rate),
		}))
	case upstream.RTBH, upstream.Validation:
		if !a.NextHop.IsValid() {
			return nil, fmt.Errorf("%s of %s without a next hop", a.Kind, a.Destination)
		}
		nh, err := p.nextHop(a)
		if err != nil {
			return nil, err
		}
		if fam == bgp.RF_IPv4_UC {
			a, err := bgp.NewPathAttributeNextHop(nh)
			if err != nil {
				return nil, fmt.Errorf("next hop %s: %w", nh, err)
			}
			attrs = append(attrs, a)
		} else {
			mp, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: n}}, nh)
			if err != nil {
				return nil, fmt.Errorf("mp_reach for %s: %w", a.Destination, err)
			}
			attrs = append(attrs, mp)
		}
		cs := make([]uint32, len(a.Communities))
		for i, c := range a.Communities {
			cs[i] = uint32(c)
		}
		attrs = append(attrs, bgp.NewPathAttributeCommunities(cs))
		if a.Kind == upstream.Validation {
			attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(upstream.ValidationMED))
		}
	default:
		return nil, fmt.Errorf("announcement kind %q: want %q, %q or %q", a.Kind, upstream.FlowSpec, upstream.RTBH, upstream.Validation)
	}
	slices.SortStableFunc(attrs, func(x, y bgp.PathAttributeInterface) int { return cmp.Compare(x.GetType(), y.GetType()) })
	return attrs, nil
}

// announceMsg is the UPDATE that announces a to p.
func announceMsg(a upstream.Announcement, p peer) (*bgp.BGPMessage, error) {
	attrs, err := pathAttrs(a, p)
	if err != nil {
		return nil, err
	}
	var nlri []bgp.PathNLRI
	if bgpFamily(a) == bgp.RF_IPv4_UC {
		n, err := toNLRI(a)
		if err != nil {
			return nil, err
		}
		nlri = []bgp.PathNLRI{{NLRI: n}}
	}
	return bgp.NewBGPUpdateMessage(nil, attrs, nlri), nil
}

// withdrawMsg is the UPDATE that withdraws a.
func withdrawMsg(a upstream.Announcement) (*bgp.BGPMessage, error) {
	n, err := toNLRI(a)
	if err != nil {
		return nil, err
	}
	if fam := bgpFamily(a); fam != bgp.RF_IPv4_UC {
		mp, err := bgp.NewPathAttributeMpUnreachNLRI(fam, []bgp.PathNLRI{{NLRI: n}})
		if err != nil {
			return nil, fmt.Errorf("mp_unreach for %s: %w", a.Destination, err)
		}
		return bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{mp}, nil), nil
	}
	return bgp.NewBGPUpdateMessage([]bgp.PathNLRI{{NLRI: n}}, nil, nil), nil
}
