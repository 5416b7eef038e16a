package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/synban/synban/engine"
	"github.com/synban/synban/policy"
)

// defaultEvery is watch's default time between cycles.
const defaultEvery = 10 * time.Second

func flagsWait(fs *flag.FlagSet, o *options) {
	fs.DurationVar(&o.wait, "wait", 0, "wait up to this long (e.g. 30s) for another run's state lock instead of exiting with code 3 at once")
}

func flagsLocked(fs *flag.FlagSet, o *options) {
	flagsStatus(fs, o)
	flagsWait(fs, o)
}

func flagsWatch(fs *flag.FlagSet, o *options) {
	flagsLocked(fs, o)
	fs.StringVar(&o.every, "every", defaultEvery.String(), "time between cycles (at least 100ms)")
}

// cmdWatch runs the run cycle every --every until SIGTERM or SIGINT (see
// engine.Watch), re-reading the policy file before every cycle, then
// returns nil.
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
	var reload func() (*policy.Policy, error)
	if o.config != "" {
		reload = func() (*policy.Policy, error) { return loadPolicy(o) }
	}
	a.engine(o).Watch(ctx, every, p, reload, func(out *engine.Outcome) error { return a.printRun(o, out) })
	return nil
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
