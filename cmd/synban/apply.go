package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backends"
	"github.com/synban/synban/rules/route"
	"github.com/synban/synban/rules/state"
	"github.com/synban/synban/templates"
)

// backendOptions are the backend options the policy and the flags ask for:
// one place, so that run, status and plan choose alike.
func (a *app) backendOptions(o *options, p *policy.Policy, store *state.Store) backends.Options {
	nftMode, nftTable, nftFamily := p.NFTables.Target()
	return backends.Options{
		Logger:             a.log,
		Store:              store,
		DisableNFTables:    o.noNFT,
		NFTMode:            nftMode,
		NFTTable:           nftTable,
		NFTFamily:          nftFamily,
		IPTablesPath:       p.IPTables.Path,
		IPTablesChain:      p.IPTables.Chain,
		IPTablesDockerUser: p.IPTables.DockerUser,
		RouteType:          p.Route.Type,
		RouteProtocol:      p.Route.Protocol,
	}
}

// openBackend picks the backend (policy or --backend) and logs why.
func (a *app) openBackend(ctx context.Context, o *options, p *policy.Policy, store *state.Store) (rules.Backend, backends.Choice, error) {
	b, choice, err := backends.Open(ctx, backendName(o, p), a.backendOptions(o, p, store))
	if err != nil {
		return nil, choice, fmt.Errorf("choose a firewall backend: %w", err)
	}
	return b, choice, nil
}

// maxListed is how many spared offenders and left-out bans a run logs one
// by one before it only counts them.
const maxListed = 20

// lockAndOpen takes the state lock, checks that the state store loads, and
// opens the backend, for the commands that change bans. A store that cannot
// be read (corrupt, or a link or FIFO planted as its file) stops the command
// before the kernel is touched: a ban applied and then not recorded would
// never be restored or expired by synban. The caller defers release.
func (a *app) lockAndOpen(ctx context.Context, o *options, p *policy.Policy) (*state.Store, rules.Backend, backends.Choice, func() error, error) {
	store, release, err := lockedStore(ctx, o.stateDir, o.wait)
	if err != nil {
		return nil, nil, backends.Choice{}, nil, err
	}
	if _, err := store.Load(); err != nil {
		release()
		return nil, nil, backends.Choice{}, nil, fmt.Errorf("load state: %w", err)
	}
	b, choice, err := a.openBackend(ctx, o, p, store)
	if err != nil {
		release()
		return nil, nil, backends.Choice{}, nil, err
	}
	return store, b, choice, release, nil
}

// apply runs one full cycle: lock, decide, apply, record, expire. A signal
// (ctx cancelled) ends the cycle at once while it waits for the lock or
// samples; once the firewall is about to change, the cycle completes (apply,
// record, expire) so the kernel and the state store stay consistent.
func (a *app) apply(ctx context.Context, o *options, p *policy.Policy, now time.Time) error {
	start := time.Now()
	a.log.Debug("taking the state lock", "dir", o.stateDir, "wait", o.wait)
	store, release, err := lockedStore(ctx, o.stateDir, o.wait)
	if err != nil {
		return err
	}
	defer release()
	st, err := store.Load()
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	b, choice, err := a.openBackend(ctx, o, p, store)
	if err != nil {
		return err
	}
	var drops *dropReader
	if dc, ok := b.(rules.DropCounter); ok {
		drops = &dropReader{dc: dc}
	}
	d, err := a.decideWith(ctx, p, st, now, "", drops)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("before applying: %w", err)
	}
	// From here on the cycle completes even when a signal comes.
	ctx = context.WithoutCancel(ctx)
	sysctlChanges := a.hardenKernel(p)
	if changed, err := detect.ApplySpoofSysctls("", p, d.Class); err != nil {
		a.log.Error("could not apply the kernel settings against a spoofed flood", "err", err)
	} else {
		for _, c := range changed {
			a.log.Warn("kernel setting changed against a spoofed flood (spoof.apply_sysctl)", "change", c)
		}
	}
	res, err := b.Apply(ctx, d.Ruleset)
	if err != nil {
		return fmt.Errorf("apply with %s: %w", choice.Name, err)
	}
	if res.Created {
		if len(st.Bans) > 0 || len(st.History) > 0 {
			// Someone flushed the ruleset, reloaded the firewall or rebooted.
			a.log.Warn("synban's firewall state was missing and has been restored", "backend", choice.Name,
				"table", d.Ruleset.Table, "bans", len(d.Ruleset.Bans), "restored_from_state", d.Restored)
		} else {
			a.log.Info("created synban's firewall state", "backend", choice.Name, "table", d.Ruleset.Table)
		}
	}
	for _, c := range res.Changed {
		a.log.Info("changed", "backend", choice.Name, "object", c)
	}
	counts, err := dropBaseline(ctx, drops, res)
	if err != nil {
		a.log.Warn("drop counters unreadable after apply; the next run treats offenders still banned as answered", "err", err)
	}
	expired := 0
	if err := store.Update(func(s *state.State) error {
		for _, e := range s.Expire(now) {
			expired++
			a.log.Info("ban expired", "subject", e.Prefix, "rule", e.Rule, "lasted", e.Until.Sub(e.Since).Round(time.Second), "reason", e.Reason)
		}
		recordBans(s, d, choice.Name, now, counts)
		return nil
	}); err != nil {
		return fmt.Errorf("record bans in %s: %w", store.Path(), err)
	}
	if ex, ok := b.(rules.Expirer); ok {
		if _, err := ex.Expire(ctx); err != nil {
			return fmt.Errorf("expire %s bans: %w", choice.Name, err)
		}
	}
	for _, v := range d.Report.Verdicts {
		a.log.Info("ban", "subject", v.Subject, "rule", v.Rule, "count", v.Count, "for", v.BanFor, "reason", v.Reason)
	}
	// A spoofed flood or a full ban set can mean a million of these: name the
	// first few, count the rest.
	for i, s := range d.Report.Spared {
		if i == maxListed {
			a.log.Warn("more offenders spared", "count", len(d.Report.Spared)-maxListed)
			break
		}
		a.log.Warn("offender spared", "subject", s.Verdict.Subject, "why", s.Why)
	}
	for i, om := range d.Omitted {
		if i == maxListed {
			a.log.Warn("more bans left out", "count", len(d.Omitted)-maxListed, "total", len(d.Omitted))
			break
		}
		a.log.Warn("ban left out", "subject", om.Prefix, "why", om.Why)
	}
	a.finishRun(ctx, runReport{Start: start, Decision: d, Result: res, Backend: b, BackendName: choice.Name, Store: store, Expired: expired, SysctlChanges: sysctlChanges})
	// One summary line per run (shown from --log-level info up).
	a.log.Info("run done", "backend", choice.Name, "sampler", d.Sampler, "sources", d.Report.Sources, "flood", d.Class.Kind,
		"verdicts", len(d.Report.Verdicts), "added", res.Added, "refreshed", res.Refreshed,
		"restored", d.Restored, "expired", expired, "spared", len(d.Report.Spared),
		"omitted", len(d.Omitted), "duration", time.Since(start).Round(time.Millisecond))
	if o.json {
		return writeJSON(a.stdout, map[string]any{
			"backend": choice.Name, "backend_why": choice.Why, "sources": d.Report.Sources,
			"verdicts": len(d.Report.Verdicts), "added": res.Added, "refreshed": res.Refreshed,
			"created": res.Created, "restored": d.Restored, "expired": expired, "classification": classJSON(d.Class),
		})
	}
	return nil
}

// recordBans writes the decided bans into the state store. New offences go
// into the history (escalation counts them); refreshes of a ban that still
// holds do not. counts, when the backend has per-ban counters, are the drop
// counts the kernel shows after the apply: the baseline the next run
// compares with.
func recordBans(s *state.State, d *decision, backend string, now time.Time, counts map[netip.Prefix]uint64) {
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
		if old, ok := s.Find(b.Prefix); ok && old.Until.After(now.Add(longest)) {
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

// dropBaseline returns the per-ban drop counts to store after an apply: the
// counts read during the decision when the apply added or refreshed no
// element (so no counter restarted), else a fresh read. nil when the
// backend has no counters or they were not needed.
func dropBaseline(ctx context.Context, drops *dropReader, res rules.Result) (map[netip.Prefix]uint64, error) {
	if drops == nil {
		return nil, nil
	}
	if drops.done && drops.err == nil && res.Added+res.Refreshed == 0 && !res.Created && len(res.Changed) == 0 {
		return drops.m, nil
	}
	if !drops.done && res.Added+res.Refreshed == 0 && !res.Created && len(res.Changed) == 0 {
		return nil, nil // nothing read, nothing changed: the stored counts stand
	}
	m, err := drops.dc.BanDrops(ctx)
	if err != nil {
		return nil, fmt.Errorf("read per-ban drop counters: %w", err)
	}
	return m, nil
}

// cmdStatus shows the backend, the bans in the kernel and the drop counters,
// and says plainly what the kernel lacks of what the state store holds. It
// writes nothing: no state directory is created (the store is read only when
// it exists), no store updated, and the backend is opened read-only (no
// table, chain, set or route created, expired or removed).
func cmdStatus(ctx context.Context, a *app, o *options, args []string) error {
	if err := noArgs("status", args); err != nil {
		return err
	}
	p, err := loadPolicyFor(o)
	if err != nil {
		return err
	}
	st, err := readState(o.stateDir)
	if err != nil {
		return fmt.Errorf("read state store: %w", err)
	}
	var store *state.Store
	if st != nil {
		// The state file exists, so Open creates nothing; the route backend
		// reads its reasons and times from it.
		if store, err = state.Open(o.stateDir); err != nil {
			return fmt.Errorf("open state store: %w", err)
		}
	}
	bo := a.backendOptions(o, p, store)
	bo.ReadOnly = true
	b, choice, err := backends.Open(ctx, backendName(o, p), bo)
	if err != nil {
		return fmt.Errorf("choose a firewall backend: %w", err)
	}
	bans, err := b.Bans(ctx)
	if err != nil {
		return fmt.Errorf("list bans with %s: %w", choice.Name, err)
	}
	counters, err := b.Counters(ctx)
	if err != nil {
		return fmt.Errorf("read counters with %s: %w", choice.Name, err)
	}
	var missing []string
	if in, ok := b.(backends.Inspector); ok {
		if missing, err = in.Missing(ctx); err != nil {
			return fmt.Errorf("inspect %s: %w", choice.Name, err)
		}
	}
	gap := compareStored(st, bans, time.Now())
	notes := gap.notes(choice.Name, missing, p.Route.Protocol)
	if o.json {
		type banJSON struct {
			Prefix  string  `json:"prefix"`
			Expires float64 `json:"expires_seconds"`
			Timeout float64 `json:"timeout_seconds"`
			Reason  string  `json:"reason"`
		}
		out := make([]banJSON, 0, len(bans))
		for _, bn := range bans {
			out = append(out, banJSON{bn.Prefix.String(), bn.Expires.Seconds(), bn.Timeout.Seconds(), bn.Reason})
		}
		absent := make([]string, 0, len(gap.absent))
		for _, pfx := range gap.absent {
			absent = append(absent, pfx.String())
		}
		return writeJSON(a.stdout, map[string]any{"backend": choice.Name, "backend_why": choice.Why, "bans": out, "counters": counters,
			"missing": append([]string{}, missing...), "stored_bans": gap.stored, "stored_missing": absent,
			"state_loaded": st != nil, "notes": append([]string{}, notes...)})
	}
	fmt.Fprintf(a.stdout, "backend: %s (%s)\n", choice.Name, choice.Why)
	for _, n := range notes {
		fmt.Fprintln(a.stdout, n)
	}
	fmt.Fprintf(a.stdout, "bans: %d\n", len(bans))
	writeBans(a.stdout, bans)
	if len(counters) > 0 {
		fmt.Fprintln(a.stdout, "drops:")
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		for _, c := range counters {
			fmt.Fprintf(tw, "  %s\t%s\t%d packets\t%d bytes\n", c.Chain, c.Rule, c.Packets, c.Bytes)
		}
		tw.Flush()
	}
	return nil
}

// storeGap compares the state store's active bans with the kernel's.
type storeGap struct {
	// stored counts the bans the next run would restore from the store.
	stored int
	// absent are those of them no ban in the kernel covers.
	absent []netip.Prefix
	// stale counts bans in the kernel the store has no active ban for
	// (for routes, which the next run removes).
	stale int
}

// compareStored finds which of the store's active bans (those the next run
// restores, see storedVerdicts) the kernel lacks. st may be nil.
func compareStored(st *state.State, kernel []rules.ActiveBan, now time.Time) storeGap {
	var g storeGap
	if st == nil {
		g.stale = len(kernel)
		return g
	}
	stored := storedVerdicts(st, now)
	g.stored = len(stored)
	for _, v := range stored {
		covered := slices.ContainsFunc(kernel, func(k rules.ActiveBan) bool {
			return k.Prefix.Addr().Is4() == v.Subject.Addr().Is4() && k.Prefix.Bits() <= v.Subject.Bits() && k.Prefix.Contains(v.Subject.Addr())
		})
		if !covered {
			g.absent = append(g.absent, v.Subject)
		}
	}
	for _, k := range kernel {
		if !slices.ContainsFunc(stored, func(v detect.Verdict) bool { return v.Subject == k.Prefix }) {
			g.stale++
		}
	}
	return g
}

// notes says in words what the kernel lacks and what the next run will do.
func (g storeGap) notes(backend string, missing []string, routeProto int) []string {
	var out []string
	stored := "no bans stored"
	if g.stored > 0 {
		stored = plural(g.stored, "ban") + " stored"
	}
	switch {
	case len(missing) > 0 && g.stored > 0:
		out = append(out, fmt.Sprintf("%s: %s missing; %s; the next run restores them", backend, strings.Join(missing, ", "), stored))
	case len(missing) > 0:
		out = append(out, fmt.Sprintf("%s: %s missing; %s; the next run creates it", backend, strings.Join(missing, ", "), stored))
	case len(g.absent) > 0:
		out = append(out, fmt.Sprintf("%d of %s missing from the kernel; the next run restores them", len(g.absent), plural(g.stored, "stored ban")))
	}
	if backend == backends.Route && g.stale > 0 {
		if routeProto == 0 {
			routeProto = route.DefaultProtocol
		}
		out = append(out, fmt.Sprintf("%s of protocol %d expired or unknown to the state store; the next run removes them", plural(g.stale, "route"), routeProto))
	}
	return out
}

// plural is "1 ban", "12 bans".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func writeBans(w io.Writer, bans []rules.ActiveBan) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, b := range bans {
		left := "never expires"
		if b.Expires > 0 {
			left = b.Expires.Round(time.Second).String() + " left"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", b.Prefix, left, b.Reason)
	}
	tw.Flush()
}

func cmdBan(ctx context.Context, a *app, o *options, args []string) error {
	if len(args) != 1 {
		return badInput("ban takes one address or prefix, got %d arguments", len(args))
	}
	if err := checkBackendFlag(o.backend); err != nil {
		return err
	}
	subject, err := parseSubject(args[0])
	if err != nil {
		return err
	}
	p, err := loadPolicy(o)
	if err != nil {
		return err
	}
	d := p.Ban.Duration.Duration
	if o.banFor != "" {
		d, err = time.ParseDuration(o.banFor)
		if err != nil || d < time.Second {
			return badInput("--for %q: want a duration of at least 1s such as 90s, 10m or 2h", o.banFor)
		}
	}
	g, err := a.guard(p)
	if err != nil {
		return err
	}
	reason := "manual ban"
	if why, broad := rules.TooBroad(p, subject); broad {
		switch {
		case subject.Bits() == 0:
			return badInput("refusing to ban %s: %s, even with --force", subject, why)
		case !o.force:
			return badInput("refusing to ban %s: %s; add --force to ban it anyway", subject, why)
		}
		// Compile, now and when the ban is restored from the state store
		// (which keeps the flag), lets a broad ban through only when forced.
		reason = rules.ForcedBanReason
	}
	if why, protected := g.Protects(subject); protected {
		return badInput("refusing to ban %s: %s", subject, why)
	}
	forced := reason == rules.ForcedBanReason
	rs, omitted, err := rules.Compile(p, []detect.Verdict{{Subject: subject, BanFor: d, Reason: reason, Sources: 1, Forced: forced}}, g)
	if err != nil {
		return fmt.Errorf("compile ruleset: %w", err)
	}
	if len(omitted) > 0 {
		return badInput("refusing to ban %s: %s", subject, omitted[0].Why)
	}
	ban := rs.Bans[0]
	note := ""
	if ban.Timeout < d {
		note = " (capped by ban.max_duration)"
	}
	store, b, choice, release, err := a.lockAndOpen(ctx, o, p)
	if err != nil {
		return err
	}
	defer release()
	if _, err := b.Apply(ctx, rs); err != nil {
		return fmt.Errorf("apply ban with %s: %w", choice.Name, err)
	}
	now := time.Now()
	if err := store.Update(func(s *state.State) error {
		s.Upsert(state.Ban{Prefix: ban.Prefix, Since: now, Until: now.Add(ban.Timeout), Reason: ban.Reason, Rule: "manual", Backend: choice.Name, Forced: forced})
		return nil
	}); err != nil {
		return fmt.Errorf("record ban: %w", err)
	}
	a.log.Info("ban", "subject", ban.Prefix, "rule", "manual", "for", ban.Timeout, "asked", d, "reason", ban.Reason, "backend", choice.Name)
	fmt.Fprintf(a.stdout, "banned %s for %s%s (%s)\n", ban.Prefix, ban.Timeout, note, choice.Name)
	return nil
}

func cmdUnban(ctx context.Context, a *app, o *options, args []string) error {
	if len(args) == 0 {
		return badInput("unban takes one or more addresses or prefixes")
	}
	if err := checkBackendFlag(o.backend); err != nil {
		return err
	}
	var subjects []netip.Prefix
	for _, arg := range args {
		s, err := parseSubject(arg)
		if err != nil {
			return err
		}
		subjects = append(subjects, s)
	}
	p, err := loadPolicy(o)
	if err != nil {
		return err
	}
	store, b, choice, release, err := a.lockAndOpen(ctx, o, p)
	if err != nil {
		return err
	}
	defer release()
	n, err := b.Unban(ctx, subjects)
	if err != nil {
		return fmt.Errorf("unban with %s: %w", choice.Name, err)
	}
	if err := store.Update(func(s *state.State) error {
		for _, sub := range subjects {
			// Log what the ban was: its rule and how long it had lasted.
			attrs := []any{"subject", sub, "backend", choice.Name}
			if old, ok := s.Find(sub); ok {
				attrs = append(attrs, "rule", old.Rule, "lasted", time.Since(old.Since).Round(time.Second), "reason", old.Reason)
			}
			a.log.Info("unban", attrs...)
			s.Remove(sub)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("record unban: %w", err)
	}
	fmt.Fprintf(a.stdout, "unbanned %d of %d (%s)\n", n, len(subjects), choice.Name)
	return nil
}

func cmdFlush(ctx context.Context, a *app, o *options, args []string) error {
	if err := noArgs("flush", args); err != nil {
		return err
	}
	p, err := loadPolicyFor(o)
	if err != nil {
		return err
	}
	store, b, choice, release, err := a.lockAndOpen(ctx, o, p)
	if err != nil {
		return err
	}
	defer release()
	if err := b.Flush(ctx); err != nil {
		return fmt.Errorf("flush %s: %w", choice.Name, err)
	}
	// The bans are gone from the kernel: forget them so the next run does not
	// restore them. The history stays for escalation.
	if err := store.Update(func(s *state.State) error {
		s.Bans = nil
		return nil
	}); err != nil {
		return fmt.Errorf("clear bans in state: %w", err)
	}
	a.log.Info("flushed", "backend", choice.Name)
	fmt.Fprintf(a.stdout, "removed everything synban created (%s)\n", choice.Name)
	return nil
}

// renderOther renders the dry run in iptables or route syntax.
func renderOther(w io.Writer, d *decision, format string) error {
	switch format {
	case "iptables":
		return templates.IPTables(w, d.Ruleset, d.Policy.IPTables.Chain)
	case "route":
		return templates.Route(w, d.Ruleset, d.Policy.Route.Type, d.Policy.Route.Protocol)
	}
	return badInput("unknown format %q", format)
}
