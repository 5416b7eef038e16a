package detect

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/synban/synban/internal/prefixes"
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
	a := newAnalysis(p, len(samples), sizeHint(samples), false, true)
	a.count(samples)
	return a.report(rep, g, nil)
}

// MaxForgedListed is how many offenders Detect lists in Report.Spared as
// forged (those of a spoofed flood that FilterSpoofed would move there):
// the worst ones; the others are only counted, in Report.SparedUnlisted.
// A flood of fewer forged offenders is reported exactly as Analyze,
// Classify and FilterSpoofed report it.
const MaxForgedListed = 65536

// Detect analyses the window and classifies its flood in one pass over the
// samples: it returns what Analyze, Classify and, for a spoofed flood,
// FilterSpoofed return, without holding what they would throw away.
// Spoofed-ness is decided from the aggregate counts before any verdict is
// built, so the verdicts FilterSpoofed would drop as forged are never made:
// the worst MaxForgedListed of them are listed in Report.Spared (with the
// reason FilterSpoofed gives) and the rest only counted in
// Report.SparedUnlisted. A million forged sources thus cost their counters,
// not a million verdicts. p must not be nil.
func Detect(p *policy.Policy, samples []Sample, g *policy.Guard, delta TcpExt) (Report, Classification) {
	return detect(p, samples, g, delta, MaxForgedListed)
}

// detect is Detect listing at most listMax forged offenders.
func detect(p *policy.Policy, samples []Sample, g *policy.Guard, delta TcpExt, listMax int) (Report, Classification) {
	rep := Report{Samples: len(samples)}
	for _, s := range samples {
		rep.Malformed += s.Malformed
	}
	a := newAnalysis(p, len(samples), sizeHint(samples), true, true)
	a.count(samples)
	class := a.classification(p, delta)
	var spoof *forgedList
	if class.Kind == KindSpoofed {
		spoof = &forgedList{class: &class, samples: max(len(samples), 1), max: listMax}
	}
	return a.report(rep, g, spoof), class
}

// sizeHint is the expected number of distinct sources in samples.
func sizeHint(samples []Sample) int {
	hint := 0
	for _, s := range samples {
		hint = max(hint, s.Len())
	}
	return hint / 2
}

// count reads the samples.
func (a *analysis) count(samples []Sample) {
	for si := range samples {
		a.addSample(int32(si+1), &samples[si])
		if a.cls != nil {
			a.cls.endSample(a, si)
		}
	}
}

// report builds the Report from the counts, judging the offenders against
// the guard g and, when spoof is not nil (a spoofed flood), setting aside
// the ones FilterSpoofed would spare as forged.
func (a *analysis) report(rep Report, g *policy.Guard, spoof *forgedList) Report {
	rep.Sources = len(a.addrIdx4) + len(a.addrIdx6)
	a.release()

	// Judge prefixes first: only a banned (unprotected) prefix folds the
	// addresses inside it.
	pfxCands := a.prefixCandidates()
	banned := make(map[netip.Prefix]*candidate)
	var keptPfx []*candidate
	var buf []byte
	spare := func(c *candidate, by policy.Protected) {
		buf = c.appendReason(buf[:0])
		c.v.Reason = string(buf)
		rep.Spared = append(rep.Spared, Spared{Verdict: c.v, Why: by.Reason(), By: by})
	}
	for i := range pfxCands {
		c := &pfxCands[i]
		if by, ok := g.Match(c.v.Subject); ok {
			spare(c, by)
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
	for oi := range a.offenders.n {
		o := a.offenders.at(oi)
		if !a.addrCandidate(o, &c) {
			continue
		}
		if pc, ok := banned[a.prefixOf(o.ip())]; ok {
			pc.folded++
			continue
		}
		if _, ok := g.Protects(c.v.Subject); !ok && !spoof.forged(&c.v) {
			keptAddrs++
		}
	}
	verdicts := make([]Verdict, 0, len(keptPfx)+keptAddrs)
	for _, pc := range keptPfx {
		if spoof.forged(&pc.v) {
			buf = spoof.add(pc, buf)
			continue
		}
		buf = pc.appendReason(buf[:0])
		pc.v.Reason = string(buf)
		verdicts = append(verdicts, pc.v)
	}
	// Each chunk of offenders is let go once read: the verdicts take its place.
	for ci, chunk := range a.offenders.chunks {
		a.offenders.chunks[ci] = nil
		for j := range chunk {
			o := &chunk[j]
			if !a.addrCandidate(o, &c) {
				continue
			}
			if _, ok := banned[a.prefixOf(o.ip())]; ok {
				continue
			}
			if by, ok := g.Match(c.v.Subject); ok {
				spare(&c, by)
				continue
			}
			if spoof.forged(&c.v) {
				buf = spoof.add(&c, buf)
				continue
			}
			buf = c.appendReason(buf[:0])
			c.v.Reason = string(buf)
			verdicts = append(verdicts, c.v)
		}
	}

	slices.SortFunc(verdicts, compareVerdicts)
	slices.SortFunc(rep.Spared, func(x, y Spared) int { return compareVerdicts(x.Verdict, y.Verdict) })
	rep.Verdicts = verdicts
	if spoof != nil {
		// As FilterSpoofed: the forged after the guard's, worst first.
		listed := spoof.heap
		slices.SortFunc(listed, func(x, y Spared) int { return compareVerdicts(x.Verdict, y.Verdict) })
		rep.Spared = append(rep.Spared, listed...)
		rep.SparedUnlisted = spoof.total - len(listed)
	}
	return rep
}

// forgedList collects, for a spoofed flood, the offenders FilterSpoofed
// would spare as forged: the worst max of them in a heap whose root is the
// least bad, and the count of all.
type forgedList struct {
	class   *Classification
	samples int // samples in the window, at least 1
	max     int
	heap    []Spared
	total   int
	whys    map[int]string // single-address reasons by count
}

// forged reports whether FilterSpoofed would spare v (never, for a nil
// list: the flood is not spoofed).
func (f *forgedList) forged(v *Verdict) bool {
	if f == nil || v.State != policy.StateSynRecv {
		return false
	}
	if v.Subject.Bits() == v.Subject.Addr().BitLen() {
		return v.Count <= f.class.MaxPerSource*f.samples
	}
	return v.Sources > 0 && v.Count <= f.class.MaxPerSource*v.Sources
}

// add counts the forged candidate c and keeps it when it is among the
// worst max so far; buf is scratch for its reason, returned for reuse.
func (f *forgedList) add(c *candidate, buf []byte) []byte {
	f.total++
	h := f.heap
	if len(h) == f.max && (f.max == 0 || compareVerdicts(c.v, h[0].Verdict) >= 0) {
		return buf
	}
	buf = c.appendReason(buf[:0])
	s := Spared{Verdict: c.v, Why: f.why(&c.v)}
	s.Verdict.Reason = string(buf)
	if len(h) < f.max {
		// Sift up.
		h = append(h, s)
		for i := len(h) - 1; i > 0; {
			parent := (i - 1) / 2
			if compareVerdicts(h[parent].Verdict, h[i].Verdict) >= 0 {
				break
			}
			h[parent], h[i] = h[i], h[parent]
			i = parent
		}
		f.heap = h
		return buf
	}
	// Replace the root (the least bad kept) and sift down.
	h[0] = s
	for i := 0; ; {
		worst, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && compareVerdicts(h[l].Verdict, h[worst].Verdict) > 0 {
			worst = l
		}
		if r < len(h) && compareVerdicts(h[r].Verdict, h[worst].Verdict) > 0 {
			worst = r
		}
		if worst == i {
			break
		}
		h[i], h[worst] = h[worst], h[i]
		i = worst
	}
	return buf
}

// why is FilterSpoofed's reason for sparing v; the reasons of single
// addresses, which depend on the count alone, are made once per count.
func (f *forgedList) why(v *Verdict) string {
	if v.Subject.Bits() != v.Subject.Addr().BitLen() {
		return spoofedPrefixWhy(v)
	}
	if w, ok := f.whys[v.Count]; ok {
		return w
	}
	if f.whys == nil {
		f.whys = make(map[int]string)
	}
	w := spoofedAddrWhy(v, f.class.MaxPerSource, f.samples)
	f.whys[v.Count] = w
	return w
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
	// pseudo marks the class no rule counts: the half-open entries the
	// classification counts (minThr is then math.MaxInt32).
	pseudo bool
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
	next  int32 // the address's next record in analysis.recs, -1 for none
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

// offender is an address holding at least one record: its first record
// is held here, any others in analysis.recs (linked from first.next). The
// address is kept as 16 bytes (IPv4 as IPv4-mapped: every remote is
// unmapped on input, so a mapped form here always stands for IPv4), not as
// a 24-byte netip.Addr.
type offender struct {
	addr  [16]byte
	first addrRecord
}

// record returns o's record for class k, or nil, and the index in
// analysis.recs of o's last extra record (-1 for none).
func (a *analysis) record(o *offender, k int32) (r *addrRecord, last int32) {
	last = -1
	for r = &o.first; ; {
		if r.class == k {
			return r, last
		}
		if r.next < 0 {
			return nil, last
		}
		last = r.next
		r = a.recs.at(r.next)
	}
}

// ip returns the offender's address.
func (o *offender) ip() netip.Addr { return netip.AddrFrom16(o.addr).Unmap() }

// addrInfo is the per-address state.
type addrInfo struct {
	pfx   int32 // prefix number, -1 for none
	stamp int32 // last sample the address was seen in
	pos   int32 // grouping scratch: connections, then their offset
	off   int32 // the address's offender, -1 for none
}

// pfxInfo is the per-prefix state.
type pfxInfo struct {
	pfx   netip.Prefix
	stamp int32 // last sample the prefix was seen in
	pos   int32 // grouping scratch: addresses, then their offset
	head  int32 // first pfxRecord, -1 for none
}

// chunkBits sets the size of a chunked list's chunks (8192 elements).
const chunkBits = 13

// chunked is an append-only list kept in fixed-size chunks: growing it
// never copies, so a million elements cost their own size and no more.
type chunked[T any] struct {
	chunks [][]T
	n      int32
}

// add appends v and returns its index.
func (c *chunked[T]) add(v T) int32 {
	if int(c.n)>>chunkBits == len(c.chunks) {
		c.chunks = append(c.chunks, make([]T, 0, 1<<chunkBits))
	}
	last := &c.chunks[len(c.chunks)-1]
	*last = append(*last, v)
	c.n++
	return c.n - 1
}

// at returns the element at index i.
func (c *chunked[T]) at(i int32) *T {
	return &c.chunks[i>>chunkBits][i&(1<<chunkBits-1)]
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
	info     chunked[addrInfo]

	recs      chunked[addrRecord]
	hist      chunked[histEntry]
	offenders chunked[offender]

	pfxIdx4 map[uint32]int32
	pfxIdx6 map[[16]byte]int32
	pfxInfo chunked[pfxInfo]
	pfxRecs chunked[pfxRecord]

	// records is unset when only classifying: no record is kept.
	records bool
	// cls gathers what the classification needs; nil when not classifying.
	cls *classStats
	// watch keeps every count of one subject, for explaining it; nil
	// unless AnalyzeSubject asked.
	watch *watch

	// Per-sample scratch.
	order      []int32 // connection indexes grouped by address
	touched    []int32 // addresses seen in the sample
	seq        []int32 // the touched addresses grouped by prefix
	pfxTouched []int32
	cur        []int32 // per class: the address's count
	psum, psrc []int32 // per class: the prefix's sum and sources
	curK, pK   []int32 // classes with a count, for resetting
}

// newAnalysis prepares counters for p over samples; sizeHint is the
// expected number of distinct sources. classify adds what the
// classification counts; records unset keeps no record (only classifying).
func newAnalysis(p *policy.Policy, samples, sizeHint int, classify, records bool) *analysis {
	a := &analysis{
		records:  records,
		samples:  samples,
		minHits:  max(p.Sample.MinHits, 1),
		addrIdx4: make(map[uint32]int32, sizeHint),
		addrIdx6: make(map[[16]byte]int32),
		pfxIdx4:  make(map[uint32]int32),
		pfxIdx6:  make(map[[16]byte]int32),
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
	if classify {
		// The half-open entries on every port, counted per source for the
		// spoofed-flood signs: a rule's counter when one counts the same.
		halfOpen := stateMask(policy.StateSynRecv)
		key := fmt.Sprint(halfOpen, []uint16(nil))
		k, ok := byKey[key]
		if !ok {
			k = int32(len(a.classes))
			a.classes = append(a.classes, counterClass{states: halfOpen, minThr: math.MaxInt32, pseudo: true})
			multi = append(multi, false)
		}
		a.cls = newClassStats(p, a, k)
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
	a.pfxLen4, a.pfxThr4 = p.Prefix.Aggregation(true)
	a.pfxLen6, a.pfxThr6 = p.Prefix.Aggregation(false)
	return a
}

// release drops what only counting needed, before the verdicts are built.
func (a *analysis) release() {
	a.addrIdx4, a.addrIdx6, a.pfxIdx4, a.pfxIdx6 = nil, nil, nil, nil
	a.info = chunked[addrInfo]{}
	a.order, a.touched, a.seq, a.pfxTouched = nil, nil, nil, nil
}

// prefixOf returns the aggregation prefix holding addr, or the zero Prefix
// when its family is not aggregated.
func (a *analysis) prefixOf(addr netip.Addr) netip.Prefix {
	bits := a.pfxLen6
	if addr.Is4() {
		bits = a.pfxLen4
	}
	pfx, _ := prefixes.Aggregate(addr, bits)
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
	i := a.info.add(addrInfo{pfx: a.prefixIndex(addr), off: -1})
	if addr.Is4() {
		a.addrIdx4[k4] = i
	} else {
		a.addrIdx6[k6] = i
	}
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
		a.pfxIdx4[k4] = a.pfxInfo.n
	} else {
		k6 = pfx.Addr().As16()
		if pi, ok := a.pfxIdx6[k6]; ok {
			return pi
		}
		a.pfxIdx6[k6] = a.pfxInfo.n
	}
	return a.pfxInfo.add(pfxInfo{pfx: pfx, head: -1})
}

// addSample counts one sample's connections; sample numbers start at 1.
//
// The connections are first numbered by address and grouped (a counting
// sort of their indexes, addresses grouped by prefix), then each address's
// connections are counted per class in a.cur and each prefix's addresses
// summed in a.psum: no per-address or per-prefix count outlives the group.
func (a *analysis) addSample(sample int32, s *Sample) {
	w := a.watch
	nconns := s.Len()
	var scratch Conn
	a.touched = slices.Grow(a.touched[:0], nconns)
	for ci := range nconns {
		c := s.conn(ci, &scratch)
		remote := c.Remote.Addr().Unmap()
		if !remote.IsValid() || remote.IsUnspecified() {
			continue // not connected to anyone (e.g. a bound, closed socket)
		}
		i := a.addr(remote) // every connected remote is a source, counted or not
		if !a.any.matches(c) {
			continue
		}
		if ai := a.info.at(i); ai.stamp != sample {
			ai.stamp, ai.pos = sample, 1
			a.touched = append(a.touched, i)
		} else {
			ai.pos++
		}
	}

	if w != nil {
		w.resolve(a)
	}

	// Order the touched addresses: those of each prefix together, then
	// those without a prefix.
	a.pfxTouched = a.pfxTouched[:0]
	for _, i := range a.touched {
		pi := a.info.at(i).pfx
		if pi < 0 {
			continue
		}
		if pf := a.pfxInfo.at(pi); pf.stamp != sample {
			pf.stamp, pf.pos = sample, 1
			a.pfxTouched = append(a.pfxTouched, pi)
		} else {
			pf.pos++
		}
	}
	off := int32(0)
	for _, pi := range a.pfxTouched {
		pf := a.pfxInfo.at(pi)
		n := pf.pos
		pf.pos = off
		off += n
	}
	seq := a.touched // no prefixes: the order seen
	if len(a.pfxTouched) > 0 {
		a.seq = slices.Grow(a.seq[:0], len(a.touched))[:len(a.touched)]
		seq = a.seq
		for _, i := range a.touched {
			if pi := a.info.at(i).pfx; pi >= 0 {
				pf := a.pfxInfo.at(pi)
				seq[pf.pos] = i
				pf.pos++
			} else {
				seq[off] = i
				off++
			}
		}
	}

	// Order the connections by address, in seq order. Their addresses
	// are looked up again rather than remembered per connection: a
	// million int32s less to hold.
	off = 0
	for _, i := range seq {
		ai := a.info.at(i)
		n := ai.pos
		ai.pos = off
		off += n
	}
	a.order = slices.Grow(a.order[:0], int(off))[:off]
	for ci := range nconns {
		c := s.conn(ci, &scratch)
		remote := c.Remote.Addr().Unmap()
		if !remote.IsValid() || remote.IsUnspecified() || !a.any.matches(c) {
			continue
		}
		ai := a.info.at(a.addr(remote))
		a.order[ai.pos] = int32(ci)
		ai.pos++
	}
	// a.pos[i] is now the end of i's connections in a.order; the start is
	// the end of the address before it in seq.

	start := int32(0)
	for si := 0; si < len(seq); {
		i := seq[si]
		pi := a.info.at(i).pfx
		// The group: one prefix's addresses, or one address without one.
		end := si + 1
		if pi >= 0 {
			for end < len(seq) && a.info.at(seq[end]).pfx == pi {
				end++
			}
		}
		for _, i := range seq[si:end] {
			stop := a.info.at(i).pos
			first := s.At(int(a.order[start]))
			for _, ci := range a.order[start:stop] {
				c := s.conn(int(ci), &scratch)
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
			if w != nil && i == w.ai {
				base := int(sample-1) * len(a.classes)
				for _, k := range a.curK {
					w.addrN[base+int(k)] = a.cur[k]
				}
			}
			for _, k := range a.curK {
				n := a.cur[k]
				a.cur[k] = 0
				if n >= a.classes[k].minThr {
					addr := first.Remote.Addr().Unmap()
					if a.records {
						a.observe(i, addr, k, n)
					}
					if a.cls != nil {
						a.cls.source(a, k, n, addr)
					}
				}
				if a.cls != nil && k == a.cls.halfK {
					a.cls.halfOpen(n)
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
			thr := int32(min(a.prefixThreshold(a.pfxInfo.at(pi).pfx), math.MaxInt32))
			if w != nil && pi == w.pi {
				base := int(sample-1) * len(a.classes)
				for _, k := range a.pK {
					w.pfxSum[base+int(k)], w.pfxSrc[base+int(k)] = a.psum[k], a.psrc[k]
				}
			}
			for _, k := range a.pK {
				sum, src := a.psum[k], a.psrc[k]
				a.psum[k], a.psrc[k] = 0, 0
				if src >= 2 && sum >= thr && a.records && !a.classes[k].pseudo { // one source is that address, not a prefix
					a.observePrefix(pi, k, sum, src)
				}
				if a.cls != nil {
					a.cls.prefix(a, pi, k, sum, src)
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
	ai := a.info.at(i)
	var r *addrRecord
	if ai.off < 0 {
		ai.off = a.offenders.add(offender{addr: addr.As16(), first: addrRecord{next: -1, class: k, hist: -1}})
		r = &a.offenders.at(ai.off).first
	} else {
		o := a.offenders.at(ai.off)
		var last int32
		if r, last = a.record(o, k); r == nil {
			// A new record goes at the end of the address's list.
			ri := a.recs.add(addrRecord{next: -1, class: k, hist: -1})
			if last < 0 {
				o.first.next = ri
			} else {
				a.recs.at(last).next = ri
			}
			r = a.recs.at(ri)
		}
	}
	r.peak = max(r.peak, n)
	r.hits++
	if a.classes[k].hist {
		r.hist = a.hist.add(histEntry{count: n, next: r.hist})
	}
}

// observePrefix records that prefix pi summed sum >= its threshold over
// src >= 2 sources in class k in the current sample.
func (a *analysis) observePrefix(pi, k, sum, src int32) {
	pf := a.pfxInfo.at(pi)
	r := a.findPrefixRecord(pi, k)
	if r == nil {
		ri := a.pfxRecs.add(pfxRecord{next: pf.head, class: k})
		pf.head = ri
		r = a.pfxRecs.at(ri)
	}
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
		// "%d %s from %s >= %d (rule %s, %d/%d samples)", without fmt's
		// boxing: there may be a million of these.
		b = strconv.AppendInt(b, int64(v.Count), 10)
		b = append(b, ' ')
		b = append(b, stateWord(v.State)...)
		b = append(b, " from "...)
		b = v.Subject.Addr().AppendTo(b)
		b = append(b, " >= "...)
		b = strconv.AppendInt(b, int64(v.Threshold), 10)
		b = append(b, " (rule "...)
		b = append(b, v.Rule...)
		b = append(b, ", "...)
		b = strconv.AppendInt(b, int64(v.Hits), 10)
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(v.Samples), 10)
		b = append(b, " samples)"...)
	} else {
		b = fmt.Appendf(b, "%d %s from %d sources in %s >= %d (rule %s, prefix /%d, %d/%d samples)",
			v.Count, stateWord(v.State), v.Sources, v.Subject, v.Threshold, v.Rule, v.Subject.Bits(), v.Hits, v.Samples)
	}
	for _, o := range c.others {
		// "; also rule %s (%d %s >= %d)"
		b = append(b, "; also rule "...)
		b = append(b, o.Rule...)
		b = append(b, " ("...)
		b = strconv.AppendInt(b, int64(o.Count), 10)
		b = append(b, ' ')
		b = append(b, stateWord(o.State)...)
		b = append(b, " >= "...)
		b = strconv.AppendInt(b, int64(o.Threshold), 10)
		b = append(b, ')')
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
	for pi := range a.pfxInfo.n {
		pf := a.pfxInfo.at(pi)
		if pf.head < 0 {
			continue
		}
		pfx := pf.pfx
		var c *candidate
		thr := a.prefixThreshold(pfx)
		for r := range a.rules {
			k := a.findPrefixRecord(pi, a.rules[r].class)
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
	for ri := a.pfxInfo.at(pi).head; ri >= 0; {
		r := a.pfxRecs.at(ri)
		if r.class == class {
			return r
		}
		ri = r.next
	}
	return nil
}

// addrCandidate sets c to the offender's candidate, merged over the rules
// that hit it, reusing c's others; it reports false when no rule does.
func (a *analysis) addrCandidate(o *offender, c *candidate) bool {
	c.others = c.others[:0]
	c.folded = 0
	found := false
	addr := o.ip()
	subject := netip.PrefixFrom(addr, addr.BitLen())
	for r := range a.rules {
		spec := &a.rules[r]
		k, _ := a.record(o, spec.class)
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
		for ei := k.hist; ei >= 0; {
			e := a.hist.at(ei)
			if e.count >= spec.thr {
				n++
			}
			ei = e.next
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
