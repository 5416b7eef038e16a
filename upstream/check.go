package upstream

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/synban/synban/internal/prefixes"
)

// Bounds on one announcement, far above what a decision produces, so that
// no route can outgrow a BGP message.
const (
	maxPorts       = 32
	maxCommunities = 32
)

// Refusal is an announcement Check would not send, and why.
type Refusal struct {
	Announcement Announcement
	Reason       string
}

func (r Refusal) String() string {
	return fmt.Sprintf("%s: refused: %s", r.Announcement.CLI(), r.Reason)
}

// Check is the safety gate every announcement passes before anything is
// sent. It is pure. It refuses: a destination outside cfg.OwnPrefixes; an RTBH
// that is not exactly a /32 or /128, lacks BLACKHOLE or has no or a
// wrong-family next hop; a source prefix broader than the minimum ban
// prefix; a source overlapping a protected address (the host's or the allow
// list's); mixed families; a malformed action; a duplicate key. Of what
// remains, it keeps per BGP family the cfg.MaxRules most important (largest
// Weight first, then key order) and refuses the rest as over the local cap.
// ok is in that order.
func Check(cfg Config, in []Announcement) (ok []Announcement, refused []Refusal) {
	type cand struct {
		a   Announcement
		idx int
	}
	var cands []cand
	seen := map[string]bool{}
	for i, a := range in {
		if reason := unsafe(cfg, a); reason != "" {
			refused = append(refused, Refusal{a, reason})
			continue
		}
		k := a.Key()
		if seen[k] {
			refused = append(refused, Refusal{a, "duplicate of an earlier announcement with the same match (" + k + ")"})
			continue
		}
		seen[k] = true
		cands = append(cands, cand{a, i})
	}
	slices.SortStableFunc(cands, func(x, y cand) int {
		if c := cmp.Compare(y.a.Weight, x.a.Weight); c != 0 {
			return c
		}
		return cmp.Compare(x.a.Key(), y.a.Key())
	})
	perFamily := map[string]int{}
	for _, c := range cands {
		f := c.a.Family()
		if perFamily[f] >= cfg.MaxRules {
			refused = append(refused, Refusal{c.a, fmt.Sprintf("over the local cap of %d %s routes (kept the %d most important)", cfg.MaxRules, f, cfg.MaxRules)})
			continue
		}
		perFamily[f]++
		ok = append(ok, c.a)
	}
	return ok, refused
}

// unsafe returns why a must not be sent, or "".
func unsafe(cfg Config, a Announcement) string {
	d := a.Destination
	if !d.IsValid() {
		return "no destination"
	}
	if d.Addr().Is4In6() {
		return fmt.Sprintf("destination %s is IPv4-mapped IPv6; use the IPv4 form", d)
	}
	if d != d.Masked() {
		return fmt.Sprintf("destination %s has host bits set", d)
	}
	if !insideAny(cfg.OwnPrefixes, d) {
		return fmt.Sprintf("destination %s is outside own_prefixes %v", d, cfg.OwnPrefixes)
	}
	switch a.Kind {
	case RTBH:
		if d.Bits() != d.Addr().BitLen() {
			return fmt.Sprintf("RTBH of %s: only an exact /%d may be black-holed", d, d.Addr().BitLen())
		}
		if a.Source.IsValid() || len(a.Ports) > 0 || a.Action != "" {
			return "RTBH with FlowSpec fields (source, ports or action)"
		}
		if len(a.Communities) > maxCommunities {
			return fmt.Sprintf("%d communities, more than %d", len(a.Communities), maxCommunities)
		}
		if !slices.Contains(a.Communities, Blackhole) {
			return "RTBH without the BLACKHOLE community 65535:666"
		}
		if !a.NextHop.IsValid() {
			return "RTBH without a next hop"
		}
		if a.NextHop.Is4() != d.Addr().Is4() {
			return fmt.Sprintf("RTBH next hop %s is not of the destination's family", a.NextHop)
		}
	case Validation:
		if d.Bits() != d.Addr().BitLen() {
			return fmt.Sprintf("validation route %s: only an exact /%d (the victim address) is sent", d, d.Addr().BitLen())
		}
		if !cfg.FlowSpecValidationRoutes {
			return "validation route with upstream.flowspec_validation_routes off"
		}
		if !a.Equal(ValidationRoute(d)) || a.Source.IsValid() || len(a.Ports) > 0 || a.Action != "" {
			return "validation route other than next hop self with NO_EXPORT and NO_ADVERTISE"
		}
	case FlowSpec:
		switch a.Action {
		case Discard:
			if a.RateBytes != 0 {
				return "discard with a rate"
			}
		case RateLimit:
			if a.RateBytes == 0 {
				return "rate-limit of 0 bytes/s (say discard)"
			}
			if a.RateBytes > 1<<40 {
				return fmt.Sprintf("rate-limit %d bytes/s is not a limit", a.RateBytes)
			}
		default:
			return fmt.Sprintf("action %q: want discard or rate-limit", a.Action)
		}
		if slices.Contains(a.Ports, 0) {
			return "destination port 0"
		}
		if n := len(a.SortedPorts()); n > maxPorts {
			return fmt.Sprintf("%d destination ports in one rule, more than %d", n, maxPorts)
		}
		if len(a.Communities) > 0 || a.NextHop.IsValid() {
			return "FlowSpec with RTBH fields (communities or next hop)"
		}
		if s := a.Source; s.IsValid() {
			if s.Addr().Is4() != d.Addr().Is4() || s.Addr().Is4In6() {
				return fmt.Sprintf("source %s and destination %s are of different families", s, d)
			}
			if s != s.Masked() {
				return fmt.Sprintf("source %s has host bits set", s)
			}
			minBits := cfg.MinSourceBits4
			if s.Addr().Is6() {
				minBits = cfg.MinSourceBits6
			}
			if s.Bits() < minBits {
				return fmt.Sprintf("source %s is broader than the minimum ban prefix /%d", s, minBits)
			}
			for _, p := range cfg.Protected {
				if prefixes.Overlaps(p, s) {
					return fmt.Sprintf("source %s covers protected %s", s, p)
				}
			}
		}
	default:
		return fmt.Sprintf("kind %q: want flowspec, rtbh or validation", a.Kind)
	}
	return ""
}

// insideAny reports whether p lies wholly inside one of outer.
func insideAny(outer []netip.Prefix, p netip.Prefix) bool { return prefixes.HeldByAny(outer, p) }
