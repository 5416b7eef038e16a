package engine

import (
	"context"
	"errors"
	"time"

	"github.com/synban/synban/policy"
)

// Watch runs the cycle (Run) every `every` until ctx is cancelled (SIGTERM
// or SIGINT), then returns. A failed cycle is logged and the loop goes on.
// reload, when not nil, re-reads the policy before every cycle after the
// first, so edits take effect without a restart; an edit that does not
// load is logged and the last good policy p stays in use. after, when not
// nil, is handed each successful cycle's outcome (an error it returns
// counts as the cycle's). A signal ends a cycle that is still sampling or
// waiting at once; a cycle already applying is finished first (see Run), so
// the firewall and the state store stay consistent.
func (e *Engine) Watch(ctx context.Context, every time.Duration, p *policy.Policy, reload func() (*policy.Policy, error), after func(*Outcome) error) {
	e.log.Info("watch started", "every", every, "policy", p.Source, "state_dir", e.opts.StateDir)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for cycle := 1; ; cycle++ {
		if cycle > 1 && reload != nil {
			if np, err := reload(); err != nil {
				e.log.Error("policy does not load; keeping the last good one", "err", err)
			} else {
				p = np
			}
		}
		out, err := e.Run(ctx, p, time.Now())
		if err == nil && after != nil {
			err = after(out)
		}
		if err != nil {
			switch {
			case ctx.Err() != nil:
				e.log.Info("cycle interrupted", "cycle", cycle, "err", err)
			case errors.Is(err, ErrLocked):
				e.log.Warn("cycle skipped: another run holds the state lock", "cycle", cycle, "err", err)
			default:
				e.log.Error("cycle failed", "cycle", cycle, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			e.log.Info("watch stopped", "cycles", cycle, "why", context.Cause(ctx))
			return
		case <-tick.C:
		}
	}
}
