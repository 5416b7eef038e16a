package upstream

import (
	"net/netip"
	"slices"
	"time"
)

// FloodClass is what the detector made of the traffic.
type FloodClass int

const (
	// NoFlood: nothing detected.
	NoFlood FloodClass = iota
	// RealFlood comes from few real sources, worth a rule per source.
	RealFlood
	// SpoofedFlood has forged sources: never per-source rules.
	SpoofedFlood
)

// Source is one banned source prefix and the traffic it sent.
type Source struct {
	Prefix netip.Prefix
	// Weight is the traffic it sent (packets or bytes): it orders rules
	// under a cap.
	Weight uint64
}

// Victim is one attacked local address and the ports attacked on it.
type Victim struct {
	Addr  netip.Addr
	Ports []uint16
}

// DecideInput is everything a decision depends on, as plain values.
type DecideInput struct {
	Now time.Time
	// UplinkBps is the measured inbound rate of the uplink in bits per
	// second; CapacityBps its declared capacity.
	UplinkBps, CapacityBps float64
	// SaturationRatio is the share of capacity above which the uplink is
	// saturated (0 < ratio <= 1).
	SaturationRatio float64
	Class           FloodClass
	Sources         []Source
	Victims         []Victim
	// RealAction is the action for a real flood's per-source rules;
	// RateBytes the rate (bytes/s) for rate-limit rules, which a spoofed
	// flood always gets.
	RealAction Action
	RateBytes  uint64
	// FlowSpecCap is the number of FlowSpec rules allowed per family (the
	// local cap); a decision over it escalates to RTBH.
	FlowSpecCap int
	// FlowSpecRefused says FlowSpec is not available upstream (no session
	// carries it, or the router refused the rules).
	FlowSpecRefused bool
	AllowRTBH       bool
	// RTBHCommunities are added to BLACKHOLE and NO_EXPORT.
	RTBHCommunities            []Community
	RTBHNextHop4, RTBHNextHop6 netip.Addr
	// MinHold is how long FlowSpec rules hold under saturation before RTBH;
	// WithdrawAfterQuiet how long the flood must be gone before everything
	// is withdrawn.
	MinHold, WithdrawAfterQuiet time.Duration
	Previous                    DecideState
}

// DecideState is what a decision remembers for the next one; it lives in
// the hand-off file, whose entries are its announcements (Desired.Previous
// puts them back).
type DecideState struct {
	Announcements []Announcement `json:"-"`
	// FlowSpecSince is when the current episode's FlowSpec rules were first
	// decided (zero: no episode).
	FlowSpecSince time.Time `json:"flowspec_since,omitzero"`
	// LastFlood is the last time a flood was seen while mitigating.
	LastFlood time.Time `json:"last_flood,omitzero"`
}

// Decision is Decide's answer.
type Decision struct {
	Announcements []Announcement
	State         DecideState
	// Reason says in words why, for logs and `synban plan`.
	Reason string
}

// Saturated reports whether the uplink runs at or above the saturation
// ratio of its capacity.
func (in DecideInput) Saturated() bool {
	return in.CapacityBps > 0 && in.UplinkBps >= in.SaturationRatio*in.CapacityBps
}

// Decide turns measurements into the desired announcements. It is pure.
//
//   - Not saturated and nothing announced: local bans only.
//   - Saturated by a real flood: one FlowSpec rule per banned source prefix
//     and victim (destination the victim, the source prefix, TCP SYN without
//     ACK, the victim's ports), action RealAction.
//   - Saturated by a spoofed flood: one rate-limit rule per victim address
//     and port, never per source.
//   - RTBH of each victim /32 or /128, only when AllowRTBH, if the uplink is
//     still saturated MinHold after the FlowSpec rules were first decided,
//     or at once when FlowSpec is refused or the rules exceed the cap.
//   - Announcements hold while the flood lasts (the rules themselves end
//     the saturation), and are all withdrawn once no flood has been seen for
//     WithdrawAfterQuiet.
func Decide(in DecideInput) Decision {
	prev := in.Previous
	flood := in.Class != NoFlood
	if !in.Saturated() || !flood {
		if len(prev.Announcements) == 0 {
			return Decision{Reason: reasonNotSaturated(in)}
		}
		if flood {
			prev.LastFlood = in.Now
		}
		if in.Now.Sub(prev.LastFlood) >= in.WithdrawAfterQuiet {
			return Decision{Reason: "quiet for withdraw_after_quiet: withdraw everything"}
		}
		return Decision{Announcements: prev.Announcements, State: prev,
			Reason: "mitigation holds: flood still seen or quiet shorter than withdraw_after_quiet"}
	}

	st := DecideState{FlowSpecSince: prev.FlowSpecSince, LastFlood: in.Now}
	if st.FlowSpecSince.IsZero() {
		st.FlowSpecSince = in.Now
	}
	var out []Announcement
	reason := ""
	switch in.Class {
	case RealFlood:
		reason = "uplink saturated by a real flood: FlowSpec per source"
		for _, v := range in.Victims {
			for _, s := range in.Sources {
				if s.Prefix.Addr().Is4() != v.Addr.Is4() {
					continue
				}
				a := Announcement{Kind: FlowSpec, Destination: hostPrefix(v.Addr), Source: s.Prefix.Masked(),
					Ports: slices.Clone(v.Ports), Action: in.RealAction, Weight: s.Weight}
				if a.Action == RateLimit {
					a.RateBytes = in.RateBytes
				}
				out = append(out, a)
			}
		}
	case SpoofedFlood:
		reason = "uplink saturated by a spoofed flood: rate-limit per victim and port"
		for _, v := range in.Victims {
			ports := v.Ports
			if len(ports) == 0 {
				ports = []uint16{0}
			}
			for _, p := range ports {
				a := Announcement{Kind: FlowSpec, Destination: hostPrefix(v.Addr), Action: RateLimit, RateBytes: in.RateBytes}
				if p != 0 {
					a.Ports = []uint16{p}
				}
				out = append(out, a)
			}
		}
	}
	overCap := false
	perFamily := map[string]int{}
	for _, a := range out {
		perFamily[a.Family()]++
		if perFamily[a.Family()] > in.FlowSpecCap {
			overCap = true
		}
	}
	held := in.Now.Sub(st.FlowSpecSince) >= in.MinHold && !prev.FlowSpecSince.IsZero()
	if in.AllowRTBH && (held || in.FlowSpecRefused || overCap) {
		switch {
		case in.FlowSpecRefused:
			reason += "; FlowSpec refused: RTBH of the victims"
		case overCap:
			reason += "; rules over the cap: RTBH of the victims"
		default:
			reason += "; still saturated after min_hold: RTBH of the victims"
		}
		for _, v := range in.Victims {
			nh := in.RTBHNextHop4
			if !v.Addr.Is4() {
				nh = in.RTBHNextHop6
			}
			cs := append([]Community{Blackhole, NoExport}, in.RTBHCommunities...)
			out = append(out, Announcement{Kind: RTBH, Destination: hostPrefix(v.Addr), Communities: slices.Compact(cs), NextHop: nh})
		}
	}
	st.Announcements = out
	return Decision{Announcements: out, State: st, Reason: reason}
}

func reasonNotSaturated(in DecideInput) string {
	if !in.Saturated() {
		return "uplink not saturated: local bans only"
	}
	return "no flood: nothing to announce"
}

func hostPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}
