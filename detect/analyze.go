package detect

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/synban/synban/policy"
)

// Analyze decides which sources and prefixes offend p's rules over the
// window of samples, and filters the offenders through the guard g (which
// may be nil).
//
// For each rule, each sample's connections in the rule's state (to one of
// the rule's local ports, when it lists any) are counted per remote address.
// An address offends when its count reaches the rule's threshold in at least
// p.Sample.MinHits samples (at least 1); its verdict carries the peak count.
// With prefix aggregation enabled, the counts are also summed per IPv4 and
// IPv6 prefix of the configured lengths; a prefix offends when, in at least
// MinHits samples, its sum reaches the family's prefix threshold while more
// than one address contributes (a prefix with one source is just that
// address). An offending prefix that the guard does not protect folds in the
// verdicts of the addresses inside it; a protected prefix leaves them to be
// judged (and perhaps spared) on their own.
//
// Each subject gets one verdict: when several rules hit it, the worst
// (highest Count/Threshold) is kept and the others are named in its Reason.
// Verdicts and Spared are sorted worst first, then by subject.
//
// The work is linear in the number of connections times the number of
// distinct (state, port set) pairs among the rules. Memory is linear in the
// number of distinct remote addresses and independent of the number of
// rules: rules that count the same connections share one counter, counts
// live only for the sample being read, and only an address or prefix whose
// count reaches the lowest threshold of a counter keeps a record of it
// across samples (plus, with several samples and several thresholds on one
// counter, one entry per sample that reached it). The Report itself is, of
// course, as large as the offenders it lists.
func Analyze(p *policy.Policy, samples []Sample, g *policy.Guard) Report {
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
	a := newAnalysis(p, len(samples), hint/2)
	for si := range samples {
		a.addSample(int32(si+1), samples[si].Conns)
	}
	rep.Sources = len(a.addrIdx4) + len(a.addrIdx6)
	a.release()

	// Judge prefixes first: only a banned (unprotected) prefix folds the
	// addresses inside it.
	pfxCands := a.prefixCandidates()
	banned := make(map[netip.Prefix]*candidate)
	var keptPfx []*candidate
	var buf []byte
	spare := func(c *candidate, why string) {
		buf = c.appendReason(buf[:0])
		c.v.Reason = string(buf)
		rep.Spared = append(rep.Spared, Spared{Verdict: c.v, Why: why})
	}
	for i := range pfxCands {
		c := &pfxCands[i]
		if why, ok := g.Protects(c.v.Subject); ok {
			spare(c, why)
			continue
		}
		banned[c.v.Subject] = c
		keptPfx = append(keptPfx, c)
	}

	// Addresses in two passes, so that the verdicts are allocated once at
	// their final size: the first counts them (and the addresses each
	// banned prefix folds), the second builds them.
	keptAddrs := 0
	var c candidate
	for _, o := range a.offenders {
		if !a.addrCandidate(o, &c) {
			continue
		}
		if pc, ok := banned[a.prefixOf(o.addr)]; ok {
			pc.folded++
			continue
		}
		if _, ok := g.Protects(c.v.Subject); !ok {
			keptAddrs++
		}
	}
	verdicts := make([]Verdict, 0, len(keptPfx)+keptAddrs)
	for _, pc := range keptPfx {
		buf = pc.appendReason(buf[:0])
		pc.v.Reason = string(buf)
		verdicts = append(verdicts, pc.v)
	}
	for _, o := range a.offenders {
		if !a.addrCandidate(o, &c) {
			continue
		}
		if _, ok := banned[a.prefixOf(o.addr)]; ok {
			continue
		}
		if why, ok := g.Protects(c.v.Subject); ok {
			spare(&c, why)
			continue
		}
		buf = c.appendReason(buf[:0])
		c.v.Reason = string(buf)
		verdicts = append(verdicts, c.v)
	}

	slices.SortFunc(verdicts, compareVerdicts)
	slices.SortFunc(rep.Spared, func(x, y Spared) int { return compareVerdicts(x.Verdict, y.Verdict) })
	rep.Verdicts = verdicts
	return rep
}

// compareVerdicts orders worst (highest Count/Threshold) first, then by
// higher Count, then by subject address and prefix length.
func compareVerdicts(x, y Verdict) int {
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

// counterClass is one distinct (states, local ports) pair among the rules:
// every rule that counts the same connections shares its counter.
type counterClass struct {
	states uint32        // bit 1<<TCPState for each state counted
	ports  *[1024]uint64 // local-port bitmap; nil means every port
	minThr int32         // the lowest threshold of the class's rules
	// hist is set when the class's rules have different thresholds and the
	// window has several samples: a record then keeps the count of every
	// sample that reached minThr, from which each rule's hits are counted.
	hist bool
}

func (k *counterClass) matches(c *Conn) bool {
	if c.State >= 32 || k.states&(1<<c.State) == 0 {
		return false
	}
	if k.ports == nil {
		return true
	}
	port := c.Local.Port()
	return k.ports[port>>6]&(1<<(port&63)) != 0
}

// ruleSpec is a rule compiled for counting.
type ruleSpec struct {
	rule   *policy.Rule
	class  int32 // index in analysis.classes
	thr    int32
	banFor time.Duration
}

// stateMask returns the TCP states a policy state counts.
func stateMask(s policy.State) uint32 {
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

// addrRecord is what is kept across samples for one address and one
// counter class, once the address's count reached the class's lowest
// threshold in some sample.
type addrRecord struct {
	next  int32 // the address's next record, -1 for none
	class int32
	peak  int32 // peak count over the samples that reached minThr
	hits  int32 // samples whose count reached minThr
	hist  int32 // newest histEntry when the class keeps them, -1 for none
}

// histEntry is one sample's count of an address for one class.
type histEntry struct {
	count int32
	next  int32 // older entry, -1 for none
}

// pfxRecord is what is kept across samples for one prefix and one counter
// class, once its sum reached the family's prefix threshold with more than
// one source.
type pfxRecord struct {
	next    int32 // the prefix's next record, -1 for none
	class   int32
	peak    int32 // peak sum over qualifying samples
	peakSrc int32 // sources in the (first) peak sample
	hits    int32 // qualifying samples
}

// offender is an address holding at least one record.
type offender struct {
	addr netip.Addr
	i    int32 // the address's number
	head int32 // its first addrRecord, set by release
}

// analysis holds the window's counters. Per-address state is a few int32s
// indexed by the address's number; counts per class exist only while a
// sample is read (the sample's connections are grouped by prefix and
// address first, so one small array per class suffices), and records only
// for counts that may offend.
type analysis struct {
	rules   []ruleSpec
	classes []counterClass
	// any is a quick filter: a connection outside it matches no class.
	any     counterClass
	samples int
	minHits int

	pfxLen4, pfxLen6 int // 0: no aggregation for the family
	pfxThr4, pfxThr6 int

	// Addresses and prefixes are numbered through pointer-free keys, which
	// hash and scan much faster than netip values.
	addrIdx4 map[uint32]int32
	addrIdx6 map[[16]byte]int32
	addrPfx  []int32 // prefix number of each address, -1 for none
	stamp    []int32 // last sample an address was seen in
	pos      []int32 // grouping scratch: connections, then their offset
	head     []int32 // first addrRecord of each address, -1 for none

	recs      []addrRecord
	hist      []histEntry
	offenders []offender

	pfxIdx4  map[uint32]int32
	pfxIdx6  map[[16]byte]int32
	pfxs     []netip.Prefix
	pfxStamp []int32
	pfxPos   []int32 // grouping scratch: addresses, then their offset
	pfxHead  []int32 // first pfxRecord of each prefix, -1 for none
	pfxRecs  []pfxRecord

	// Per-sample scratch.
	srcOf      []int32 // address of each connection, -1 when it counts for nothing
	order      []int32 // connection indexes grouped by address
	touched    []int32 // addresses seen in the sample
	seq        []int32 // the touched addresses grouped by prefix
	pfxTouched []int32
	cur        []int32 // per class: the address's count
	psum, psrc []int32 // per class: the prefix's sum and sources
	curK, pK   []int32 // classes with a count, for resetting
}

// newAnalysis prepares counters for p over samples; sizeHint is the
// expected number of distinct sources.
func newAnalysis(p *policy.Policy, samples, sizeHint int) *analysis {
	a := &analysis{
		samples:  samples,
		minHits:  max(p.Sample.MinHits, 1),
		addrIdx4: make(map[uint32]int32, sizeHint),
		addrIdx6: make(map[[16]byte]int32),
		pfxIdx4:  make(map[uint32]int32),
		pfxIdx6:  make(map[[16]byte]int32),
		addrPfx:  make([]int32, 0, sizeHint),
		stamp:    make([]int32, 0, sizeHint),
		pos:      make([]int32, 0, sizeHint),
		head:     make([]int32, 0, sizeHint),
	}
	byKey := map[string]int32{}
	var multi []bool
	for i := range p.Rules {
		r := &p.Rules[i]
		states := stateMask(r.State)
		var ports []uint16
		if len(r.Ports) > 0 {
			ports = slices.Clone(r.Ports)
			slices.Sort(ports)
			ports = slices.Compact(ports)
		}
		key := fmt.Sprint(states, ports)
		k, ok := byKey[key]
		if !ok {
			k = int32(len(a.classes))
			byKey[key] = k
			cl := counterClass{states: states, minThr: int32(min(r.Threshold, math.MaxInt32))}
			if len(ports) > 0 {
				cl.ports = new([1024]uint64)
				for _, port := range ports {
					cl.ports[port>>6] |= 1 << (port & 63)
				}
			}
			a.classes = append(a.classes, cl)
			multi = append(multi, false)
		}
		spec := ruleSpec{rule: r, class: k, thr: int32(min(r.Threshold, math.MaxInt32)), banFor: r.BanFor.Duration}
		if spec.banFor <= 0 {
			spec.banFor = p.Ban.Duration.Duration
		}
		if cl := &a.classes[k]; spec.thr != cl.minThr {
			multi[k] = true
			cl.minThr = min(cl.minThr, spec.thr)
		}
		a.rules = append(a.rules, spec)
	}
	for k := range a.classes {
		cl := &a.classes[k]
		cl.hist = multi[k] && samples > 1
		a.any.states |= cl.states
		switch {
		case k == 0:
			a.any.ports = cl.ports
		case a.any.ports == nil || cl.ports == nil:
			a.any.ports = nil
		default:
			u := *a.any.ports
			for w := range u {
				u[w] |= cl.ports[w]
			}
			a.any.ports = &u
		}
	}
	a.cur = make([]int32, len(a.classes))
	a.psum = make([]int32, len(a.classes))
	a.psrc = make([]int32, len(a.classes))
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

// release drops what only counting needed, before the verdicts are built.
func (a *analysis) release() {
	for j := range a.offenders {
		a.offenders[j].head = a.head[a.offenders[j].i]
	}
	a.addrIdx4, a.addrIdx6, a.pfxIdx4, a.pfxIdx6 = nil, nil, nil, nil
	a.addrPfx, a.stamp, a.pos, a.head = nil, nil, nil, nil
	a.pfxStamp, a.pfxPos = nil, nil
	a.srcOf, a.order, a.touched, a.seq, a.pfxTouched = nil, nil, nil, nil, nil
}

// prefixOf returns the aggregation prefix holding addr, or the zero Prefix
// when its family is not aggregated.
func (a *analysis) prefixOf(addr netip.Addr) netip.Prefix {
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

func (a *analysis) prefixThreshold(pfx netip.Prefix) int {
	if pfx.Addr().Is4() {
		return a.pfxThr4
	}
	return a.pfxThr6
}

// addr returns the number of addr, adding it when new.
func (a *analysis) addr(addr netip.Addr) int32 {
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
	i := int32(len(a.stamp))
	if addr.Is4() {
		a.addrIdx4[k4] = i
	} else {
		a.addrIdx6[k6] = i
	}
	a.stamp = append(a.stamp, 0)
	a.pos = append(a.pos, 0)
	a.head = append(a.head, -1)
	a.addrPfx = append(a.addrPfx, a.prefixIndex(addr))
	return i
}

// prefixIndex returns the number of the aggregation prefix holding addr,
// adding it when new, or -1 when addr's family is not aggregated.
func (a *analysis) prefixIndex(addr netip.Addr) int32 {
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
	a.pfxPos = append(a.pfxPos, 0)
	a.pfxHead = append(a.pfxHead, -1)
	return int32(len(a.pfxs) - 1)
}

// addSample counts one sample's connections; sample numbers start at 1.
//
// The connections are first numbered by address and grouped (a counting
// sort of their indexes, addresses grouped by prefix), then each address's
// connections are counted per class in a.cur and each prefix's addresses
// summed in a.psum: no per-address or per-prefix count outlives the group.
func (a *analysis) addSample(sample int32, conns []Conn) {
	a.srcOf = slices.Grow(a.srcOf[:0], len(conns))[:len(conns)]
	a.touched = a.touched[:0]
	for ci := range conns {
		c := &conns[ci]
		a.srcOf[ci] = -1
		remote := c.Remote.Addr().Unmap()
		if !remote.IsValid() || remote.IsUnspecified() {
			continue // not connected to anyone (e.g. a bound, closed socket)
		}
		i := a.addr(remote) // every connected remote is a source, counted or not
		if !a.any.matches(c) {
			continue
		}
		a.srcOf[ci] = i
		if a.stamp[i] != sample {
			a.stamp[i] = sample
			a.pos[i] = 0
			a.touched = append(a.touched, i)
		}
		a.pos[i]++
	}

	// Order the touched addresses: those of each prefix together, then
	// those without a prefix.
	a.pfxTouched = a.pfxTouched[:0]
	for _, i := range a.touched {
		pi := a.addrPfx[i]
		if pi < 0 {
			continue
		}
		if a.pfxStamp[pi] != sample {
			a.pfxStamp[pi] = sample
			a.pfxPos[pi] = 0
			a.pfxTouched = append(a.pfxTouched, pi)
		}
		a.pfxPos[pi]++
	}
	off := int32(0)
	for _, pi := range a.pfxTouched {
		n := a.pfxPos[pi]
		a.pfxPos[pi] = off
		off += n
	}
	a.seq = slices.Grow(a.seq[:0], len(a.touched))[:len(a.touched)]
	for _, i := range a.touched {
		if pi := a.addrPfx[i]; pi >= 0 {
			a.seq[a.pfxPos[pi]] = i
			a.pfxPos[pi]++
		} else {
			a.seq[off] = i
			off++
		}
	}

	// Order the connections by address, in seq order.
	off = 0
	for _, i := range a.seq {
		n := a.pos[i]
		a.pos[i] = off
		off += n
	}
	a.order = slices.Grow(a.order[:0], int(off))[:off]
	for ci, i := range a.srcOf {
		if i >= 0 {
			a.order[a.pos[i]] = int32(ci)
			a.pos[i]++
		}
	}
	// a.pos[i] is now the end of i's connections in a.order; the start is
	// the end of the address before it in seq.

	start := int32(0)
	for si := 0; si < len(a.seq); {
		i := a.seq[si]
		pi := a.addrPfx[i]
		// The group: one prefix's addresses, or one address without one.
		end := si + 1
		if pi >= 0 {
			for end < len(a.seq) && a.addrPfx[a.seq[end]] == pi {
				end++
			}
		}
		for _, i := range a.seq[si:end] {
			stop := a.pos[i]
			first := &conns[a.order[start]]
			for _, ci := range a.order[start:stop] {
				c := &conns[ci]
				for k := range a.classes {
					if a.classes[k].matches(c) {
						if a.cur[k] == 0 {
							a.curK = append(a.curK, int32(k))
						}
						a.cur[k]++
					}
				}
			}
			start = stop
			for _, k := range a.curK {
				n := a.cur[k]
				a.cur[k] = 0
				if n >= a.classes[k].minThr {
					a.observe(i, first.Remote.Addr().Unmap(), k, n)
				}
				if pi >= 0 {
					if a.psrc[k] == 0 {
						a.pK = append(a.pK, k)
					}
					a.psum[k] += n
					a.psrc[k]++
				}
			}
			a.curK = a.curK[:0]
		}
		if pi >= 0 {
			thr := int32(min(a.prefixThreshold(a.pfxs[pi]), math.MaxInt32))
			for _, k := range a.pK {
				sum, src := a.psum[k], a.psrc[k]
				a.psum[k], a.psrc[k] = 0, 0
				if src >= 2 && sum >= thr { // one source is that address, not a prefix
					a.observePrefix(pi, k, sum, src)
				}
			}
			a.pK = a.pK[:0]
		}
		si = end
	}
}

// observe records that address i (addr) counted n >= minThr in class k in
// the current sample.
func (a *analysis) observe(i int32, addr netip.Addr, k, n int32) {
	ri := a.head[i]
	for ri >= 0 && a.recs[ri].class != k {
		ri = a.recs[ri].next
	}
	if ri < 0 {
		if a.head[i] < 0 {
			a.offenders = append(a.offenders, offender{addr: addr, i: i})
		}
		ri = int32(len(a.recs))
		a.recs = append(a.recs, addrRecord{next: a.head[i], class: k, hist: -1})
		a.head[i] = ri
	}
	r := &a.recs[ri]
	r.peak = max(r.peak, n)
	r.hits++
	if a.classes[k].hist {
		a.hist = append(a.hist, histEntry{count: n, next: r.hist})
		r.hist = int32(len(a.hist) - 1)
	}
}

// observePrefix records that prefix pi summed sum >= its threshold over
// src >= 2 sources in class k in the current sample.
func (a *analysis) observePrefix(pi, k, sum, src int32) {
	ri := a.pfxHead[pi]
	for ri >= 0 && a.pfxRecs[ri].class != k {
		ri = a.pfxRecs[ri].next
	}
	if ri < 0 {
		ri = int32(len(a.pfxRecs))
		a.pfxRecs = append(a.pfxRecs, pfxRecord{next: a.pfxHead[pi], class: k})
		a.pfxHead[pi] = ri
	}
	r := &a.pfxRecs[ri]
	if sum > r.peak {
		r.peak, r.peakSrc = sum, src
	}
	r.hits++
}

// candidate is an offending subject, merged over the rules that hit it.
type candidate struct {
	v      Verdict
	others []Verdict // other rules that hit the same subject
	folded int       // address verdicts a prefix verdict absorbed
}

// appendReason appends the candidate's Reason to b.
func (c *candidate) appendReason(b []byte) []byte {
	v := &c.v
	if v.Subject.Bits() == v.Subject.Addr().BitLen() {
		b = fmt.Appendf(b, "%d %s from %s >= %d (rule %s, %d/%d samples)",
			v.Count, stateWord(v.State), v.Subject.Addr(), v.Threshold, v.Rule, v.Hits, v.Samples)
	} else {
		b = fmt.Appendf(b, "%d %s from %d sources in %s >= %d (rule %s, prefix /%d, %d/%d samples)",
			v.Count, stateWord(v.State), v.Sources, v.Subject, v.Threshold, v.Rule, v.Subject.Bits(), v.Hits, v.Samples)
	}
	for _, o := range c.others {
		b = fmt.Appendf(b, "; also rule %s (%d %s >= %d)", o.Rule, o.Count, stateWord(o.State), o.Threshold)
	}
	if c.folded > 0 {
		b = fmt.Appendf(b, "; includes %d offending address", c.folded)
		if c.folded > 1 {
			b = append(b, "es"...)
		}
	}
	return b
}

// stateWord names what a state counts in a reason.
func stateWord(s policy.State) string {
	if s == policy.StateAny {
		return "connections"
	}
	return string(s)
}

// prefixCandidates returns the offending prefixes, one candidate per
// prefix, in first-seen order.
func (a *analysis) prefixCandidates() []candidate {
	var out []candidate
	for pi, pfx := range a.pfxs {
		if a.pfxHead[pi] < 0 {
			continue
		}
		var c *candidate
		thr := a.prefixThreshold(pfx)
		for r := range a.rules {
			k := a.findPrefixRecord(int32(pi), a.rules[r].class)
			if k == nil || int(k.hits) < a.minHits {
				continue
			}
			v := a.verdict(r, pfx, k.peak, k.hits, k.peakSrc)
			v.Threshold = thr
			if c == nil {
				out = append(out, candidate{v: v})
				c = &out[len(out)-1]
			} else {
				c.merge(v)
			}
		}
	}
	return out
}

func (a *analysis) findPrefixRecord(pi, class int32) *pfxRecord {
	for ri := a.pfxHead[pi]; ri >= 0; ri = a.pfxRecs[ri].next {
		if a.pfxRecs[ri].class == class {
			return &a.pfxRecs[ri]
		}
	}
	return nil
}

// addrCandidate sets c to the offender's candidate, merged over the rules
// that hit it, reusing c's others; it reports false when no rule does.
func (a *analysis) addrCandidate(o offender, c *candidate) bool {
	c.others = c.others[:0]
	c.folded = 0
	found := false
	subject := netip.PrefixFrom(o.addr, o.addr.BitLen())
	for r := range a.rules {
		spec := &a.rules[r]
		var k *addrRecord
		for ri := o.head; ri >= 0; ri = a.recs[ri].next {
			if a.recs[ri].class == spec.class {
				k = &a.recs[ri]
				break
			}
		}
		if k == nil {
			continue
		}
		hits := a.hitsOf(k, spec)
		if int(hits) < a.minHits {
			continue
		}
		v := a.verdict(r, subject, k.peak, hits, 1)
		if !found {
			c.v, found = v, true
		} else {
			c.merge(v)
		}
	}
	return found
}

// hitsOf returns the samples in which the record's count reached spec's
// threshold.
func (a *analysis) hitsOf(k *addrRecord, spec *ruleSpec) int32 {
	cl := &a.classes[spec.class]
	switch {
	case spec.thr <= cl.minThr:
		return k.hits // every sample recorded reached it
	case cl.hist:
		n := int32(0)
		for e := k.hist; e >= 0; e = a.hist[e].next {
			if a.hist[e].count >= spec.thr {
				n++
			}
		}
		return n
	case k.peak >= spec.thr:
		return k.hits // one sample: its count is the peak
	}
	return 0
}

func (a *analysis) verdict(r int, subject netip.Prefix, count, hits, sources int32) Verdict {
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

// merge adds v to the candidate: the worse verdict is kept, the other
// remembered. On a tie the earlier rule is kept.
func (c *candidate) merge(v Verdict) {
	if int64(v.Count)*int64(c.v.Threshold) > int64(c.v.Count)*int64(v.Threshold) {
		c.v, v = v, c.v
	}
	c.others = append(c.others, v)
}
