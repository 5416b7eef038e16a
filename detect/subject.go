package detect

import (
	"encoding/binary"
	"net/netip"

	"github.com/synban/synban/policy"
)

// RuleCheck is one rule judged on one subject over the window, as Analyze
// judges it: the count in each sample (summed over the subject's addresses,
// from Sources[i] of them), the threshold, and in how many samples the
// count reached it.
type RuleCheck struct {
	Rule      string
	State     policy.State
	Ports     []uint16
	Threshold int
	Counts    []int
	Sources   []int
	Peak      int
	// Hits counts the samples whose count reached Threshold (for a prefix:
	// with at least two sources); Crossed is Hits >= the policy's min_hits.
	Hits    int
	Crossed bool
}

// SubjectCounts is what Analyze counted of one subject (an address or a
// prefix), rule by rule, in every sample of the window, below threshold
// too. Rules that count no connection (syn_rate) are left out.
type SubjectCounts struct {
	// Rules are the rules judged on the subject itself: an address's own
	// counts, or the prefix's when the subject is its aggregation prefix;
	// nil for any other prefix (no rule judges it).
	Rules []RuleCheck
	// Prefix is the aggregation prefix holding the subject (the subject
	// itself when it is one), with its threshold and its rules judged as a
	// prefix; the zero Prefix when the subject's family is not aggregated
	// or the subject is broader.
	Prefix          netip.Prefix
	PrefixThreshold int
	PrefixRules     []RuleCheck
}

// AnalyzeSubject is Analyze that also returns what it counted of subject:
// the verdicts and the per-rule counts explaining them come from one
// counting of the window.
func AnalyzeSubject(p *policy.Policy, samples []Sample, g *policy.Guard, subject netip.Prefix) (Report, SubjectCounts) {
	rep := Report{Samples: len(samples)}
	for _, s := range samples {
		rep.Malformed += s.Malformed
	}
	if p == nil {
		return rep, SubjectCounts{}
	}
	a := newAnalysis(p, len(samples), sizeHint(samples), false, true)
	a.watch = a.newWatch(subject)
	a.count(samples)
	sc := a.subjectCounts()
	return a.report(rep, g, nil), sc
}

// watch is the subject whose every count addSample keeps, per sample and
// counter class.
type watch struct {
	subject netip.Prefix
	addr    netip.Addr   // the subject when it is one address; invalid otherwise
	pfx     netip.Prefix // the aggregation prefix holding it; invalid for none
	ai      int32        // addr's number once seen, -1 before
	pi      int32        // pfx's number once seen, -1 before
	// Per sample and class ([sample*classes+class]): the address's count,
	// the prefix's sum and its sources.
	addrN, pfxSum, pfxSrc []int32
}

func (a *analysis) newWatch(subject netip.Prefix) *watch {
	w := &watch{subject: subject, ai: -1, pi: -1}
	n := a.samples * len(a.classes)
	if subject.Bits() == subject.Addr().BitLen() {
		w.addr = subject.Addr()
		w.addrN = make([]int32, n)
	}
	if pfx := a.prefixOf(subject.Addr()); pfx.IsValid() && subject.Bits() >= pfx.Bits() {
		w.pfx = pfx
		w.pfxSum, w.pfxSrc = make([]int32, n), make([]int32, n)
	}
	return w
}

// resolve numbers the watched address and prefix once the window holds
// them; it never adds one (an unseen subject is no source).
func (w *watch) resolve(a *analysis) {
	if w.ai < 0 && w.addr.IsValid() {
		if w.addr.Is4() {
			b := w.addr.As4()
			if i, ok := a.addrIdx4[binary.BigEndian.Uint32(b[:])]; ok {
				w.ai = i
			}
		} else if i, ok := a.addrIdx6[w.addr.As16()]; ok {
			w.ai = i
		}
	}
	if w.pi < 0 && w.pfx.IsValid() {
		if pa := w.pfx.Addr(); pa.Is4() {
			b := pa.As4()
			if i, ok := a.pfxIdx4[binary.BigEndian.Uint32(b[:])]; ok {
				w.pi = i
			}
		} else if i, ok := a.pfxIdx6[pa.As16()]; ok {
			w.pi = i
		}
	}
}

// subjectCounts judges every rule on the watched subject: the counts are
// the ones addSample kept, the hits the ones its records hold (what the
// verdicts are built from). It must run before report releases them.
func (a *analysis) subjectCounts() SubjectCounts {
	w := a.watch
	var sc SubjectCounts
	if w.addr.IsValid() {
		var o *offender
		if w.ai >= 0 {
			if off := a.info.at(w.ai).off; off >= 0 {
				o = a.offenders.at(off)
			}
		}
		sc.Rules = a.ruleChecks(w.addrN, nil, func(spec *ruleSpec) int32 {
			if o == nil {
				return 0
			}
			if r, _ := a.record(o, spec.class); r != nil {
				return a.hitsOf(r, spec)
			}
			return 0
		}, nil)
	}
	if w.pfx.IsValid() {
		sc.Prefix = w.pfx
		sc.PrefixThreshold = a.prefixThreshold(w.pfx)
		thr := sc.PrefixThreshold
		sc.PrefixRules = a.ruleChecks(w.pfxSum, w.pfxSrc, func(spec *ruleSpec) int32 {
			if w.pi < 0 {
				return 0
			}
			if r := a.findPrefixRecord(w.pi, spec.class); r != nil {
				return r.hits
			}
			return 0
		}, &thr)
		if w.pfx == w.subject {
			sc.Rules = sc.PrefixRules
		}
	}
	return sc
}

// ruleChecks builds one RuleCheck per rule counting connections from the
// per-sample class counts n and sources src (nil: one source wherever the
// count is not zero), with the hits hits(rule) and the threshold thr (nil:
// each rule's own).
func (a *analysis) ruleChecks(n, src []int32, hits func(*ruleSpec) int32, thr *int) []RuleCheck {
	nk := len(a.classes)
	out := make([]RuleCheck, 0, len(a.rules))
	for ri := range a.rules {
		spec := &a.rules[ri]
		r := spec.rule
		if r.State == policy.StateSynRate {
			continue // counts no connection: the sensor speaks for it
		}
		rc := RuleCheck{Rule: r.Name, State: r.State, Ports: append([]uint16{}, r.Ports...), Threshold: r.Threshold,
			Counts: make([]int, a.samples), Sources: make([]int, a.samples)}
		if thr != nil {
			rc.Threshold = *thr
		}
		for si := range a.samples {
			c := int(n[si*nk+int(spec.class)])
			rc.Counts[si] = c
			switch {
			case src != nil:
				rc.Sources[si] = int(src[si*nk+int(spec.class)])
			case c > 0:
				rc.Sources[si] = 1
			}
			rc.Peak = max(rc.Peak, c)
		}
		rc.Hits = int(hits(spec))
		rc.Crossed = rc.Hits >= a.minHits
		out = append(out, rc)
	}
	return out
}
