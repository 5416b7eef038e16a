package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/prefixes"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backends"
	"github.com/synban/synban/rules/route"
	"github.com/synban/synban/state"
)

// Banned is what a manual ban did.
type Banned struct {
	// Ban is the ban applied: its timeout may be shorter than asked
	// (ban.max_duration).
	Ban rules.Ban
	// Backend is the backend used.
	Backend string
}

// Ban bans subject for d by hand and records it in the state store. A
// prefix broader than the policy's minimum lengths is refused unless force
// (never a /0); a subject the guard protects is refused; both are
// InputErrors and change nothing.
func (e *Engine) Ban(ctx context.Context, p *policy.Policy, subject netip.Prefix, d time.Duration, force bool) (*Banned, error) {
	rs, backend, err := e.ban(ctx, p, []BanRequest{{Subject: subject}}, d, force)
	if err != nil {
		return nil, err
	}
	return &Banned{Ban: rs.Bans[0], Backend: backend}, nil
}

// BanRequest is one subject of a bulk ban.
type BanRequest struct {
	Subject netip.Prefix
	// Where says where the subject came from ("blocklist.txt:12"); a
	// refusal names it. "" for none.
	Where string
}

// ParseBanList reads a list of subjects to ban, as `synban ban --from-file`
// takes it: one address or prefix a line, "#" starting a comment, blank
// lines skipped. label names the source in errors ("blocklist.txt:12: ...").
// A bad line, a line over 64 KiB or an empty list is an *InputError.
func ParseBanList(r io.Reader, label string) ([]BanRequest, error) {
	var reqs []BanRequest
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		pfx, err := policy.ParseAllow(line)
		if err != nil {
			return nil, BadInput("%s:%d: %q: %v", label, n, line, err)
		}
		reqs = append(reqs, BanRequest{Subject: pfx, Where: label + ":" + strconv.Itoa(n)})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, BadInput("%s:%d: line too long", label, n+1)
		}
		return nil, fmt.Errorf("read %s: %w", label, err)
	}
	if len(reqs) == 0 {
		return nil, BadInput("%s: no address or prefix to ban", label)
	}
	return reqs, nil
}

// BulkBanned is what a bulk ban did.
type BulkBanned struct {
	// Bans are the bans applied (their timeouts may be shorter than asked:
	// ban.max_duration).
	Bans []rules.Ban
	// Covered counts subjects inside another subject of the same request:
	// banned through it, not on their own.
	Covered int
	// Backend is the backend used.
	Backend string
}

// BanAll bans every subject of reqs for d by hand in one transaction and
// records them in the state store. Each subject passes the rules of Ban
// (the minimum prefix lengths unless force, never a /0, the guard) and the
// ruleset's limits (max_entries); the first one refused is an InputError
// naming its Where, and nothing is applied. A subject inside another of
// the list is banned through it.
func (e *Engine) BanAll(ctx context.Context, p *policy.Policy, reqs []BanRequest, d time.Duration, force bool) (*BulkBanned, error) {
	if len(reqs) == 0 {
		return nil, BadInput("nothing to ban")
	}
	rs, backend, err := e.ban(ctx, p, reqs, d, force)
	if err != nil {
		return nil, err
	}
	return &BulkBanned{Bans: rs.Bans, Covered: len(reqs) - len(rs.Bans), Backend: backend}, nil
}

// ban is Ban and BanAll: check every request, compile, apply in one
// transaction, record. It returns the ruleset applied and the backend.
func (e *Engine) ban(ctx context.Context, p *policy.Policy, reqs []BanRequest, d time.Duration, force bool) (*rules.Ruleset, string, error) {
	g, err := e.Guard(p)
	if err != nil {
		return nil, "", err
	}
	verdicts := make([]detect.Verdict, len(reqs))
	for i, r := range reqs {
		subject := r.Subject
		at := ""
		if r.Where != "" {
			at = r.Where + ": "
		}
		reason := "manual ban"
		if why, broad := rules.TooBroad(p, subject); broad {
			switch {
			case subject.Bits() == 0:
				return nil, "", BadInput("%srefusing to ban %s: %s, even with --force", at, subject, why)
			case !force:
				return nil, "", BadInput("%srefusing to ban %s: %s; add --force to ban it anyway", at, subject, why)
			}
			// Compile, now and when the ban is restored from the state
			// store (which keeps the flag), lets a broad ban through only
			// when forced.
			reason = rules.ForcedBanReason
		}
		if why, protected := g.Protects(subject); protected {
			return nil, "", BadInput("%srefusing to ban %s: %s", at, subject, why)
		}
		verdicts[i] = detect.Verdict{Subject: subject, BanFor: d, Reason: reason, Sources: 1, Forced: reason == rules.ForcedBanReason}
	}
	rs, omitted, err := rules.Compile(p, Offences(verdicts), g)
	if err != nil {
		return nil, "", fmt.Errorf("compile ruleset: %w", err)
	}
	if om, bad := refused(rs, omitted); bad {
		at := ""
		if w := reqs[om.Index].Where; w != "" {
			at = w + ": "
		}
		return nil, "", BadInput("%srefusing to ban %s: %s", at, om.Prefix, om.Why)
	}
	forced := make(map[netip.Prefix]bool)
	for _, v := range verdicts {
		if v.Forced {
			forced[policy.Canonical(v.Subject)] = true
		}
	}
	fl, err := e.openFleet(p) // [crowdsec] push: a manual ban is shared like any other
	if err != nil {
		return nil, "", err
	}
	l, err := e.lockAndOpen(ctx, p)
	if err != nil {
		return nil, "", err
	}
	defer l.release()
	store, b, choice := l.store, l.backend, l.choice
	if _, err := b.Apply(ctx, rs); err != nil {
		return nil, "", fmt.Errorf("apply ban with %s: %w", choice.Name, err)
	}
	e.syncXDP(ctx, p, b)
	now := e.now()
	if err := store.Edit(func(t *state.Tx) error {
		for _, ban := range rs.Bans {
			if err := t.Upsert(state.Ban{Prefix: ban.Prefix, Since: now, Until: now.Add(ban.Timeout), Reason: ban.Reason, Rule: "manual", Backend: choice.Name, Forced: forced[ban.Prefix]}); err != nil {
				return err
			}
		}
		return t.SetApplied(nil) // the next run reconciles in full
	}); err != nil {
		return nil, "", fmt.Errorf("record ban: %w", err)
	}
	for i, ban := range rs.Bans {
		if i == MaxListed {
			e.log.Info("more bans", "count", len(rs.Bans)-MaxListed, "backend", choice.Name)
			break
		}
		e.log.Info("ban", "subject", ban.Prefix, "rule", "manual", "for", ban.Timeout, "asked", d, "reason", ban.Reason, "backend", choice.Name)
	}
	if len(rs.Bans) <= maxPushedByHand {
		fl.push(ctx, &Decision{Report: detect.Report{Verdicts: verdicts}, Ruleset: rs})
	} else if fl.pushing() {
		e.log.Info("bulk ban not pushed to CrowdSec: import a blocklist into the LAPI itself", "bans", len(rs.Bans), "max", maxPushedByHand)
	}
	return rs, choice.Name, nil
}

// maxPushedByHand is the most bans one `synban ban` pushes to CrowdSec: a
// blocklist of 100,000 lines is one alert per ban, which a LAPI on sqlite
// refuses ("database is locked"); such lists belong in the LAPI directly.
const maxPushedByHand = 1000

// refused returns the first verdict Compile left out that is not banned
// anyway through a broader subject of the same request.
func refused(rs *rules.Ruleset, omitted rules.Omitted) (rules.Omission, bool) {
	if len(omitted) == 0 {
		return rules.Omission{}, false
	}
	banned := make(map[netip.Prefix]bool, len(rs.Bans))
	for _, b := range rs.Bans {
		banned[b.Prefix] = true
	}
	for _, om := range omitted {
		covered := false
		for bits := om.Prefix.Bits() - 1; bits >= 0 && om.Prefix.IsValid(); bits-- {
			if banned[netip.PrefixFrom(om.Prefix.Addr(), bits).Masked()] {
				covered = true
				break
			}
		}
		if !covered {
			return om, true
		}
	}
	return rules.Omission{}, false
}

// Unban removes the bans of subjects from the kernel and the state store
// (the history stays for escalation). It returns how many the kernel held
// and the backend used.
func (e *Engine) Unban(ctx context.Context, p *policy.Policy, subjects []netip.Prefix) (int, string, error) {
	fl, err := e.openFleet(p) // [crowdsec] push: the unban deletes synban's decision
	if err != nil {
		return 0, "", err
	}
	l, err := e.lockAndOpen(ctx, p)
	if err != nil {
		return 0, "", err
	}
	defer l.release()
	store, b, choice := l.store, l.backend, l.choice
	n, err := b.Unban(ctx, subjects)
	if err != nil {
		return 0, "", fmt.Errorf("unban with %s: %w", choice.Name, err)
	}
	e.syncXDP(ctx, p, b)
	// before holds the bans removed, as they were (the fleet needs their
	// origin).
	before := &state.State{}
	if err := store.Edit(func(t *state.Tx) error {
		for _, sub := range subjects {
			// Log what the ban was: its rule and how long it had lasted.
			attrs := []any{"subject", sub, "backend", choice.Name}
			old, ok, err := t.Find(sub)
			if err != nil {
				return err
			}
			if ok {
				attrs = append(attrs, "rule", old.Rule, "lasted", e.now().Sub(old.Since).Round(time.Second), "reason", old.Reason)
				before.Bans = append(before.Bans, old)
			}
			e.log.Info("unban", attrs...)
			if _, err := t.Remove(sub); err != nil {
				return err
			}
		}
		return t.SetApplied(nil) // the next run reconciles in full
	}); err != nil {
		return 0, "", fmt.Errorf("record unban: %w", err)
	}
	fl.unbanFleet(ctx, before, subjects)
	return n, choice.Name, nil
}

// Flush removes everything synban created from the kernel and forgets the
// bans so the next run does not restore them; the history stays for
// escalation. It returns the backend used.
func (e *Engine) Flush(ctx context.Context, p *policy.Policy) (string, error) {
	l, err := e.lockAndOpen(ctx, p)
	if err != nil {
		return "", err
	}
	defer l.release()
	store, b, choice := l.store, l.backend, l.choice
	if err := b.Flush(ctx); err != nil {
		return "", fmt.Errorf("flush %s: %w", choice.Name, err)
	}
	if err := e.flushXDP(); err != nil {
		return "", fmt.Errorf("flush the XDP fast path: %w", err)
	}
	if err := store.Edit(func(t *state.Tx) error {
		if err := t.RemoveAll(); err != nil {
			return err
		}
		return t.SetApplied(nil)
	}); err != nil {
		return "", fmt.Errorf("clear bans in state: %w", err)
	}
	e.log.Info("flushed", "backend", choice.Name)
	return choice.Name, nil
}

// Status is what the kernel holds of synban's, compared with the store.
type Status struct {
	Choice   backends.Choice
	Bans     []rules.ActiveBan
	Counters []rules.Counter
	// Missing lists what of the backend's structure the kernel lacks.
	Missing []string
	// StateLoaded is set when a state store exists.
	StateLoaded bool
	// Stored counts the bans the next run would restore from the store;
	// Absent are those of them no ban in the kernel covers.
	Stored int
	Absent []netip.Prefix
	// Notes say in words what the kernel lacks and what the next run does.
	Notes []string
	// XDP is the XDP fast path's pinned state; nil when nothing is pinned.
	XDP *XDPState
}

// Status reads the backend's bans and drop counters and says what the
// kernel lacks of what the state store holds. It writes nothing: no state
// directory is created (the store is read only when it exists), no store
// updated, and the backend is opened read-only (no table, chain, set or
// route created, expired or removed).
func (e *Engine) Status(ctx context.Context, p *policy.Policy) (*Status, error) {
	st, err := readState(e.opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("read state store: %w", err)
	}
	var store *state.Store
	if st != nil {
		// The state file exists, so Open creates nothing; the route backend
		// reads its reasons and times from it.
		if store, err = state.Open(e.opts.StateDir); err != nil {
			return nil, fmt.Errorf("open state store: %w", err)
		}
	}
	bo := e.backendOptions(p, store)
	bo.ReadOnly = true
	b, choice, err := e.open(ctx, e.BackendName(p), bo)
	if err != nil {
		return nil, fmt.Errorf("choose a firewall backend: %w", err)
	}
	out := &Status{Choice: choice, StateLoaded: st != nil}
	if out.Bans, err = b.Bans(ctx); err != nil {
		return nil, fmt.Errorf("list bans with %s: %w", choice.Name, err)
	}
	if out.Counters, err = b.Counters(ctx); err != nil {
		return nil, fmt.Errorf("read counters with %s: %w", choice.Name, err)
	}
	if in, ok := b.(backends.Inspector); ok {
		if out.Missing, err = in.Missing(ctx); err != nil {
			return nil, fmt.Errorf("inspect %s: %w", choice.Name, err)
		}
	}
	gap := compareStored(st, out.Bans, e.now())
	out.Stored, out.Absent = gap.stored, gap.absent
	out.Notes = gap.notes(choice.Name, out.Missing, p.Route.Protocol)
	if out.XDP, err = e.ReadXDP(p); err != nil {
		// The firewall's part stands; say what could not be read.
		out.Notes = append(out.Notes, "xdp: cannot read the fast path's maps: "+err.Error())
	}
	return out, nil
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
			return prefixes.Holds(k.Prefix, v.Subject)
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
