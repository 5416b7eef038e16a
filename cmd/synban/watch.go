package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/synban/synban/internal/metrics"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules/state"
)

// defaultEvery is watch's default time between cycles.
const defaultEvery = 10 * time.Second

func flagsWait(fs *flag.FlagSet, o *options) {
	fs.DurationVar(&o.wait, "wait", 0, "wait up to this long (e.g. 30s) for another run's state lock instead of exiting with code 3 at once")
}

func flagsLocked(fs *flag.FlagSet, o *options) {
	flagsBackend(fs, o)
	flagsWait(fs, o)
}

func flagsWatch(fs *flag.FlagSet, o *options) {
	flagsLocked(fs, o)
	fs.StringVar(&o.every, "every", defaultEvery.String(), "time between cycles (at least 100ms)")
}

// runCycle is one unattended run: apply, then, when the run failed for a
// reason other than the lock (another run is doing the work), record the
// failure in the metrics file. A successful run writes its metrics itself
// (see finishRun).
func (a *app) runCycle(ctx context.Context, o *options, p *policy.Policy, now time.Time) error {
	start := time.Now()
	err := a.apply(ctx, o, p, now)
	// An interrupted run is not a failure of the host's defence: the metrics
	// keep the last run's outcome.
	if err != nil && ctx.Err() == nil && !errors.Is(err, state.ErrLocked) && p.Metrics.Textfile != "" {
		if merr := metrics.Write(p.Metrics.Textfile, metrics.Run{Start: start, Elapsed: time.Since(start), Err: err}); merr != nil {
			a.log.Error("could not write the metrics file", "path", p.Metrics.Textfile, "err", merr)
		}
	}
	return err
}

// cmdWatch runs the run cycle every --every until ctx is cancelled
// (SIGTERM or SIGINT), then returns nil. A failed cycle is logged and the
// loop goes on. The policy is re-read before every cycle, so edits take
// effect without a restart; an edit that does not load is logged and the
// last good policy stays in use. A signal ends a cycle that is still
// sampling or waiting at once; a cycle already applying is finished first
// (see apply), so the firewall and the state store stay consistent.
func cmdWatch(ctx context.Context, a *app, o *options, args []string) error {
	if err := noArgs("watch", args); err != nil {
		return err
	}
	if err := checkBackendFlag(o.backend); err != nil {
		return err
	}
	every, err := time.ParseDuration(o.every)
	if err != nil || every < 100*time.Millisecond {
		return badInput("--every %q: want a duration of at least 100ms such as 10s or 1m", o.every)
	}
	p, err := loadPolicy(o)
	if err != nil {
		return err
	}
	a.log.Info("watch started", "every", every, "policy", p.Source, "state_dir", o.stateDir)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for cycle := 1; ; cycle++ {
		if cycle > 1 && o.config != "" {
			if np, err := loadPolicy(o); err != nil {
				a.log.Error("policy does not load; keeping the last good one", "err", err)
			} else {
				p = np
			}
		}
		if err := a.runCycle(ctx, o, p, time.Now()); err != nil {
			switch {
			case ctx.Err() != nil:
				a.log.Info("cycle interrupted", "cycle", cycle, "err", err)
			case errors.Is(err, state.ErrLocked):
				a.log.Warn("cycle skipped: another run holds the state lock", "cycle", cycle, "err", err)
			default:
				a.log.Error("cycle failed", "cycle", cycle, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			a.log.Info("watch stopped", "cycles", cycle, "why", context.Cause(ctx))
			return nil
		case <-tick.C:
		}
	}
}

// logLevel is the level --log-level and -v ask for: warn by default, so an
// unattended run that succeeds prints nothing.
func logLevel(o *options) (slog.Level, error) {
	if o.verbose {
		return slog.LevelDebug, nil
	}
	switch o.logLevel {
	case "", "warn":
		return slog.LevelWarn, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
}
