package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/metrics"
	"github.com/synban/synban/internal/sysctl"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backends"
	"github.com/synban/synban/state"
)

// Outcome is what a committed cycle did.
type Outcome struct {
	// Choice is the backend used and why.
	Choice   backends.Choice
	Decision *Decision
	// Result is the backend's account of the apply.
	Result rules.Result
	// Expired counts bans the state store expired.
	Expired int
	// SysctlChanges counts kernel settings changed ([sysctl] apply).
	SysctlChanges int
	// Fleet is the exchange with the CrowdSec LAPI; nil without [crowdsec].
	Fleet *FleetReport
	// Upstream is what the run handed the upstream speaker; nil without
	// [upstream].
	Upstream *UpstreamReport
	// XDP is what the run did with the XDP fast path; nil without [xdp].
	XDP *XDPReport
}

// Run is one unattended cycle: lock, decide, commit (see commit). When it
// fails for a reason other than the lock (another run is doing the work)
// or a signal, the failure is recorded in the metrics file; a successful
// run writes its metrics itself.
func (e *Engine) Run(ctx context.Context, p *policy.Policy, now time.Time) (*Outcome, error) {
	start := time.Now()
	out, err := e.run(ctx, p, now, start)
	// An interrupted run is not a failure of the host's defence: the metrics
	// keep the last run's outcome.
	if err != nil && ctx.Err() == nil && !errors.Is(err, ErrLocked) && p.Metrics.Textfile != "" {
		if merr := metrics.Write(p.Metrics.Textfile, metrics.Run{Start: start, Elapsed: time.Since(start), Err: err}); merr != nil {
			e.log.Error("could not write the metrics file", "path", p.Metrics.Textfile, "err", merr)
		}
	}
	return out, err
}

// run runs one full cycle: lock, decide, apply, record, expire. A signal
// (ctx cancelled) ends the cycle at once while it waits for the lock or
// samples; once the firewall is about to change, the cycle completes (apply,
// record, expire) so the kernel and the state store stay consistent.
func (e *Engine) run(ctx context.Context, p *policy.Policy, now, start time.Time) (*Outcome, error) {
	fl, err := e.openFleet(p) // [crowdsec]: credentials first, bad ones change nothing
	if err != nil {
		return nil, err
	}
	l, err := e.lockAndOpen(ctx, p)
	if err != nil {
		return nil, err
	}
	defer l.release()
	store, head, b, choice := l.store, l.head, l.backend, l.choice
	var drops *dropReader
	if dc, ok := b.(rules.DropCounter); ok {
		drops = &dropReader{dc: dc}
	}
	gen := e.generation(ctx, b, choice.Name)
	pulled := fl.pull(ctx)
	keep := gen.keep(head)
	if fl.pulling() {
		// The fleet's decisions change without a verdict of this host's:
		// the generation shortcut cannot see them, so reconcile in full.
		keep = nil
	}
	// The full reconcile needs every stored ban; the shortcut only the
	// metadata and the bans it asks about (see stored), so the store is
	// loaded whole only when the decision needs it.
	var st *state.State
	src := &stored{store: store}
	if keep == nil {
		if st, err = store.Load(); err != nil {
			return nil, fmt.Errorf("load state: %w", err)
		}
		src = storedOf(fl.decideState(st))
	}
	d, err := e.decideWith(ctx, &cycle{p: p, now: now, st: src, drops: drops, keep: keep, sr: e.newSensorRun(p, b, store.Dir())})
	if err != nil {
		return nil, err
	}
	// The next run's baseline, whatever this one goes on to apply.
	e.saveCounters(store.Dir(), d)
	if d.Unchanged {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("before applying: %w", err)
		}
		return e.unchanged(context.WithoutCancel(ctx), p, d, choice, b, store, head, now, start)
	}
	if st == nil {
		st = src.st // loaded by the decision to restore the stored bans
	}
	if err := fl.join(d, st, now, pulled); err != nil { // pulled bans join before the apply
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("before applying: %w", err)
	}
	// From here on the cycle completes even when a signal comes.
	ctx = context.WithoutCancel(ctx)
	out := &Outcome{Choice: choice, Decision: d}
	out.SysctlChanges = e.hardenKernel(p)
	e.spoofSysctls(p, d.Class)
	if out.Result, err = b.Apply(ctx, d.Ruleset); err != nil {
		return nil, fmt.Errorf("apply with %s: %w", choice.Name, err)
	}
	res := out.Result
	if res.Created {
		if len(st.Bans) > 0 || len(st.History) > 0 {
			// Someone flushed the ruleset, reloaded the firewall or rebooted.
			e.log.Warn("synban's firewall state was missing and has been restored", "backend", choice.Name,
				"table", d.Ruleset.Table, "bans", len(d.Ruleset.Bans), "restored_from_state", d.Restored)
		} else {
			e.log.Info("created synban's firewall state", "backend", choice.Name, "table", d.Ruleset.Table)
		}
	}
	for _, c := range res.Changed {
		e.log.Info("changed", "backend", choice.Name, "object", c)
	}
	// The local bans are in place: the upstream speaker gets the run's
	// decision at once, before the store and the LAPI are written.
	out.Upstream = e.handOffUpstream(d)
	if err := fl.withdraw(ctx, b); err != nil {
		return nil, err
	}
	counts := dropBaseline(drops, d)
	// The run loaded the store under the lock it still holds: the update
	// works on that copy instead of reading and decoding every ban again
	// (markPulled gets the local bans as loaded, before the update changes
	// the copy).
	update := store.Update
	local := fl.localOf(st, now)
	if st != nil {
		update = func(fn func(*state.State) error) error { return store.UpdateLoaded(st, fn) }
	}
	if err := update(func(s *state.State) error {
		out.Expired = e.expire(s, now)
		recordBans(s, d, choice.Name, now, counts)
		fl.markPulled(s, local, d)
		// Bans the backend will not hold (another owner's route to the same
		// destination, a stored ban the allow list now covers) leave the
		// store: kept, they would be retried every run and reported missing.
		for _, pfx := range res.Forget {
			if old, ok := s.Find(pfx); ok && old.Backend == choice.Name {
				s.Remove(pfx)
				e.log.Info("ban dropped from the state store: the backend will not hold it", "subject", pfx, "backend", choice.Name)
			}
		}
		s.Applied = gen.applied(b, d, s)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("record bans in %s: %w", store.Path(), err)
	}
	if ex, ok := b.(rules.Expirer); ok {
		if _, err := ex.Expire(ctx); err != nil {
			return nil, fmt.Errorf("expire %s bans: %w", choice.Name, err)
		}
	}
	out.XDP = e.syncXDP(ctx, p, b) // after the backend: its table is the source of truth
	fl.push(ctx, d)
	out.Fleet = fl.report()
	e.logDecision(d)
	e.writeMetrics(ctx, out, b, store, start)
	// One summary line per run (shown from --log-level info up).
	e.log.Info("run done", "backend", choice.Name, "sampler", d.Sampler, "sources", d.Report.Sources, "flood", d.Class.Kind,
		"verdicts", len(d.Report.Verdicts), "added", res.Added, "refreshed", res.Refreshed,
		"restored", d.Restored, "expired", out.Expired, "spared", d.Report.SparedCount(),
		"omitted", len(d.Omitted), "duration", time.Since(start).Round(time.Millisecond))
	return out, nil
}

// logDecision logs the bans decided, the offenders spared and the bans left
// out. A spoofed flood or a full ban set can mean a million of these: it
// names the first few and counts the rest.
func (e *Engine) logDecision(d *Decision) {
	for _, v := range d.Report.Verdicts {
		e.log.Info("ban", "subject", v.Subject, "rule", v.Rule, "count", v.Count, "for", v.BanFor, "reason", v.Reason)
	}
	for i, s := range d.Report.Spared {
		if i == MaxListed {
			e.log.Warn("more offenders spared", "count", d.Report.SparedCount()-MaxListed)
			break
		}
		e.log.Warn("offender spared", "subject", s.Verdict.Subject, "why", s.Why)
	}
	for i, om := range d.Omitted {
		if i == MaxListed {
			e.log.Warn("more bans left out", "count", len(d.Omitted)-MaxListed, "total", len(d.Omitted))
			break
		}
		e.log.Warn("ban left out", "subject", om.Prefix, "why", om.Why)
	}
}

// storeSlack is how much later than its stored end a ban that this run did
// not decide (restored, or pulled from the LAPI) must now end before the
// store records the later end: the kernel's refresh slack (rules/nft), so
// that the store and the kernel keep the same end.
const storeSlack = time.Second

// recordBans writes the decided bans into the state store. New offences go
// into the history (escalation counts them); refreshes of a ban that still
// holds do not. counts, when the backend has per-ban counters, are the drop
// counts the kernel shows after the apply: the baseline the next run
// compares with.
func recordBans(s *state.State, d *Decision, backend string, now time.Time, counts map[netip.Prefix]uint64) {
	fresh := make(map[netip.Prefix]detect.Verdict, len(d.Report.Verdicts))
	for _, v := range d.Report.Verdicts {
		fresh[policy.Canonical(v.Subject)] = v
	}
	// longest is the longest ban Compile lets through.
	longest := policy.MaxTimeout
	if m := d.Policy.Ban.MaxDuration.Duration; m > 0 && m < longest {
		longest = m
	}
	for _, b := range d.Ruleset.Bans {
		v, decided := fresh[b.Prefix]
		sb := state.Ban{Prefix: b.Prefix, Since: now, Until: now.Add(b.Timeout), Reason: b.Reason, Backend: backend}
		old, found := s.Find(b.Prefix)
		if found && !decided && sb.Until.After(old.Until) && sb.Until.Sub(old.Until) < storeSlack {
			// Restored or pulled again with (almost) the end it has: a
			// pulled ban's time left is the LAPI's, computed a moment
			// after this run's now, so its end would move by that lag
			// every run, and the store would rewrite every pulled ban.
			sb.Until = old.Until
		}
		if found && old.Until.After(now.Add(longest)) {
			// Compile cut the stored ban to ban.max_duration (a ban stored
			// until 2099): the store must not outlast the kernel, or every
			// run would restore it again. Upsert only lengthens. A ban
			// within the cap keeps its end: restoring it rounds its time
			// left to whole seconds, which must not shorten it run by run.
			s.Remove(b.Prefix)
			sb.Since, sb.Forced = old.Since, old.Forced
		}
		if decided {
			sb.Rule = v.Rule
			if !d.Refreshed[b.Prefix] {
				s.Record(b.Prefix, now, b.Timeout)
			}
		}
		s.Upsert(sb)
		if n, ok := counts[b.Prefix]; ok {
			s.SetDrops(b.Prefix, n)
		}
	}
}

// dropBaseline returns the per-ban drop counts to store after an apply,
// without reading the kernel again (the kernel's dump of 100,000 counted
// elements cost 11 s of a 12 s first run): the bans decided this run were
// added or re-added by the apply, whose counters start at 0; the others keep
// the counts read during the decision. Without a read and without a verdict
// it is nil: the stored counts stand. An element re-added for another reason
// (near expiry, a restore) restarts its counter too, which detect.NewDrops
// reads as a re-created element (a count below the stored one is new).
func dropBaseline(drops *dropReader, d *Decision) map[netip.Prefix]uint64 {
	if drops == nil {
		return nil
	}
	var m map[netip.Prefix]uint64
	if drops.done && drops.err == nil {
		m = maps.Clone(drops.m)
	}
	for _, v := range d.Report.Verdicts {
		if m == nil {
			m = make(map[netip.Prefix]uint64, len(d.Report.Verdicts))
		}
		m[policy.Canonical(v.Subject)] = 0
	}
	return m
}

// SysctlDrift reads the policy's kernel settings ([sysctl]) where the
// engine's options say they live and reports each one's value against the
// policy's, for `synban check`. It changes nothing.
func (e *Engine) SysctlDrift(p *policy.Policy) []sysctl.State {
	return sysctl.Read(e.sysctlRoot(), p.Sysctl.Settings())
}

// sysctlRoot is where kernel settings live.
func (e *Engine) sysctlRoot() string {
	if e.opts.SysctlRoot != "" {
		return e.opts.SysctlRoot
	}
	return sysctl.Root
}

// hardenKernel applies [sysctl] for a run when sysctl.apply is true and
// logs every change with its old and new value; failures are logged, not
// fatal: the bans matter more. It returns the number of settings changed.
func (e *Engine) hardenKernel(p *policy.Policy) int {
	if !p.Sysctl.Apply {
		return 0
	}
	changed, err := sysctl.Apply(e.sysctlRoot(), p.Sysctl.Settings())
	for _, c := range changed {
		e.log.Warn("kernel setting changed (sysctl.apply)", "key", c.Key, "old", c.Old, "new", c.New)
	}
	if err != nil {
		e.log.Error("could not apply the policy's kernel settings", "err", err)
	}
	return len(changed)
}

// spoofSysctls sets what detect.SpoofSysctls wants against the classified
// flood, in this network namespace, and logs what changed; a failure is
// logged, not fatal.
func (e *Engine) spoofSysctls(p *policy.Policy, c detect.Classification) {
	changed, err := applySpoofSysctls("", p, c)
	if err != nil {
		e.log.Error("could not apply the kernel settings against a spoofed flood", "err", err)
		return
	}
	for _, c := range changed {
		e.log.Warn("kernel setting changed against a spoofed flood (spoof.apply_sysctl)", "change", c)
	}
}

// applySpoofSysctls enforces detect.SpoofSysctls in the network namespace
// netns ("" for this one) and returns the changes as "key: old -> new".
func applySpoofSysctls(netns string, p *policy.Policy, c detect.Classification) ([]string, error) {
	want := detect.SpoofSysctls(p, c)
	if len(want) == 0 {
		return nil, nil
	}
	ws := make([]sysctl.Want, 0, len(want))
	for _, w := range want {
		ws = append(ws, sysctl.Want{Key: w.Key, Value: w.Value, Keep: w.Keep})
	}
	changed, err := sysctl.Ensure(netns, ws)
	var out []string
	for _, ch := range changed {
		out = append(out, ch.String())
	}
	return out, err
}

// writeMetrics writes the metrics file of a successful run when the policy
// names one: the decision, the active bans from the state store and the
// backend's drop counters. A metrics failure is logged, not returned: the
// bans are in place.
func (e *Engine) writeMetrics(ctx context.Context, out *Outcome, b rules.Backend, store *state.Store, start time.Time) {
	d := out.Decision
	path := d.Policy.Metrics.Textfile
	if path == "" {
		return
	}
	c := d.Class
	m := metrics.Run{
		Start: start, Elapsed: time.Since(start), Backend: out.Choice.Name,
		Samples: len(d.Samples), Sources: d.Report.Sources, Verdicts: len(d.Report.Verdicts),
		Added: out.Result.Added, Expired: out.Expired, SysctlChanges: out.SysctlChanges, CrowdSec: fleetMetrics(out.Fleet),
		Upstream: upstreamMetrics(out.Upstream), XDP: e.xdpMetrics(out.XDP),
		Flood: metrics.FloodClass{Kind: c.Kind, Kinds: detect.FloodKinds(), HalfOpenEntries: c.HalfOpenEntries,
			HalfOpenSources: c.HalfOpenSources, CookiesSent: c.CookiesSent, CookiesRecv: c.CookiesRecv},
	}
	// The store's tally counts the bans by group without reading them;
	// those that ended by now (still stored) are taken off through the
	// expiry index.
	at := e.now()
	err := store.View(func(t *state.Tx) error {
		tally, err := t.Tally()
		if err != nil {
			return err
		}
		if err := t.Expiring(at.Add(1), func(b state.Ban) error {
			if b.Expired(at) {
				tally[b.Group()]--
			}
			return nil
		}); err != nil {
			return err
		}
		for g, n := range tally {
			if n <= 0 {
				continue
			}
			backend := g.Backend
			if backend == "" {
				backend = out.Choice.Name
			}
			m.Bans = append(m.Bans, metrics.Ban{Backend: backend, Reason: g.Reason, Count: n})
		}
		return nil
	})
	if err != nil {
		e.log.Warn("metrics: cannot read the active bans", "err", err)
	}
	if cs, err := b.Counters(ctx); err != nil {
		e.log.Warn("metrics: cannot read the drop counters", "backend", out.Choice.Name, "err", err)
	} else {
		for _, x := range cs {
			m.Drops = append(m.Drops, metrics.Counter{Chain: x.Chain, Rule: x.Rule, Packets: x.Packets, Bytes: x.Bytes})
		}
	}
	if err := metrics.Write(path, m); err != nil {
		e.log.Error("could not write the metrics file", "path", path, "err", err)
	}
}
