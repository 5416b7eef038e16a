package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backends"
	"github.com/synban/synban/state"
)

// The generation shortcut. A backend with a generation id (nftables) moves
// it on every committed change to its ruleset, by anyone: an outside flush,
// a reload, another tool, `nft add/delete element`, synban's own ban, unban
// and flush. Elements timing out and the packet path filling a dynamic set
// (the SYN meter, the connection cap) do not move it. After a run that
// reconciled the kernel in full, the store records the generation that
// apply left (state.Applied) and the hash of the structure applied. The
// next run reads the generation first; when it is the same, the structure
// hashes the same and the run decides no ban, the kernel still holds what
// that run left, less what timed out, exactly as the store says: the run
// neither compiles the stored bans again nor reads the kernel's elements
// back nor writes the store (unless some of its bans expired). Any other
// case is the full reconcile.

// genCheck is the backend's generation as a run found it before deciding.
type genCheck struct {
	backend string
	gen     uint32
	known   bool
}

// generation reads the backend's generation; unknown when the backend has
// none or it cannot be read (the run then reconciles in full).
func (e *Engine) generation(ctx context.Context, b rules.Backend, name string) genCheck {
	g := genCheck{backend: name}
	gr, ok := b.(rules.Generationer)
	if !ok {
		return g
	}
	n, err := gr.Generation(ctx)
	if err != nil {
		e.log.Debug("ruleset generation unreadable; reconciling in full", "backend", name, "err", err)
		return g
	}
	g.gen, g.known = n, true
	return g
}

// keep returns the test decideWith asks when nothing was decided: does the
// store's Applied record match this generation, the structure hash and the
// number of bans stored? nil when no record or no generation. It reads the
// store's metadata only (state.Head).
func (g genCheck) keep(h state.Head) func(string) bool {
	if !g.known || h.Applied == nil {
		return nil
	}
	a := *h.Applied
	return func(structure string) bool {
		return structure != "" && a.Backend == g.backend && a.Generation == g.gen && a.Ruleset == structure && a.Bans == h.Bans
	}
}

// applied is the record to store after a full apply, in s as the run
// leaves it: the generation the backend vouches its apply left, or nil (no
// generation, a change by someone else during the apply, or bans left out
// of the ruleset, which a later run must retry when room frees up).
func (g genCheck) applied(b rules.Backend, d *Decision, s *state.State) *state.Applied {
	gr, ok := b.(rules.Generationer)
	if !ok || d.Structure == "" || len(d.Omitted) > 0 {
		return nil
	}
	n, ok := gr.AppliedGeneration()
	if !ok {
		return nil
	}
	return &state.Applied{Backend: g.backend, Generation: n, Ruleset: d.Structure, Bans: len(s.Bans)}
}

// unchanged completes a run whose decision is Unchanged: kernel settings
// as in any run, the store's expired bans dropped (the kernel timed them
// out itself; the store is written only then), metrics, the summary. It
// reads the bans that end within a second (and those that never end)
// through the store's expiry index, not the others: head says how many
// there are.
func (e *Engine) unchanged(ctx context.Context, p *policy.Policy, d *Decision, choice backends.Choice, b rules.Backend,
	store *state.Store, head state.Head, now, start time.Time) (*Outcome, error) {
	due, expired := 0, 0
	if err := store.View(func(t *state.Tx) error {
		return t.Expiring(now.Add(time.Second), func(b state.Ban) error {
			due++
			if b.Expired(now) {
				expired++
			}
			return nil
		})
	}); err != nil {
		return nil, fmt.Errorf("read expiring bans: %w", err)
	}
	d.Restored = head.Bans - due // as a full run counts them: see storedVerdicts
	out := &Outcome{Choice: choice, Decision: d}
	out.SysctlChanges = e.hardenKernel(p)
	e.spoofSysctls(p, d.Class)
	if expired > 0 {
		if err := store.Edit(func(t *state.Tx) error {
			var err error
			if out.Expired, err = e.expireTx(t, now); err != nil {
				return err
			}
			a, err := t.Applied()
			if err != nil || a == nil {
				return err
			}
			if a.Bans, err = t.Bans(); err != nil { // the kernel timed them out itself
				return err
			}
			return t.SetApplied(a)
		}); err != nil {
			return nil, fmt.Errorf("record expired bans in %s: %w", store.Path(), err)
		}
	}
	e.logDecision(d)
	out.Upstream = e.handOffUpstream(d)
	out.XDP = e.syncXDP(ctx, p, b) // expired keys leave the maps
	e.writeMetrics(ctx, out, b, store, start)
	e.log.Info("run done", "backend", choice.Name, "sampler", d.Sampler, "sources", d.Report.Sources, "flood", d.Class.Kind,
		"verdicts", 0, "unchanged", true, "restored", d.Restored, "expired", out.Expired, "spared", d.Report.SparedCount(),
		"duration", time.Since(start).Round(time.Millisecond))
	return out, nil
}

// expire drops the expired bans from s, logs each and returns how many.
func (e *Engine) expire(s *state.State, now time.Time) int {
	xs := s.Expire(now)
	for _, x := range xs {
		e.log.Info("ban expired", "subject", x.Prefix, "rule", x.Rule, "lasted", x.Until.Sub(x.Since).Round(time.Second), "reason", x.Reason)
	}
	return len(xs)
}

// expireTx drops the expired bans from the store through its expiry index,
// logs each and returns how many.
func (e *Engine) expireTx(t *state.Tx, now time.Time) (int, error) {
	xs, err := t.Expire(now)
	for _, x := range xs {
		e.log.Info("ban expired", "subject", x.Prefix, "rule", x.Rule, "lasted", x.Until.Sub(x.Since).Round(time.Second), "reason", x.Reason)
	}
	return len(xs), err
}
