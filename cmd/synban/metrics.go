package main

import (
	"context"
	"time"

	"github.com/synban/synban/internal/metrics"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/state"
)

// runReport is what a successful run hands to finishRun.
type runReport struct {
	Start         time.Time
	Decision      *decision
	Result        rules.Result
	Backend       rules.Backend
	BackendName   string
	Store         *state.Store
	Expired       int
	SysctlChanges int
}

// finishRun is called by apply once a run has succeeded: it writes the
// metrics file when the policy names one. A metrics failure is logged, not
// returned: the bans are in place.
func (a *app) finishRun(ctx context.Context, r runReport) {
	path := r.Decision.Policy.Metrics.Textfile
	if path == "" {
		return
	}
	if err := metrics.Write(path, a.runMetrics(ctx, r)); err != nil {
		a.log.Error("could not write the metrics file", "path", path, "err", err)
	}
}

// runMetrics gathers the metrics of a successful run: the decision, the
// active bans from the state store and the backend's drop counters.
func (a *app) runMetrics(ctx context.Context, r runReport) metrics.Run {
	d := r.Decision
	m := metrics.Run{
		Start: r.Start, Elapsed: time.Since(r.Start), Backend: r.BackendName,
		Samples: len(d.Samples), Sources: d.Report.Sources, Verdicts: len(d.Report.Verdicts),
		Added: r.Result.Added, Expired: r.Expired, Class: d.Class, SysctlChanges: r.SysctlChanges,
	}
	if st, err := r.Store.Load(); err != nil {
		a.log.Warn("metrics: cannot read the active bans", "err", err)
	} else {
		for _, b := range st.Active(time.Now()) {
			reason := b.Rule
			if reason == "" && b.Reason == "manual ban" {
				reason = "manual"
			}
			backend := b.Backend
			if backend == "" {
				backend = r.BackendName
			}
			m.Bans = append(m.Bans, metrics.Ban{Backend: backend, Reason: reason})
		}
	}
	if c, err := r.Backend.Counters(ctx); err != nil {
		a.log.Warn("metrics: cannot read the drop counters", "backend", r.BackendName, "err", err)
	} else {
		m.Drops = c
	}
	return m
}
