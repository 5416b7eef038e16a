package detect

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/synban/synban/policy"
)

// Flood kinds a Classification reports.
const (
	// KindNone: no flood in the window.
	KindNone = "none"
	// KindReal: a flood from real hosts; banning them works.
	KindReal = "real"
	// KindSpoofed: a SYN flood from forged addresses; banning them is
	// pointless and may ban innocent hosts.
	KindSpoofed = "spoofed"
	// KindPrefix: a flood from real hosts spread over a network prefix, no
	// single source crossing a rule but their prefix crossing the prefix
	// threshold; banning the prefix works.
	KindPrefix = "prefix"
	// KindCookieStorm: SYN cookies went out in numbers while nothing could
	// attribute them: no half-open entry (cookies keep none), no sensor.
	// See ClassifyEvidence.
	KindCookieStorm = "cookie_storm"
)

// FloodKinds lists every kind a Classification may report, in a fixed order
// (metrics label values, documentation).
func FloodKinds() []string {
	return []string{KindNone, KindReal, KindPrefix, KindSpoofed, KindCookieStorm}
}

// Classification tells a flood from real hosts from a spoofed SYN flood.
type Classification struct {
	// Kind is one of FloodKinds: KindNone, KindReal, KindPrefix, KindSpoofed
	// or KindCookieStorm.
	Kind string
	// HalfOpenSources is the number of distinct sources holding a half-open
	// (SYN_RECV) entry, in the sample with the most half-open entries.
	HalfOpenSources int
	// HalfOpenEntries is the number of half-open entries in that sample.
	HalfOpenEntries int
	// SmallSources is how many of HalfOpenSources held at most MaxPerSource
	// half-open entries.
	SmallSources int
	// MaxPerSource is the policy's spoof.max_per_source, kept for FilterSpoofed.
	MaxPerSource int
	// CookiesSent and CookiesRecv are the SYN cookies sent and returned
	// during the window (TcpExt SyncookiesSent, SyncookiesRecv deltas).
	CookiesSent, CookiesRecv int64
	// ReqQFullDrop is the TcpExt TCPReqQFullDrop delta: SYNs dropped with a
	// full SYN queue and cookies off.
	ReqQFullDrop int64
	// ListenOverflows is the TcpExt ListenOverflows delta: handshakes
	// completed into a full accept queue.
	ListenOverflows int64
	// Why explains the kind in one line.
	Why string
	// Advice lists what helps, one recommendation per entry.
	Advice []string
	// Sysctls are the kernel settings the advice recommends.
	Sysctls []Sysctl
	// Evidence lists, one fact an entry, what ClassifyEvidence weighed
	// beyond the window's samples: the counters since the previous run,
	// the firewall sensor's sources.
	Evidence []string
	// CountersSince is how far back the TcpExt deltas above reach: the
	// window, or the time since the previous run when its counters were
	// stored (ClassifyEvidence).
	CountersSince time.Duration
	// SensorSources is how many sources the firewall's sensor saw over the
	// SYN meter.
	SensorSources int

	// byCookies marks a real flood told by returned SYN cookies alone, no
	// source crossing a rule.
	byCookies bool
}

// Sysctl is a kernel setting recommended against a flood.
type Sysctl struct {
	// Key is the sysctl name, such as "net.ipv4.tcp_syncookies".
	Key string
	// Value is the recommended value.
	Value string
	// Why says what it does against the flood.
	Why string
	// Keep lists current values that serve as well, which synban leaves
	// alone when it sets the value itself (SpoofSysctls).
	Keep []string
}

// Classify decides whether the window's flood, if any, comes from real
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
func Classify(p *policy.Policy, samples []Sample, delta TcpExt) Classification {
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
			crossed = ruleCrossed(p, samples[i].Conns)
		}
		if prefixed == "" {
			prefixed = prefixCrossed(p, samples[i].Conns)
		}
	}

	spread := c.spread(sp)
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

// spread reports whether the half-open entries are spread over many
// sources holding few each: the sign of forged addresses.
func (c Classification) spread(sp policy.Spoof) bool {
	return c.HalfOpenSources >= sp.MinSources && sp.MinSources > 0 && c.SmallSources*10 >= c.HalfOpenSources*9
}

// ruleCrossed names the first rule some source crosses in conns, with that
// source's full count, or returns "".
func ruleCrossed(p *policy.Policy, conns []Conn) string {
	for _, r := range p.Rules {
		if r.State == policy.StateSynRate {
			continue // counts the sensor, not connections (ClassifyEvidence)
		}
		mask := StateMask(statesOf(r.State))
		per := make(map[netip.Addr]int)
		for _, cn := range conns {
			if cn.State >= 32 || mask&(1<<cn.State) == 0 {
				continue
			}
			if len(r.Ports) > 0 && !containsPort(r.Ports, cn.Local.Port()) {
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

// prefixCrossed is ruleCrossed for prefix aggregation (when
// p.Prefix.Enabled): it names the worst prefix whose sources together hold,
// in some rule's state and ports, at least the prefix threshold of their
// family.
func prefixCrossed(p *policy.Policy, conns []Conn) string {
	if !p.Prefix.Enabled {
		return ""
	}
	for _, r := range p.Rules {
		if r.State == policy.StateSynRate {
			continue
		}
		mask := StateMask(statesOf(r.State))
		per := make(map[netip.Prefix]int)
		sources := make(map[netip.Prefix]map[netip.Addr]bool)
		for _, cn := range conns {
			if cn.State >= 32 || mask&(1<<cn.State) == 0 {
				continue
			}
			if len(r.Ports) > 0 && !containsPort(r.Ports, cn.Local.Port()) {
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

func statesOf(s policy.State) []TCPState {
	switch s {
	case policy.StateSynRecv:
		return []TCPState{SynRecv}
	case policy.StateEstablished:
		return []TCPState{Established}
	}
	return nil // any
}

func containsPort(ports []uint16, port uint16) bool {
	for _, p := range ports {
		if p == port {
			return true
		}
	}
	return false
}

// advise fills Advice and Sysctls for the kind.
func (c *Classification) advise(p *policy.Policy) {
	add := func(key, value, why string) {
		c.Sysctls = append(c.Sysctls, Sysctl{Key: key, Value: value, Why: why})
		c.Advice = append(c.Advice, fmt.Sprintf("set %s=%s: %s", key, value, why))
	}
	if c.ReqQFullDrop > 0 {
		add("net.ipv4.tcp_syncookies", "1",
			fmt.Sprintf("%d SYNs were dropped with a full SYN queue, so cookies are off; cookies answer a full queue without keeping state", c.ReqQFullDrop))
	}
	if c.Kind != KindSpoofed {
		switch c.Kind {
		case KindReal:
			c.Advice = append(c.Advice, "the sources are real hosts: banning them works")
		case KindPrefix:
			c.Advice = append(c.Advice, "the sources are real hosts spread over a prefix: banning the prefix works")
		}
		return
	}
	if c.ReqQFullDrop == 0 {
		add("net.ipv4.tcp_syncookies", "1", "keep SYN cookies on (1) so a full SYN queue is answered without keeping state")
	}
	add("net.ipv4.tcp_synack_retries", "2", "half-open entries then expire after about 7 s instead of about 63 s")
	add("net.ipv4.tcp_max_syn_backlog", "65536", "a longer SYN queue holds more half-open entries before cookies take over (raise net.core.somaxconn and the service's listen backlog with it)")
	if p.Meter.Enabled {
		c.Advice = append(c.Advice, "keep the per-source SYN meter on: it limits every source without filling the ban set with forged addresses")
	} else {
		c.Advice = append(c.Advice, "turn the per-source SYN meter on ([meter] enabled = true): it limits every source without filling the ban set with forged addresses")
	}
	c.Advice = append(c.Advice, "ask upstream (provider, scrubbing) to filter: bans cannot help against spoofed sources or a saturated link")
}

// FilterSpoofed removes, for a spoofed flood, the verdicts that would ban
// forged addresses, moving them to Spared with the reason: single-address
// syn_recv verdicts whose Count is at most MaxPerSource*Samples, and
// syn_recv prefix verdicts that are not dense (their sources hold on average
// at most MaxPerSource entries each). A real host among the noise, holding
// many half-open entries, keeps its verdict, and so do verdicts on other
// states (a completed handshake cannot be forged). For any other kind rep
// is returned unchanged.
func FilterSpoofed(rep Report, c Classification) Report {
	if c.Kind != KindSpoofed {
		return rep
	}
	samples := rep.Samples
	if samples < 1 {
		samples = 1
	}
	limit := c.MaxPerSource * samples
	out := rep
	out.Verdicts = make([]Verdict, 0, len(rep.Verdicts))
	out.Spared = append([]Spared(nil), rep.Spared...)
	for _, v := range rep.Verdicts {
		if v.State != policy.StateSynRecv {
			out.Verdicts = append(out.Verdicts, v)
			continue
		}
		single := v.Subject.Bits() == v.Subject.Addr().BitLen()
		switch {
		case single && v.Count <= limit:
			out.Spared = append(out.Spared, Spared{Verdict: v,
				Why: fmt.Sprintf("spoofed flood: %d half-open entries (at most %d per source over %d samples) look forged; not banned", v.Count, c.MaxPerSource, samples)})
		case !single && v.Sources > 0 && v.Count <= c.MaxPerSource*v.Sources:
			out.Spared = append(out.Spared, Spared{Verdict: v,
				Why: fmt.Sprintf("spoofed flood: %d half-open entries from %d sources (not dense) look forged; not banned", v.Count, v.Sources)})
		default:
			out.Verdicts = append(out.Verdicts, v)
		}
	}
	return out
}

// SpoofSysctls returns the kernel settings synban itself sets against the
// classified flood: net.ipv4.tcp_syncookies=1 when the flood is spoofed and
// the policy consents (spoof.enabled and spoof.apply_sysctl), unless cookies
// are on already (1, or 2: always send cookies). Nothing else: the other
// advice is for the operator. The engine applies them (internal/sysctl);
// detect itself changes nothing.
func SpoofSysctls(p *policy.Policy, c Classification) []Sysctl {
	if c.Kind != KindSpoofed || !p.Spoof.Enabled || !p.Spoof.ApplySysctl {
		return nil
	}
	return []Sysctl{{Key: "net.ipv4.tcp_syncookies", Value: "1", Keep: []string{"2"},
		Why: "SYN cookies answer a full SYN queue without keeping state"}}
}
