package detect

// The old Analyze, kept verbatim (renamed) as the reference the property
// test compares the streaming analysis with: one counter per address and
// rule, every address's counters kept for the whole window.

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/synban/synban/policy"
)

// refAnalyze is the old Analyze, with the same contract.
func refAnalyze(p *policy.Policy, samples []Sample, g *policy.Guard) Report {
	rep := Report{Samples: len(samples)}
	for _, s := range samples {
		rep.Malformed += s.Malformed
	}
	if p == nil {
		return rep
	}
	hint := 0
	for _, s := range samples {
		hint = max(hint, len(s.Conns))
	}
	a := refNewAnalysis(p, len(samples), hint/2)
	for si := range samples {
		a.addSample(int32(si+1), samples[si].Conns)
	}
	rep.Sources = len(a.addrs)

	addrCands, pfxCands := a.candidates()

	// Judge prefixes first: only a banned (unprotected) prefix folds the
	// addresses inside it.
	banned := make(map[netip.Prefix]*refCandidate)
	var kept []*refCandidate
	spare := func(c *refCandidate, by policy.Protected) {
		c.v.Reason = c.reason()
		rep.Spared = append(rep.Spared, Spared{Verdict: c.v, Why: by.Reason(), By: by})
	}
	for i := range pfxCands {
		c := &pfxCands[i]
		if by, ok := g.Match(c.v.Subject); ok {
			spare(c, by)
			continue
		}
		banned[c.v.Subject] = c
		kept = append(kept, c)
	}
	for i := range addrCands {
		c := &addrCands[i]
		if pc, ok := banned[a.prefixOf(c.v.Subject.Addr())]; ok {
			pc.folded++
			continue
		}
		if by, ok := g.Match(c.v.Subject); ok {
			spare(c, by)
			continue
		}
		kept = append(kept, c)
	}
	verdicts := make([]Verdict, 0, len(kept))
	for _, c := range kept {
		c.v.Reason = c.reason()
		verdicts = append(verdicts, c.v)
	}

	slices.SortFunc(verdicts, refCompareVerdicts)
	slices.SortFunc(rep.Spared, func(x, y Spared) int { return refCompareVerdicts(x.Verdict, y.Verdict) })
	rep.Verdicts = verdicts
	return rep
}

// refCompareVerdicts orders worst (highest Count/Threshold) first, then by
// higher Count, then by subject address and prefix length.
func refCompareVerdicts(x, y Verdict) int {
	if c := cmp.Compare(int64(y.Count)*int64(x.Threshold), int64(x.Count)*int64(y.Threshold)); c != 0 {
		return c
	}
	if c := cmp.Compare(y.Count, x.Count); c != 0 {
		return c
	}
	if c := x.Subject.Addr().Compare(y.Subject.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(x.Subject.Bits(), y.Subject.Bits())
}

// refRuleSpec is a rule compiled for fast matching.
type refRuleSpec struct {
	rule   *policy.Rule
	states uint32        // bit 1<<TCPState for each state counted
	ports  *[1024]uint64 // local-port bitmap; nil means every port
	banFor time.Duration
}

func (r *refRuleSpec) matches(c *Conn) bool {
	if r.states&(1<<c.State) == 0 {
		return false
	}
	if r.ports == nil {
		return true
	}
	port := c.Local.Port()
	return r.ports[port>>6]&(1<<(port&63)) != 0
}

// stateMask returns the TCP states a policy state counts.
func refStateMask(s policy.State) uint32 {
	switch s {
	case policy.StateSynRecv:
		return 1<<SynRecv | 1<<NewSynRecv
	case policy.StateEstablished:
		return 1 << Established
	case policy.StateAny:
		var m uint32
		for st := Established; st <= NewSynRecv; st++ {
			if st != Listen {
				m |= 1 << st
			}
		}
		return m
	}
	return 0
}

// analysis holds the per-window counters. Per-address and per-prefix
// counters live in flat slices indexed by idx*len(rules)+rule.
type refAnalysis struct {
	p       *policy.Policy
	rules   []refRuleSpec
	nr      int
	samples int
	minHits int

	pfxLen4, pfxLen6 int // 0: no aggregation for the family
	pfxThr4, pfxThr6 int

	// Addresses and prefixes are indexed by pointer-free keys, which hash
	// and scan much faster than netip values.
	addrIdx4 map[uint32]int32
	addrIdx6 map[[16]byte]int32
	addrs    []netip.Addr
	addrPfx  []int32          // prefix index of each address, -1 for none
	stamp    []int32          // last sample an address was seen in
	cnt      []refAddrCounter // per address and rule
	touched  []int32          // addresses seen in the current sample

	pfxIdx4    map[uint32]int32
	pfxIdx6    map[[16]byte]int32
	pfxs       []netip.Prefix
	pfxStamp   []int32
	pfxCnt     []refPfxCounter // per prefix and rule
	pfxTouched []int32
}

// refAddrCounter counts one address for one rule.
type refAddrCounter struct {
	cur  int32 // count in the current sample
	peak int32 // peak count in the window
	hits int32 // samples at or above the rule's threshold
}

// refPfxCounter counts one prefix for one rule.
type refPfxCounter struct {
	cur     int32 // sum over sources in the current sample
	src     int32 // sources contributing in the current sample
	peak    int32 // peak sum over qualifying samples
	peakSrc int32 // sources in the peak sample
	hits    int32 // qualifying samples at or above the threshold
}

// newAnalysis prepares counters for p over samples; sizeHint is the
// expected number of distinct sources.
func refNewAnalysis(p *policy.Policy, samples, sizeHint int) *refAnalysis {
	a := &refAnalysis{
		p:        p,
		nr:       len(p.Rules),
		samples:  samples,
		minHits:  max(p.Sample.MinHits, 1),
		addrIdx4: make(map[uint32]int32, sizeHint),
		addrIdx6: make(map[[16]byte]int32),
		pfxIdx4:  make(map[uint32]int32),
		pfxIdx6:  make(map[[16]byte]int32),
		addrs:    make([]netip.Addr, 0, sizeHint),
		addrPfx:  make([]int32, 0, sizeHint),
		stamp:    make([]int32, 0, sizeHint),
		cnt:      make([]refAddrCounter, 0, sizeHint*len(p.Rules)),
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		spec := refRuleSpec{rule: r, states: refStateMask(r.State), banFor: r.BanFor.Duration}
		if spec.banFor <= 0 {
			spec.banFor = p.Ban.Duration.Duration
		}
		if len(r.Ports) > 0 {
			spec.ports = new([1024]uint64)
			for _, port := range r.Ports {
				spec.ports[port>>6] |= 1 << (port & 63)
			}
		}
		a.rules = append(a.rules, spec)
	}
	if p.Prefix.Enabled {
		if p.Prefix.IPv4Length > 0 && p.Prefix.IPv4Length <= 32 && p.Prefix.IPv4Threshold > 0 {
			a.pfxLen4, a.pfxThr4 = p.Prefix.IPv4Length, p.Prefix.IPv4Threshold
		}
		if p.Prefix.IPv6Length > 0 && p.Prefix.IPv6Length <= 128 && p.Prefix.IPv6Threshold > 0 {
			a.pfxLen6, a.pfxThr6 = p.Prefix.IPv6Length, p.Prefix.IPv6Threshold
		}
	}
	return a
}

// prefixOf returns the aggregation prefix holding addr, or the zero Prefix
// when its family is not aggregated.
func (a *refAnalysis) prefixOf(addr netip.Addr) netip.Prefix {
	bits := a.pfxLen6
	if addr.Is4() {
		bits = a.pfxLen4
	}
	if bits == 0 {
		return netip.Prefix{}
	}
	pfx, err := addr.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return pfx
}

func (a *refAnalysis) prefixThreshold(pfx netip.Prefix) int {
	if pfx.Addr().Is4() {
		return a.pfxThr4
	}
	return a.pfxThr6
}

// addr returns the index of addr, adding it when new.
func (a *refAnalysis) addr(addr netip.Addr) int32 {
	var k4 uint32
	var k6 [16]byte
	if addr.Is4() {
		b := addr.As4()
		k4 = binary.BigEndian.Uint32(b[:])
		if i, ok := a.addrIdx4[k4]; ok {
			return i
		}
	} else {
		k6 = addr.As16()
		if i, ok := a.addrIdx6[k6]; ok {
			return i
		}
	}
	i := int32(len(a.addrs))
	if addr.Is4() {
		a.addrIdx4[k4] = i
	} else {
		a.addrIdx6[k6] = i
	}
	a.addrs = append(a.addrs, addr)
	a.stamp = append(a.stamp, 0)
	for range a.nr {
		a.cnt = append(a.cnt, refAddrCounter{})
	}
	a.addrPfx = append(a.addrPfx, a.prefixIndex(addr))
	return i
}

// prefixIndex returns the index of the aggregation prefix holding addr,
// adding it when new, or -1 when addr's family is not aggregated.
func (a *refAnalysis) prefixIndex(addr netip.Addr) int32 {
	pfx := a.prefixOf(addr)
	if !pfx.IsValid() {
		return -1
	}
	var k4 uint32
	var k6 [16]byte
	if pfx.Addr().Is4() {
		b := pfx.Addr().As4()
		k4 = binary.BigEndian.Uint32(b[:])
		if pi, ok := a.pfxIdx4[k4]; ok {
			return pi
		}
		a.pfxIdx4[k4] = int32(len(a.pfxs))
	} else {
		k6 = pfx.Addr().As16()
		if pi, ok := a.pfxIdx6[k6]; ok {
			return pi
		}
		a.pfxIdx6[k6] = int32(len(a.pfxs))
	}
	a.pfxs = append(a.pfxs, pfx)
	a.pfxStamp = append(a.pfxStamp, 0)
	for range a.nr {
		a.pfxCnt = append(a.pfxCnt, refPfxCounter{})
	}
	return int32(len(a.pfxs) - 1)
}

// addSample counts one sample's connections; sample numbers start at 1.
func (a *refAnalysis) addSample(sample int32, conns []Conn) {
	a.touched = a.touched[:0]
	for ci := range conns {
		c := &conns[ci]
		remote := c.Remote.Addr().Unmap()
		if !remote.IsValid() || remote.IsUnspecified() {
			continue // not connected to anyone (e.g. a bound, closed socket)
		}
		i := a.addr(remote)
		if a.stamp[i] != sample {
			a.stamp[i] = sample
			a.touched = append(a.touched, i)
		}
		base := int(i) * a.nr
		for r := range a.rules {
			if a.rules[r].matches(c) {
				a.cnt[base+r].cur++
			}
		}
	}

	a.pfxTouched = a.pfxTouched[:0]
	for _, i := range a.touched {
		base := int(i) * a.nr
		pi := a.addrPfx[i]
		for r := range a.rules {
			c := &a.cnt[base+r]
			n := c.cur
			if n == 0 {
				continue
			}
			c.cur = 0
			c.peak = max(c.peak, n)
			if int(n) >= a.rules[r].rule.Threshold {
				c.hits++
			}
			if pi >= 0 {
				if a.pfxStamp[pi] != sample {
					a.pfxStamp[pi] = sample
					a.pfxTouched = append(a.pfxTouched, pi)
				}
				pc := &a.pfxCnt[int(pi)*a.nr+r]
				pc.cur += n
				pc.src++
			}
		}
	}
	for _, pi := range a.pfxTouched {
		thr := a.prefixThreshold(a.pfxs[pi])
		base := int(pi) * a.nr
		for r := range a.rules {
			pc := &a.pfxCnt[base+r]
			sum, src := pc.cur, pc.src
			pc.cur, pc.src = 0, 0
			if src < 2 {
				continue // one source is that address, not a prefix
			}
			if sum > pc.peak {
				pc.peak, pc.peakSrc = sum, src
			}
			if int(sum) >= thr {
				pc.hits++
			}
		}
	}
}

// refCandidate is an offending subject, merged over the rules that hit it.
type refCandidate struct {
	v      Verdict
	others []Verdict // other rules that hit the same subject
	folded int       // address verdicts a prefix verdict absorbed
}

// reason renders the refCandidate's Reason.
func (c *refCandidate) reason() string {
	var b strings.Builder
	v := &c.v
	if v.Subject.Bits() == v.Subject.Addr().BitLen() {
		fmt.Fprintf(&b, "%d %s from %s >= %d (rule %s, %d/%d samples)",
			v.Count, refStateWord(v.State), v.Subject.Addr(), v.Threshold, v.Rule, v.Hits, v.Samples)
	} else {
		fmt.Fprintf(&b, "%d %s from %d sources in %s >= %d (rule %s, prefix /%d, %d/%d samples)",
			v.Count, refStateWord(v.State), v.Sources, v.Subject, v.Threshold, v.Rule, v.Subject.Bits(), v.Hits, v.Samples)
	}
	for _, o := range c.others {
		fmt.Fprintf(&b, "; also rule %s (%d %s >= %d)", o.Rule, o.Count, refStateWord(o.State), o.Threshold)
	}
	if c.folded > 0 {
		fmt.Fprintf(&b, "; includes %d offending address", c.folded)
		if c.folded > 1 {
			b.WriteString("es")
		}
	}
	return b.String()
}

// stateWord names what a state counts in a reason.
func refStateWord(s policy.State) string {
	if s == policy.StateAny {
		return "connections"
	}
	return string(s)
}

// refCandidates returns the offending addresses and prefixes, one refCandidate
// per subject, each in first-seen order.
func (a *refAnalysis) candidates() (addrs, pfxs []refCandidate) {
	for i, addr := range a.addrs {
		var c *refCandidate
		for r := range a.rules {
			k := &a.cnt[i*a.nr+r]
			if int(k.hits) < a.minHits {
				continue
			}
			v := a.verdict(r, netip.PrefixFrom(addr, addr.BitLen()), k.peak, k.hits, 1)
			c = refMerge(c, v, &addrs)
		}
	}
	for pi, pfx := range a.pfxs {
		var c *refCandidate
		thr := a.prefixThreshold(pfx)
		for r := range a.rules {
			k := &a.pfxCnt[pi*a.nr+r]
			if int(k.hits) < a.minHits {
				continue
			}
			v := a.verdict(r, pfx, k.peak, k.hits, k.peakSrc)
			v.Threshold = thr
			c = refMerge(c, v, &pfxs)
		}
	}
	return addrs, pfxs
}

func (a *refAnalysis) verdict(r int, subject netip.Prefix, count, hits, sources int32) Verdict {
	spec := &a.rules[r]
	return Verdict{
		Subject:   subject,
		Rule:      spec.rule.Name,
		State:     spec.rule.State,
		Count:     int(count),
		Threshold: spec.rule.Threshold,
		Hits:      int(hits),
		Samples:   a.samples,
		Sources:   int(sources),
		BanFor:    spec.banFor,
	}
}

// merge adds v to the subject's refCandidate c (appending a new refCandidate to
// list when c is nil) and returns the refCandidate; the worse verdict is kept,
// the other remembered. On a tie the earlier rule is kept.
func refMerge(c *refCandidate, v Verdict, list *[]refCandidate) *refCandidate {
	if c == nil {
		*list = append(*list, refCandidate{v: v})
		return &(*list)[len(*list)-1]
	}
	if int64(v.Count)*int64(c.v.Threshold) > int64(c.v.Count)*int64(v.Threshold) {
		c.v, v = v, c.v
	}
	c.others = append(c.others, v)
	return c
}
