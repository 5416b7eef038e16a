package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backends"
	"github.com/synban/synban/state"
)

// Decision is everything one cycle decided, before anything is applied: a
// dry run renders it, a run commits it.
type Decision struct {
	Policy     *policy.Policy
	Guard      *policy.Guard
	Sampler    string
	SamplerWhy string
	Samples    []detect.Sample
	// Counters is the TcpExt counters' change over the window.
	Counters detect.TcpExt
	Class    detect.Classification
	Report   detect.Report
	Ruleset  *rules.Ruleset
	Omitted  rules.Omitted
	// Restored counts active bans from the state store carried into the
	// ruleset (when Unchanged: those the kernel still holds).
	Restored    int
	StateLoaded bool
	// Refreshed are the subjects of Report.Verdicts whose ban still holds
	// and is only extended (the source kept sending): not new offences.
	Refreshed map[netip.Prefix]bool
	// Structure is a hash of the ruleset without its bans (see
	// structureHash): what the state store's Applied record compares.
	Structure string
	// Sensor is the firewall sensor's evidence (empty when the backend has
	// no sensor, the meter is off, or the table was replayed).
	Sensor detect.SensorEvidence
	// stored are the counters this run leaves for the next (nil: none).
	stored *state.Counters
	// Unchanged is set when the run found nothing to do: no verdict, and
	// the backend's generation and the structure as the state store
	// recorded them after the last full reconcile. Ruleset then holds the
	// structure only (no bans; the kernel holds them) and is not applied.
	Unchanged bool
	// Upstream is the decision for the upstream routers; nil when
	// [upstream] is off.
	Upstream *UpstreamPlan
	// Moves says which of the kernel's base chains a run would move,
	// add or remove (rules.ChainMoves); filled by Plan only.
	Moves []string
}

// Guard builds the never-ban guard from the policy and the host's
// addresses, each with the reason it is protected (host address, default
// gateway, SSH client from Options.SSHConnection), which the guard's
// messages then name.
func (e *Engine) Guard(p *policy.Policy) (*policy.Guard, error) {
	var host []detect.Protected
	if p.Allow.Host {
		var err error
		if host, err = detect.HostProtected(e.opts.SSHConnection); err != nil {
			return nil, fmt.Errorf("find the host's own addresses: %w", err)
		}
	}
	e.log.Debug("never-ban addresses of this host", "count", len(host))
	return p.Guard(host), nil
}

// Plan decides without changing anything: the state store is read only
// when it exists (an unreadable one is logged and planned without), and the
// backend a run would use is chosen by the same code, probing without
// creating anything. A backend that would fail is named in Choice.Why.
func (e *Engine) Plan(ctx context.Context, p *policy.Policy, now time.Time) (*Decision, backends.Choice, error) {
	st, err := readState(e.opts.StateDir)
	if err != nil {
		e.log.Warn("state store unreadable; planning without it", "dir", e.opts.StateDir, "err", err)
		st = nil
	}
	d, err := e.Decide(ctx, p, st, now)
	if err != nil {
		return nil, backends.Choice{}, err
	}
	choice, err := e.choose(ctx, e.BackendName(p), e.backendOptions(p, nil))
	if err != nil {
		if ctx.Err() != nil {
			return nil, backends.Choice{}, err
		}
		choice.Why = fmt.Sprintf("%v: run would fail", err)
	}
	d.Moves = e.chainMoves(ctx, p, choice, d.Ruleset)
	return d, choice, nil
}

// Decide runs the pure part of a cycle: sample, analyse, escalate, compile.
// st may be nil (no state store available: plan on a fresh host). Without
// drop counters, evidence against a subject whose ban holds is stale.
func (e *Engine) Decide(ctx context.Context, p *policy.Policy, st *state.State, now time.Time) (*Decision, error) {
	return e.decideWith(ctx, &cycle{p: p, now: now, st: storedOf(st), sr: e.newSensorRun(p, e.sensorFor(ctx, p), e.opts.StateDir)})
}

// stored is the state store as a decision reads it: a state loaded whole,
// or the store itself, read ban by ban (escalation's lookups) and loaded
// whole only when the decision restores the stored bans. The generation
// shortcut's steady run thus reads no more than the bans it asks about.
type stored struct {
	st    *state.State // loaded whole; nil until needed when store is set
	store *state.Store
	err   error // the first lookup error (a lookup cannot return it)
}

// storedOf wraps a loaded state; nil for none.
func storedOf(st *state.State) *stored {
	if st == nil {
		return nil
	}
	return &stored{st: st}
}

// find returns the ban of exactly p.
func (s *stored) find(p netip.Prefix) (state.Ban, bool) {
	if s.st != nil {
		return s.st.Find(p)
	}
	var b state.Ban
	var ok bool
	s.fail(s.store.View(func(t *state.Tx) error {
		var err error
		b, ok, err = t.Find(p)
		return err
	}))
	return b, ok
}

// last returns the history record of p.
func (s *stored) last(p netip.Prefix) (state.Record, bool) {
	if s.st != nil {
		return s.st.Last(p)
	}
	var r state.Record
	var ok bool
	s.fail(s.store.View(func(t *state.Tx) error {
		var err error
		r, ok, err = t.Last(p)
		return err
	}))
	return r, ok
}

func (s *stored) fail(err error) {
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("read state: %w", err)
	}
}

// all returns the whole state, loading it the first time.
func (s *stored) all() (*state.State, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.st == nil {
		st, err := s.store.Load()
		if err != nil {
			return nil, fmt.Errorf("load state: %w", err)
		}
		s.st = st
	}
	return s.st, nil
}

// cycle is what one decision works with; a run, a plan (Decide) and an
// explain each make one.
type cycle struct {
	p *policy.Policy
	// g is the guard; decideWith sets it from the policy and the host.
	g   *policy.Guard
	now time.Time
	// st is the state store as the decision reads it; nil when there is
	// none (a plan on a fresh host): no escalation, nothing restored.
	st *stored
	// drops reads the backend's per-ban drop counters, only when a verdict
	// names a subject whose ban still holds; nil when the backend keeps
	// none (evidence against a banned subject is then stale).
	drops *dropReader
	// keep, when not nil, is asked when no verdict came out whether the
	// kernel is still as the last run left it with this structure hash;
	// when it says yes the stored bans are not compiled again and the
	// decision is Unchanged (see gen.go).
	keep func(structure string) bool
	// sr, when not nil, adds the firewall sensor's readings around the
	// window and the previous run's stored counters (see sensorRun).
	sr *sensorRun
}

// decideWith takes the guard and a window (with the sensor's readings
// around it) and decides on them.
func (e *Engine) decideWith(ctx context.Context, c *cycle) (*Decision, error) {
	g, err := e.Guard(c.p)
	if err != nil {
		return nil, err
	}
	c.g = g
	w, err := e.sampleSensed(ctx, c.p, c.sr)
	if err != nil {
		return nil, err
	}
	return e.decideWindow(ctx, c, w)
}

// decideWindow decides on a window already taken.
func (e *Engine) decideWindow(ctx context.Context, c *cycle, w *Window) (*Decision, error) {
	samples := w.Result.Samples
	// Analysis, classification and, for a spoofed flood, the spoof filter
	// in one pass: banning forged sources is pointless and fills the ban
	// set, so only the real offenders become verdicts (the forged ones are
	// never built, only the worst listed as spared); the SYN meter stays on.
	// The firewall's sensor and the counters stored by the previous run
	// then refine it (detect.RefineClassification).
	sensor := c.sr.evidence(c.p)
	ev := c.sr.classifyEvidence(w, sensor, nil)
	rep, class := detect.Detect(c.p, samples, c.g, ev.Delta(c.p))
	filtered := class.Kind == detect.KindSpoofed
	rep = addSensorVerdicts(c.p, rep, sensor, c.g)
	ev.Verdicts = rep.Verdicts
	class = detect.RefineClassification(c.p, class, ev)
	if class.Kind == detect.KindSpoofed && !filtered {
		rep = detect.FilterSpoofed(rep, class)
	}
	if class.Kind == detect.KindSpoofed {
		e.log.Warn("spoofed SYN flood", "half_open_sources", class.HalfOpenSources, "half_open_entries", class.HalfOpenEntries,
			"cookies_sent", class.CookiesSent, "cookies_recv", class.CookiesRecv, "why", class.Why)
		for _, adv := range class.Advice {
			e.log.Warn("advice", "do", adv)
		}
	}
	var refreshed map[netip.Prefix]bool
	if c.st != nil {
		esc := detect.Escalate(c.p, rep.Verdicts, c.now, standing(ctx, c.st, c.now, c.drops))
		if c.st.err != nil {
			return nil, c.st.err
		}
		if c.drops != nil && c.drops.err != nil {
			e.log.Warn("drop counters unreadable; offenders still banned count as answered", "err", c.drops.err)
		}
		rep.Verdicts, refreshed = esc.Verdicts, esc.Refreshed
		for _, v := range esc.Stale {
			e.log.Debug("offence already answered by a ban that holds, nothing new dropped", "subject", v.Subject, "rule", v.Rule, "count", v.Count)
		}
	}
	d := &Decision{Policy: c.p, Guard: c.g, Sampler: strings.Join(w.Samplers, "+"), SamplerWhy: w.Why, Samples: samples,
		Counters: w.Result.Delta, Class: class, Report: rep, StateLoaded: c.st != nil, Refreshed: refreshed,
		Sensor: sensor, stored: c.sr.counters(w)}
	d.Upstream = e.planUpstream(c.p, c.g, w, d, c.now)
	if c.keep != nil && c.st != nil && len(rep.Verdicts) == 0 {
		// Nothing decided: the structure alone says whether the kernel
		// still holds what the last full run left (see Decision.Unchanged).
		base, _, err := rules.Compile(c.p, nil, c.g)
		if err != nil {
			return nil, fmt.Errorf("compile ruleset: %w", err)
		}
		if d.Structure = structureHash(base); c.keep(d.Structure) {
			d.Ruleset, d.Unchanged = base, true
			return d, nil
		}
	}
	offences := Offences(rep.Verdicts)
	restored := 0
	if c.st != nil {
		all, err := c.st.all()
		if err != nil {
			return nil, err
		}
		// The stored bans go straight to offences: 100,000 of them as
		// verdicts first were one more slice of them to fill and drop.
		offences, restored = appendStoredOffences(slices.Grow(offences, len(all.Bans)), all, c.now)
	}
	rs, omitted, err := rules.Compile(c.p, offences, c.g)
	if err != nil {
		return nil, fmt.Errorf("compile ruleset: %w", err)
	}
	d.Ruleset, d.Omitted, d.Restored, d.Structure = rs, omitted, restored, structureHash(rs)
	return d, nil
}

// structureHash hashes what of rs is not its bans: table, mode, chains,
// hooks, priorities, set sizes, meter, connection cap and the allow list
// (which follows the host's addresses). Two rulesets with the same hash
// build the same table apart from the ban elements.
func structureHash(rs *rules.Ruleset) string {
	c := *rs
	c.Bans = nil
	b, err := json.Marshal(&c)
	if err != nil {
		// A Ruleset is plain data; should it ever fail to encode, no hash
		// matches a stored one and the run reconciles in full.
		return ""
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

// standing returns escalation's view of a subject: its history, whether its
// stored ban still holds, and whether that ban's kernel drop counter moved
// since the count stored by the previous run. When the counters cannot be
// read, a ban that holds counts as showing nothing new.
func standing(ctx context.Context, st *stored, now time.Time, drops *dropReader) func(netip.Prefix) detect.Standing {
	return func(pfx netip.Prefix) detect.Standing {
		var s detect.Standing
		if r, ok := st.last(pfx); ok {
			s.Last, s.HasLast = detect.PastBan{At: r.LastBan, For: r.LastFor}, true
		}
		b, ok := st.find(pfx)
		if !ok || b.Expired(now) {
			return s
		}
		s.Banned, s.Until = true, b.Until
		if drops == nil {
			return s
		}
		if m, err := drops.read(ctx); err == nil {
			if cur, ok := m[policy.Canonical(pfx)]; ok {
				s.Dropped = detect.NewDrops(cur, b.Drops)
			}
		}
		return s
	}
}

// dropReader reads a backend's per-ban drop counters at most once per run.
type dropReader struct {
	dc   rules.DropCounter
	m    map[netip.Prefix]uint64
	err  error
	done bool
}

func (d *dropReader) read(ctx context.Context) (map[netip.Prefix]uint64, error) {
	if !d.done {
		d.m, d.err = d.dc.BanDrops(ctx)
		d.done = true
		if d.err != nil {
			d.err = fmt.Errorf("read per-ban drop counters: %w", d.err)
		}
	}
	return d.m, d.err
}

// storedVerdicts turns the state store's active bans into verdicts carrying
// the time each has left, so a run after an outside flush or a reboot puts
// them back. They come after the sampled verdicts: Compile keeps the longer
// of two bans of one subject, drops what a prefix covers, and enforces the
// guard and max_entries on them like on any verdict.
func storedVerdicts(st *state.State, now time.Time) []detect.Verdict {
	out := make([]detect.Verdict, 0, len(st.Bans))
	for i := range st.Bans {
		if v, ok := storedVerdict(&st.Bans[i], now); ok {
			out = append(out, v)
		}
	}
	// In prefix order, as the store loads them (st.Active's order).
	cmp := func(a, b detect.Verdict) int { return policy.ComparePrefixes(a.Subject, b.Subject) }
	if !slices.IsSortedFunc(out, cmp) {
		slices.SortFunc(out, cmp)
	}
	return out
}

// storedVerdict is the verdict of storedVerdicts that restores b at now;
// false when b has ended or has less than a second left.
func storedVerdict(b *state.Ban, now time.Time) (detect.Verdict, bool) {
	if b.Expired(now) {
		return detect.Verdict{}, false
	}
	left := b.Until.Sub(now).Truncate(time.Second)
	if left < time.Second {
		return detect.Verdict{}, false
	}
	reason := b.Reason
	if reason == "" {
		reason = "restored from state"
	}
	return detect.Verdict{Subject: b.Prefix, BanFor: left, Reason: reason, Rule: "", Sources: 1, Forced: b.Forced}, true
}

// appendStoredOffences appends Offences(storedVerdicts(st, now)) to dst
// without making the verdicts, and returns dst and how many it appended.
func appendStoredOffences(dst []rules.Offence, st *state.State, now time.Time) ([]rules.Offence, int) {
	n := len(dst)
	for i := range st.Bans {
		if v, ok := storedVerdict(&st.Bans[i], now); ok {
			dst = append(dst, Offence(v))
		}
	}
	cmp := func(a, b rules.Offence) int { return policy.ComparePrefixes(a.Subject, b.Subject) }
	if tail := dst[n:]; !slices.IsSortedFunc(tail, cmp) {
		slices.SortFunc(tail, cmp)
	}
	return dst, len(dst) - n
}
