package speaker

import (
	"fmt"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
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

// toPath builds the GoBGP path that announces a.
func toPath(a upstream.Announcement) (*apiutil.Path, error) {
	n, err := toNLRI(a)
	if err != nil {
		return nil, err
	}
	fam := bgpFamily(a)
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	switch a.Kind {
	case upstream.FlowSpec:
		// A FlowSpec path carries MP_REACH_NLRI without a next hop.
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
		if fam == bgp.RF_IPv4_UC {
			nh, err := bgp.NewPathAttributeNextHop(a.NextHop)
			if err != nil {
				return nil, fmt.Errorf("rtbh next hop %s: %w", a.NextHop, err)
			}
			attrs = append(attrs, nh)
		} else {
			mp, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: n}}, a.NextHop)
			if err != nil {
				return nil, fmt.Errorf("rtbh mp_reach for %s: %w", a.Destination, err)
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
	return &apiutil.Path{Family: fam, Nlri: n, Attrs: attrs}, nil
}
