package detect

import (
	"fmt"
	"net/netip"

	"github.com/synban/synban/policy"
)

// refClassify is the classification as it was before it shared
// Analyze's counting (a map per sample and per rule), kept as the
// reference for TestClassifyMatchesReference and TestDetectMatchesPipeline.
//
// It decides whether the window's flood, if any, comes from real
// hosts or from forged addresses. delta is the TcpExt counters' change over
// the window (zero when unknown).
//
// A flood is spoofed, when p.Spoof.Enabled, if in the sample with the most
// half-open entries at least p.Spoof.MinSources distinct sources hold a
// half-open entry and at least 90% of them hold at most
// p.Spoof.MaxPerSource each; or if at least MinSources SYN cookies were sent
// and fewer than p.Spoof.CookieRatio of them came back (nobody completes
// the handshake: the SYN-ACKs went to addresses that never sent the SYN).
// Otherwise the flood is real when some source crosses one of the policy's
// rules in some sample, or at least MinSources cookies were sent and enough
// came back. Anything else is KindNone.
func refClassify(p *policy.Policy, samples []Sample, delta TcpExt) Classification {
	sp := p.Spoof
	c := Classification{
		Kind:            KindNone,
		MaxPerSource:    sp.MaxPerSource,
		CookiesSent:     delta.SyncookiesSent,
		CookiesRecv:     delta.SyncookiesRecv,
		ReqQFullDrop:    delta.TCPReqQFullDrop,
		ListenOverflows: delta.ListenOverflows,
	}
	crossed, prefixed := "", ""
	for i := range samples {
		per := make(map[netip.Addr]int)
		entries := 0
		for _, cn := range samples[i].Conns {
			if cn.State == SynRecv || cn.State == NewSynRecv {
				per[cn.Remote.Addr()]++
				entries++
			}
		}
		if entries > c.HalfOpenEntries || i == 0 {
			c.HalfOpenEntries, c.HalfOpenSources, c.SmallSources = entries, len(per), 0
			for _, n := range per {
				if n <= sp.MaxPerSource {
					c.SmallSources++
				}
			}
		}
		if crossed == "" {
			crossed = refRuleCrossed(p, samples[i].Conns)
		}
		if prefixed == "" {
			prefixed = refPrefixCrossed(p, samples[i].Conns)
		}
	}

	spread := c.HalfOpenSources >= sp.MinSources && sp.MinSources > 0 && c.SmallSources*10 >= c.HalfOpenSources*9
	cookies := sp.MinSources > 0 && c.CookiesSent >= int64(sp.MinSources) &&
		float64(c.CookiesRecv) < sp.CookieRatio*float64(c.CookiesSent)
	switch {
	case sp.Enabled && spread:
		c.Kind = KindSpoofed
		c.Why = fmt.Sprintf("%d sources hold %d half-open entries, %d of them at most %d each: forged addresses",
			c.HalfOpenSources, c.HalfOpenEntries, c.SmallSources, sp.MaxPerSource)
	case sp.Enabled && cookies:
		c.Kind = KindSpoofed
		c.Why = fmt.Sprintf("%d SYN cookies sent, %d returned (below %.0f%%): the SYN-ACKs go to addresses that never sent the SYN",
			c.CookiesSent, c.CookiesRecv, 100*sp.CookieRatio)
	case crossed != "":
		c.Kind = KindReal
		c.Why = crossed
	case prefixed != "":
		c.Kind = KindPrefix
		c.Why = prefixed
	case sp.MinSources > 0 && c.CookiesSent >= int64(sp.MinSources):
		c.Kind, c.byCookies = KindReal, true
		c.Why = fmt.Sprintf("%d SYN cookies sent and %d returned: the peers complete handshakes", c.CookiesSent, c.CookiesRecv)
	default:
		c.Why = "no source crosses a rule and no SYN cookie storm"
	}
	if !sp.Enabled && (spread || cookies) {
		c.Why += " (the signs of a spoofed flood are present, but spoof classification is disabled)"
	}
	c.advise(p)
	return c
}

// refRuleCrossed names the first rule some source crosses in conns, with that
// source's full count, or returns "".
func refRuleCrossed(p *policy.Policy, conns []Conn) string {
	for _, r := range p.Rules {
		mask := StateMask(refStatesOf(r.State))
		per := make(map[netip.Addr]int)
		for _, cn := range conns {
			if cn.State >= 32 || mask&(1<<cn.State) == 0 {
				continue
			}
			if len(r.Ports) > 0 && !refContainsPort(r.Ports, cn.Local.Port()) {
				continue
			}
			per[cn.Remote.Addr()]++
		}
		var worst netip.Addr
		for a, n := range per {
			if n >= r.Threshold && (!worst.IsValid() || n > per[worst] || (n == per[worst] && a.Less(worst))) {
				worst = a
			}
		}
		if worst.IsValid() {
			return fmt.Sprintf("%s holds %d connections in state %s, crossing rule %q (threshold %d)", worst, per[worst], r.State, r.Name, r.Threshold)
		}
	}
	return ""
}

// refPrefixCrossed is refRuleCrossed for prefix aggregation (when
// p.Prefix.Enabled): it names the worst prefix whose sources together hold,
// in some rule's state and ports, at least the prefix threshold of their
// family.
func refPrefixCrossed(p *policy.Policy, conns []Conn) string {
	if !p.Prefix.Enabled {
		return ""
	}
	for _, r := range p.Rules {
		mask := StateMask(refStatesOf(r.State))
		per := make(map[netip.Prefix]int)
		sources := make(map[netip.Prefix]map[netip.Addr]bool)
		for _, cn := range conns {
			if cn.State >= 32 || mask&(1<<cn.State) == 0 {
				continue
			}
			if len(r.Ports) > 0 && !refContainsPort(r.Ports, cn.Local.Port()) {
				continue
			}
			a := cn.Remote.Addr().Unmap()
			bits := p.Prefix.IPv6Length
			if a.Is4() {
				bits = p.Prefix.IPv4Length
			}
			pf, err := a.Prefix(bits)
			if err != nil {
				continue
			}
			per[pf]++
			if sources[pf] == nil {
				sources[pf] = make(map[netip.Addr]bool)
			}
			sources[pf][a] = true
		}
		var worst netip.Prefix
		for pf, n := range per {
			thr := p.Prefix.IPv6Threshold
			if pf.Addr().Is4() {
				thr = p.Prefix.IPv4Threshold
			}
			if thr > 0 && n >= thr && (!worst.IsValid() || n > per[worst] || (n == per[worst] && pf.Addr().Less(worst.Addr()))) {
				worst = pf
			}
		}
		if worst.IsValid() {
			thr := p.Prefix.IPv6Threshold
			if worst.Addr().Is4() {
				thr = p.Prefix.IPv4Threshold
			}
			return fmt.Sprintf("%s holds %d connections in state %s from %d sources, crossing the prefix threshold %d (rule %q)",
				worst, per[worst], r.State, len(sources[worst]), thr, r.Name)
		}
	}
	return ""
}

func refStatesOf(s policy.State) []TCPState {
	switch s {
	case policy.StateSynRecv:
		return []TCPState{SynRecv}
	case policy.StateEstablished:
		return []TCPState{Established}
	}
	return nil // any
}

func refContainsPort(ports []uint16, port uint16) bool {
	for _, p := range ports {
		if p == port {
			return true
		}
	}
	return false
}
