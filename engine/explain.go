package engine

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/prefixes"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backends"
	"github.com/synban/synban/state"
)

// Outcomes of an explanation: what the window decided about the subject.
const (
	// ExplainOffends: a rule (or the subject's prefix) crossed its threshold
	// and nothing spared it.
	ExplainOffends = "offends"
	// ExplainSpared: it offends, but the guard or the spoofed-flood filter
	// spares it.
	ExplainSpared = "spared"
	// ExplainBelow: seen, but no rule reached its threshold in enough samples.
	ExplainBelow = "below threshold"
	// ExplainNotSeen: no entry of the subject in the window.
	ExplainNotSeen = "not seen"
)

// SeenCount is what one sample held from the subject: entries by state and
// the distinct addresses they came from.
type SeenCount struct {
	SynRecv, Established, Other, Sources int
}

// RuleCheck is one rule judged on one subject over the window, as the
// analysis counted it (detect.AnalyzeSubject).
type RuleCheck = detect.RuleCheck

// PrefixCheck is the aggregation prefix holding the subject, judged as
// Analyze judges it: per rule, the count summed over the prefix's addresses
// against the family's prefix threshold, with at least two sources.
type PrefixCheck struct {
	Prefix    netip.Prefix
	Threshold int
	Rules     []RuleCheck
	Crossed   bool
	// Guard is the never-ban entry inside the prefix, if any: an offending
	// prefix it touches is spared and its addresses judged on their own.
	Guard *policy.Protected
}

// Explanation is the full story of one address or prefix: what the window
// saw of it, every rule's numbers, its aggregation prefix, the guard's
// verdict and why, what the run would decide (escalation, the compiled
// ruleset), what the state store remembers, and what the kernel holds.
type Explanation struct {
	Subject             netip.Prefix
	Policy              string
	Sampler, SamplerWhy string
	Samples             int
	MinHits             int
	// Seen is, per sample, what the subject's entries were.
	Seen []SeenCount
	// Rules are the policy's rules judged on the subject itself; empty for
	// a prefix that is not an aggregation prefix (no rule judges it).
	Rules []RuleCheck
	// Prefix is the aggregation prefix holding the subject (the subject
	// itself when it is one); nil when the family is not aggregated or the
	// subject is broader.
	Prefix *PrefixCheck
	// Guard is the never-ban entry protecting the subject, if any.
	Guard *policy.Protected
	Class detect.Classification
	// Outcome is one of the Explain* constants.
	Outcome string
	// Offence is the analysis's verdict on the subject or on a prefix
	// holding it (before escalation), nil when none; Spared says why it is
	// not banned when it is spared.
	Offence *detect.Verdict
	Spared  *detect.Spared
	// Inside are offending subjects strictly inside a prefix subject.
	Inside []detect.Verdict
	// Escalation says what escalation makes of the offence: "offence",
	// "refresh" or "stale" ("" without an offence or a state store).
	Escalation string
	// Decided is the verdict the run would apply (after escalation), nil
	// when none.
	Decided *detect.Verdict
	// Planned is the ban the compiled ruleset holds for the subject or a
	// prefix covering it (decided now or restored from the store).
	Planned *rules.Ban
	// Omitted says why the compiler left a verdict on the subject out.
	Omitted *rules.Omission
	// Stored is the state store's ban of the subject (or a prefix covering
	// it) and History its escalation record; StateLoaded is false when no
	// store exists.
	StateLoaded bool
	Stored      *state.Ban
	History     *state.Record
	// Backend is the backend read (read-only); BackendErr says why the
	// kernel could not be read (the rest of the story stands).
	Backend    backends.Choice
	BackendErr string
	// Kernel is the ban in the kernel covering the subject, with its time
	// left, and Drops its element's drop counter (HasDrops false when the
	// backend keeps none for it).
	Kernel   *rules.ActiveBan
	Drops    uint64
	HasDrops bool
	// Sensor is the firewall sensor's row for the subject (its source key
	// covers it): the SYNs over the meter; nil when the sensor holds none
	// or was not read (SensorRead false).
	Sensor     *detect.SensorRow
	SensorRead bool
	// Summary says it in sentences that name the numbers that decided.
	Summary []string
	// XDP is the XDP map entry that matches the subject (the longest
	// prefix holding it), with its drop counter; nil when none. XDPRead
	// is set when the fast path's maps were there to read.
	XDP     *XDPDrop
	XDPRead bool
}

// Explain tells the full story of subject (an address or a prefix) from one
// sampling window of the live tables (or Options.From), the state store and
// the kernel. It writes nothing: the store is read only when it exists, the
// backend is opened read-only (as Status opens it), and a backend that
// cannot be read leaves BackendErr set instead of failing.
func (e *Engine) Explain(ctx context.Context, p *policy.Policy, subject netip.Prefix, now time.Time) (*Explanation, error) {
	subject = policy.Canonical(subject)
	st, err := readState(e.opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("read state store: %w", err)
	}
	g, err := e.Guard(p)
	if err != nil {
		return nil, err
	}
	k := kernelView{err: "not read: --from replays a captured table"}
	var sr *sensorRun
	if e.opts.From == "" {
		var kerr error
		if k, kerr = e.readKernel(ctx, p, st); kerr != nil {
			k = kernelView{choice: k.choice, err: kerr.Error()}
		}
		// The firewall's sensor, read around the window as a run reads it
		// (nothing is stored: the counters file is only read).
		sr = e.newSensorRun(p, k.backend, e.opts.StateDir)
	}
	w, err := e.sampleSensed(ctx, p, sr)
	if err != nil {
		return nil, err
	}
	x, err := e.explainWindow(ctx, p, g, w, st, now, subject, k, sr)
	if err == nil && e.opts.From == "" {
		e.explainXDP(p, x)
	}
	return x, err
}

// kernelView is what Explain read of the backend.
type kernelView struct {
	backend rules.Backend
	choice  backends.Choice
	bans    []rules.ActiveBan
	drops   *dropReader
	err     string
}

// KernelBans is what the kernel holds of synban's, read read-only: the
// bans with their time left, each ban element's drop counter (Drops; a ban
// missing from it has none), and the rules' drop counters.
type KernelBans struct {
	Choice   backends.Choice
	Bans     []rules.ActiveBan
	Drops    map[netip.Prefix]uint64
	Counters []rules.Counter
}

// KernelBans reads the backend as explain does (opened read-only; nothing
// created, expired or removed), for views such as `synban top`.
func (e *Engine) KernelBans(ctx context.Context, p *policy.Policy) (*KernelBans, error) {
	st, err := readState(e.opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("read state store: %w", err)
	}
	k, err := e.readKernel(ctx, p, st)
	if err != nil {
		return nil, err
	}
	out := &KernelBans{Choice: k.choice, Bans: k.bans, Drops: map[netip.Prefix]uint64{}}
	if k.drops != nil {
		if out.Drops, err = k.drops.read(ctx); err != nil {
			return nil, err
		}
	}
	if out.Counters, err = k.backend.Counters(ctx); err != nil {
		return nil, fmt.Errorf("read counters with %s: %w", k.choice.Name, err)
	}
	return out, nil
}

// readKernel opens the backend read-only and lists its bans.
func (e *Engine) readKernel(ctx context.Context, p *policy.Policy, st *state.State) (kernelView, error) {
	var k kernelView
	var store *state.Store
	if st != nil {
		// The state file exists, so Open creates nothing; the route backend
		// reads its reasons and times from it.
		s, err := state.Open(e.opts.StateDir)
		if err != nil {
			return k, fmt.Errorf("open state store: %w", err)
		}
		store = s
	}
	bo := e.backendOptions(p, store)
	bo.ReadOnly = true
	b, choice, err := e.open(ctx, e.BackendName(p), bo)
	k.choice, k.backend = choice, b
	if err != nil {
		return k, fmt.Errorf("choose a firewall backend: %w", err)
	}
	if k.bans, err = b.Bans(ctx); err != nil {
		return k, fmt.Errorf("list bans with %s: %w", choice.Name, err)
	}
	if dc, ok := b.(rules.DropCounter); ok {
		k.drops = &dropReader{dc: dc}
	}
	return k, nil
}

// explainWindow is Explain on a window already taken.
func (e *Engine) explainWindow(ctx context.Context, p *policy.Policy, g *policy.Guard, w *Window, st *state.State, now time.Time, subject netip.Prefix, k kernelView, sr *sensorRun) (*Explanation, error) {
	samples := w.Result.Samples
	x := &Explanation{Subject: subject, Policy: p.Source, Sampler: strings.Join(w.Samplers, "+"), SamplerWhy: w.Why,
		Samples: len(samples), MinHits: max(p.Sample.MinHits, 1), StateLoaded: st != nil,
		Backend: k.choice, BackendErr: k.err}
	x.Seen = seen(samples, subject)
	if m, ok := g.Match(subject); ok {
		x.Guard = &m
	}

	// The decision as the run makes it: the same analysis, spoof filter,
	// escalation (with the kernel's drop counters) and compiler.
	d, err := e.decideWindow(ctx, &cycle{p: p, g: g, now: now, st: storedOf(st), drops: k.drops, sr: sr}, w)
	if err != nil {
		return nil, err
	}
	x.SensorRead = d.Sensor.Available && d.Sensor.Err == ""
	for i := range d.Sensor.Rows {
		if r := &d.Sensor.Rows[i]; prefixes.Holds(r.Subject, subject) {
			x.Sensor = r
			break
		}
	}
	x.Class = d.Class
	// The rules' numbers on the subject and its aggregation prefix come
	// from the analysis that makes the verdicts: one count, one answer.
	pre, sc := detect.AnalyzeSubject(p, samples, g, subject)
	x.Rules = sc.Rules
	if sc.Prefix.IsValid() {
		pc := &PrefixCheck{Prefix: sc.Prefix, Threshold: sc.PrefixThreshold, Rules: sc.PrefixRules}
		pc.Crossed = slices.ContainsFunc(pc.Rules, func(r RuleCheck) bool { return r.Crossed })
		if m, ok := g.Match(sc.Prefix); ok {
			pc.Guard = &m
		}
		x.Prefix = pc
	}
	pre = detect.FilterSpoofed(pre, d.Class)
	for i := range pre.Verdicts {
		v := &pre.Verdicts[i]
		switch {
		case holds(v.Subject, subject) && x.Offence == nil:
			x.Offence = v
		case holds(subject, v.Subject) && v.Subject != subject && len(x.Inside) < MaxListed:
			x.Inside = append(x.Inside, *v)
		}
	}
	if x.Offence == nil {
		// Spared, unless a verdict stands. A prefix the guard spares leaves
		// the addresses inside it to be judged on their own, so it speaks
		// only for itself; a prefix the spoof filter spares had folded its
		// addresses, so it speaks for them too. The most specific wins.
		for i := range pre.Spared {
			s := &pre.Spared[i]
			applies := s.Verdict.Subject == subject || (!s.By.Prefix.IsValid() && holds(s.Verdict.Subject, subject))
			if applies && (x.Spared == nil || s.Verdict.Subject.Bits() > x.Spared.Verdict.Subject.Bits()) {
				x.Spared = s
			}
		}
		if x.Spared != nil {
			x.Offence = &x.Spared.Verdict
		}
	}
	for i := range d.Report.Verdicts {
		if v := &d.Report.Verdicts[i]; x.Offence != nil && v.Subject == x.Offence.Subject {
			x.Decided = v
		}
	}
	if st != nil && x.Offence != nil && x.Spared == nil {
		x.Escalation = detect.OutcomeOf(standing(ctx, storedOf(st), now, k.drops)(x.Offence.Subject)).String()
	}
	for i := range d.Ruleset.Bans {
		if b := &d.Ruleset.Bans[i]; holds(b.Prefix, subject) {
			x.Planned = b
		}
	}
	for i := range d.Omitted {
		if om := &d.Omitted[i]; holds(om.Prefix, subject) && x.Planned == nil {
			x.Omitted = om
		}
	}
	if st != nil {
		for _, b := range st.Bans {
			if holds(b.Prefix, subject) && (x.Stored == nil || b.Prefix.Bits() < x.Stored.Prefix.Bits()) {
				x.Stored = &b
			}
		}
		if r, ok := st.Last(subject); ok {
			x.History = &r
		}
	}
	for i := range k.bans {
		if b := &k.bans[i]; holds(b.Prefix, subject) {
			x.Kernel = b
		}
	}
	if x.Kernel != nil && k.drops != nil {
		if m, err := k.drops.read(ctx); err == nil {
			x.Drops, x.HasDrops = m[x.Kernel.Prefix]
		}
	}
	switch {
	case x.Spared != nil:
		x.Outcome = ExplainSpared
	case x.Offence != nil:
		x.Outcome = ExplainOffends
	case seenAny(x.Seen):
		x.Outcome = ExplainBelow
	default:
		x.Outcome = ExplainNotSeen
	}
	x.Summary = x.summarize(now)
	return x, nil
}

// holds reports whether prefix a holds all of b (same family, a no longer).
func holds(a, b netip.Prefix) bool { return prefixes.Holds(a, b) }

// Aggregation returns the prefix holding addr that the policy aggregates
// sources by, and that prefix's threshold, as detect.Analyze aggregates
// (ok false when addr's family is not aggregated).
func Aggregation(p *policy.Policy, addr netip.Addr) (pfx netip.Prefix, thr int, ok bool) {
	bits, thr := p.Prefix.Aggregation(addr.Is4())
	if pfx, ok := prefixes.Aggregate(addr, bits); ok {
		return pfx, thr, true
	}
	return netip.Prefix{}, 0, false
}

// seen counts, per sample, the subject's entries by state and sources.
func seen(samples []detect.Sample, subject netip.Prefix) []SeenCount {
	out := make([]SeenCount, len(samples))
	for i, s := range samples {
		srcs := map[netip.Addr]bool{}
		for c := range s.All() {
			a := c.Remote.Addr().Unmap()
			if !subject.Contains(a) {
				continue
			}
			srcs[a] = true
			switch c.State {
			case detect.SynRecv, detect.NewSynRecv:
				out[i].SynRecv++
			case detect.Established:
				out[i].Established++
			default:
				out[i].Other++
			}
		}
		out[i].Sources = len(srcs)
	}
	return out
}

func seenAny(s []SeenCount) bool {
	return slices.ContainsFunc(s, func(c SeenCount) bool { return c.SynRecv+c.Established+c.Other > 0 })
}

// summarize says the story in sentences naming the numbers that decided.
func (x *Explanation) summarize(now time.Time) []string {
	var out []string
	s := x.Subject
	if !seenAny(x.Seen) {
		out = append(out, fmt.Sprintf("%s: no entry in the %d sample(s) of the window", s, x.Samples))
	}
	for _, r := range x.Rules {
		cmp := ">="
		if !r.Crossed {
			cmp = "below"
		}
		what := "reached"
		if !r.Crossed {
			what = "reached it in only"
		}
		out = append(out, fmt.Sprintf("rule %s: peak %d %s %s threshold %d; %s %d of %d samples (min_hits %d)",
			r.Rule, r.Peak, stateWord(r.State), cmp, r.Threshold, what, r.Hits, x.Samples, x.MinHits))
	}
	if pc := x.Prefix; pc != nil && pc.Prefix != s && len(pc.Rules) > 0 {
		best := pc.Rules[0] // a policy holds at least one rule
		for _, r := range pc.Rules {
			if r.Crossed || r.Peak > best.Peak {
				best = r
				if r.Crossed {
					break
				}
			}
		}
		verdict := "does not offend"
		switch {
		case pc.Crossed && pc.Guard != nil:
			verdict = "offends as a prefix, but is never banned (" + pc.Guard.Reason() + "): its addresses are judged on their own"
		case pc.Crossed:
			verdict = "offends as a prefix"
		}
		out = append(out, fmt.Sprintf("prefix %s (aggregation /%d): peak %d from %d sources against threshold %d (rule %s), %d of %d samples: %s",
			pc.Prefix, pc.Prefix.Bits(), best.Peak, slices.Max(append([]int{0}, best.Sources...)), pc.Threshold, best.Rule, best.Hits, x.Samples, verdict))
	}
	for _, v := range x.Inside {
		out = append(out, fmt.Sprintf("inside: %s offends: %s", v.Subject, v.Reason))
	}
	switch {
	case x.Guard != nil:
		out = append(out, fmt.Sprintf("guard: never banned: %s", x.Guard.Reason()))
	default:
		out = append(out, "guard: not protected")
	}
	switch x.Outcome {
	case ExplainSpared:
		out = append(out, fmt.Sprintf("verdict: spared: %s (%s)", x.Spared.Why, x.Spared.Verdict.Reason))
	case ExplainOffends:
		out = append(out, fmt.Sprintf("verdict: offends: %s", x.Offence.Reason))
		switch {
		case x.Escalation == "stale":
			out = append(out, "escalation: stale: the ban holds and its drop counter shows nothing new since the last run; nothing changes")
		case x.Escalation == "refresh":
			out = append(out, fmt.Sprintf("escalation: refresh: the ban holds and keeps dropping; extended to %s", x.Decided.BanFor))
		case x.Decided != nil:
			out = append(out, fmt.Sprintf("escalation: new offence: ban for %s (%s)", x.Decided.BanFor, x.Decided.Reason))
		}
	case ExplainBelow:
		out = append(out, "verdict: below threshold: not an offender")
	}
	if x.Class.Kind != "" && x.Class.Kind != detect.KindNone {
		out = append(out, fmt.Sprintf("flood: %s — %s", x.Class.Kind, x.Class.Why))
	}
	switch {
	case x.Planned != nil:
		out = append(out, fmt.Sprintf("ruleset: the next run bans %s for %s (%s)", x.Planned.Prefix, x.Planned.Timeout, x.Planned.Reason))
	case x.Omitted != nil:
		out = append(out, fmt.Sprintf("ruleset: left out: %s", x.Omitted.Why))
	default:
		out = append(out, "ruleset: no ban for it")
	}
	switch {
	case !x.StateLoaded:
		out = append(out, "state store: none")
	case x.Stored != nil:
		left := "no expiry"
		if !x.Stored.Until.IsZero() {
			left = x.Stored.Until.Sub(now).Round(time.Second).String() + " left"
			if x.Stored.Expired(now) {
				left = "expired"
			}
		}
		out = append(out, fmt.Sprintf("state store: banned as %s since %s, %s (rule %s: %s)", x.Stored.Prefix,
			x.Stored.Since.UTC().Format(time.RFC3339), left, x.Stored.Rule, x.Stored.Reason))
	default:
		out = append(out, "state store: no ban")
	}
	if x.History != nil {
		out = append(out, fmt.Sprintf("history: banned %d time(s), last at %s for %s", x.History.Bans,
			x.History.LastBan.UTC().Format(time.RFC3339), x.History.LastFor))
	} else if x.StateLoaded {
		out = append(out, "history: never banned")
	}
	switch {
	case x.Sensor != nil:
		out = append(out, fmt.Sprintf("sensor: %s over the SYN meter: %d SYNs in the window, %d since the previous run, %.0f/s",
			x.Sensor.Subject, x.Sensor.InWindow, x.Sensor.SinceLast, x.Sensor.Rate))
	case x.SensorRead:
		out = append(out, "sensor: not over the SYN meter")
	}
	switch {
	case x.BackendErr != "":
		out = append(out, "kernel: "+x.BackendErr)
	case x.Kernel != nil:
		left := "never expires"
		if x.Kernel.Expires > 0 {
			left = x.Kernel.Expires.Round(time.Second).String() + " left"
		}
		drops := "no drop counter"
		if x.HasDrops {
			drops = fmt.Sprintf("%d packets dropped", x.Drops)
		}
		out = append(out, fmt.Sprintf("kernel (%s): banned as %s, %s, %s", x.Backend.Name, x.Kernel.Prefix, left, drops))
	default:
		out = append(out, fmt.Sprintf("kernel (%s): not banned", x.Backend.Name))
	}
	return out
}

// stateWord names what a state counts in a sentence.
func stateWord(s policy.State) string {
	if s == policy.StateAny {
		return "connections"
	}
	return string(s)
}
