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
	// CountersSince is the span the TcpExt deltas above cover: the
	// window's (from its first counter reading to its last), or the time
	// since the previous run when its counters were stored; CountersFrom
	// says which (CountersWindow or CountersPreviousRun; "" when only
	// Classify ran). Set by ClassifyEvidence.
	CountersSince time.Duration
	CountersFrom  string
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
//
// Entries whose remote address is unset or unspecified are nobody's: they
// count for no source, as in Analyze. The counting is Analyze's: memory
// linear in the distinct sources, whatever the number of rules.
func Classify(p *policy.Policy, samples []Sample, delta TcpExt) Classification {
	a := newAnalysis(p, len(samples), sizeHint(samples), true, false)
	a.count(samples)
	return a.classification(p, delta)
}

// classStats is what the classification gathers while the analysis counts.
type classStats struct {
	halfK   int32     // the class counting half-open entries on every port
	maxPer  int       // spoof.max_per_source
	byClass [][]int32 // the rules of each class, in policy order
	pfxThr  [2]int    // prefix thresholds for IPv4 and IPv6

	// The current sample: half-open entries, sources holding them, those
	// of them at most maxPer, and per rule the worst source and prefix
	// crossing it (n 0: none).
	entries, sources, small int
	rule                    []sourceBest
	pfx                     []prefixBest

	// The window: the sample with the most half-open entries, and the
	// first crossing of a rule and of a prefix threshold.
	hoEntries, hoSources, hoSmall int
	crossed, prefixed             string
}

type sourceBest struct {
	n    int32
	addr netip.Addr
}

type prefixBest struct {
	n, src int32
	pfx    netip.Prefix
}

func newClassStats(p *policy.Policy, a *analysis, halfK int32) *classStats {
	cs := &classStats{
		halfK:   halfK,
		maxPer:  p.Spoof.MaxPerSource,
		byClass: make([][]int32, len(a.classes)+1),
		rule:    make([]sourceBest, len(a.rules)),
		pfx:     make([]prefixBest, len(a.rules)),
		pfxThr:  [2]int{p.Prefix.IPv4Threshold, p.Prefix.IPv6Threshold},
	}
	for r := range a.rules {
		k := a.rules[r].class
		cs.byClass[k] = append(cs.byClass[k], int32(r))
	}
	return cs
}

// halfOpen counts a source holding n half-open entries in the sample.
func (cs *classStats) halfOpen(n int32) {
	cs.entries += int(n)
	cs.sources++
	if int(n) <= cs.maxPer {
		cs.small++
	}
}

// source notes that addr holds n connections counted by class k, n at
// least the class's lowest threshold: the worst source crossing each rule.
func (cs *classStats) source(a *analysis, k, n int32, addr netip.Addr) {
	if cs.crossed != "" {
		return
	}
	for _, r := range cs.byClass[k] {
		if int(n) < a.rules[r].rule.Threshold {
			continue
		}
		if b := &cs.rule[r]; b.n == 0 || n > b.n || (n == b.n && addr.Less(b.addr)) {
			b.n, b.addr = n, addr
		}
	}
}

// prefix notes that prefix pi sums sum connections from src sources in
// class k: the worst prefix crossing its family's threshold, per rule.
func (cs *classStats) prefix(a *analysis, pi, k, sum, src int32) {
	if cs.prefixed != "" || len(cs.byClass[k]) == 0 {
		return
	}
	pfx := a.pfxInfo.at(pi).pfx
	thr := cs.pfxThr[1]
	if pfx.Addr().Is4() {
		thr = cs.pfxThr[0]
	}
	if thr <= 0 || int(sum) < thr {
		return
	}
	for _, r := range cs.byClass[k] {
		if b := &cs.pfx[r]; b.n == 0 || sum > b.n || (sum == b.n && pfx.Addr().Less(b.pfx.Addr())) {
			b.n, b.src, b.pfx = sum, src, pfx
		}
	}
}

// endSample closes sample number si (from 0).
func (cs *classStats) endSample(a *analysis, si int) {
	if cs.entries > cs.hoEntries || si == 0 {
		cs.hoEntries, cs.hoSources, cs.hoSmall = cs.entries, cs.sources, cs.small
	}
	cs.entries, cs.sources, cs.small = 0, 0, 0
	if cs.crossed == "" {
		for r := range cs.rule {
			if b := cs.rule[r]; b.n > 0 {
				rule := a.rules[r].rule
				cs.crossed = fmt.Sprintf("%s holds %d connections in state %s, crossing rule %q (threshold %d)", b.addr, b.n, rule.State, rule.Name, rule.Threshold)
				break
			}
		}
		clear(cs.rule)
	}
	if cs.prefixed == "" {
		for r := range cs.pfx {
			if b := cs.pfx[r]; b.n > 0 {
				rule := a.rules[r].rule
				thr := cs.pfxThr[1]
				if b.pfx.Addr().Is4() {
					thr = cs.pfxThr[0]
				}
				cs.prefixed = fmt.Sprintf("%s holds %d connections in state %s from %d sources, crossing the prefix threshold %d (rule %q)",
					b.pfx, b.n, rule.State, b.src, thr, rule.Name)
				break
			}
		}
		clear(cs.pfx)
	}
}

// classification decides the kind from the counts gathered.
func (a *analysis) classification(p *policy.Policy, delta TcpExt) Classification {
	sp := p.Spoof
	cs := a.cls
	c := Classification{
		Kind:            KindNone,
		HalfOpenSources: cs.hoSources,
		HalfOpenEntries: cs.hoEntries,
		SmallSources:    cs.hoSmall,
		MaxPerSource:    sp.MaxPerSource,
		CookiesSent:     delta.SyncookiesSent,
		CookiesRecv:     delta.SyncookiesRecv,
		ReqQFullDrop:    delta.TCPReqQFullDrop,
		ListenOverflows: delta.ListenOverflows,
	}
	crossed, prefixed := cs.crossed, cs.prefixed

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
	f := &forgedList{class: &c, samples: max(rep.Samples, 1)}
	// Counted first, so that both lists are made at their final size: a
	// million forged verdicts must not be copied as the lists grow.
	forged := 0
	for i := range rep.Verdicts {
		if f.forged(&rep.Verdicts[i]) {
			forged++
		}
	}
	out := rep
	out.Verdicts = make([]Verdict, 0, len(rep.Verdicts)-forged)
	out.Spared = nil
	if n := len(rep.Spared) + forged; n > 0 {
		out.Spared = append(make([]Spared, 0, n), rep.Spared...)
	}
	for _, v := range rep.Verdicts {
		if f.forged(&v) {
			out.Spared = append(out.Spared, Spared{Verdict: v, Why: f.why(&v)})
		} else {
			out.Verdicts = append(out.Verdicts, v)
		}
	}
	return out
}

// spoofedAddrWhy is why a spoofed flood's filter spares the address verdict v.
func spoofedAddrWhy(v *Verdict, maxPer, samples int) string {
	return fmt.Sprintf("spoofed flood: %d half-open entries (at most %d per source over %d samples) look forged; not banned", v.Count, maxPer, samples)
}

// spoofedPrefixWhy is why a spoofed flood's filter spares the prefix verdict v.
func spoofedPrefixWhy(v *Verdict) string {
	return fmt.Sprintf("spoofed flood: %d half-open entries from %d sources (not dense) look forged; not banned", v.Count, v.Sources)
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
