package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/synban/synban/engine"
	"github.com/synban/synban/templates"
)

func flagsRender(fs *flag.FlagSet, o *options) {
	flagsCommon(fs, o)
	fs.StringVar(&o.binary, "binary", "/usr/local/bin/synban", "systemd, cron: the synban program the units run")
	fs.StringVar(&o.every, "every", "1m", "systemd, cron: time between runs of synban.timer and of cron (cron: whole minutes)")
	fs.StringVar(&o.watchEvery, "watch-every", defaultEvery.String(), "systemd: synban-watch.service's --every")
	fs.StringVar(&o.outputDir, "output-dir", "", "systemd: write the units into this directory (e.g. /etc/systemd/system) instead of printing them")
	fs.StringVar(&o.cronUser, "user", "root", "cron: the user field of the /etc/cron.d line; \"\" leaves it out, for crontab -e")
}

// unattended turns render's flags into the templates' description of a run.
func unattended(o *options) (templates.Unattended, error) {
	u := templates.Unattended{Binary: o.binary, CronUser: o.cronUser, LogLevel: o.logLevel}
	if o.config != "" {
		abs, err := filepath.Abs(o.config)
		if err != nil {
			return u, badInput("-c %q: %v", o.config, err)
		}
		// The policy must load now, not at 3 a.m. from a timer.
		if _, err := loadPolicy(&options{config: abs}); err != nil {
			return u, err
		}
		u.Config = abs
	}
	if o.stateDir != "" && filepath.Clean(o.stateDir) != engine.DefaultStateDir {
		abs, err := filepath.Abs(o.stateDir)
		if err != nil {
			return u, badInput("--state-dir %q: %v", o.stateDir, err)
		}
		u.StateDir = abs
	}
	var err error
	if u.Every, err = time.ParseDuration(o.every); err != nil {
		return u, badInput("--every %q: want a duration such as 1m or 5m", o.every)
	}
	if u.WatchEvery, err = time.ParseDuration(o.watchEvery); err != nil {
		return u, badInput("--watch-every %q: want a duration such as 10s", o.watchEvery)
	}
	return u, nil
}

// renderSystemd prints synban.service, synban.timer and
// synban-watch.service, or writes them into --output-dir.
func renderSystemd(_ context.Context, a *app, o *options) error {
	u, err := unattended(o)
	if err != nil {
		return err
	}
	units, err := templates.SystemdUnits(u)
	if err != nil {
		return usageError{err}
	}
	if o.outputDir == "" {
		for i, unit := range units {
			if i > 0 {
				fmt.Fprintln(a.stdout)
			}
			fmt.Fprint(a.stdout, unit.Text)
		}
		return nil
	}
	for _, unit := range units {
		path := filepath.Join(o.outputDir, unit.Name)
		if err := os.WriteFile(path, []byte(unit.Text), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		fmt.Fprintf(a.stdout, "wrote %s\n", path)
	}
	return nil
}

// renderCron prints the /etc/cron.d file.
func renderCron(_ context.Context, a *app, o *options) error {
	if o.outputDir != "" {
		return badInput("--output-dir is for systemd; redirect cron's output: synban render cron > /etc/cron.d/synban")
	}
	u, err := unattended(o)
	if err != nil {
		return err
	}
	if err := templates.Cron(a.stdout, u); err != nil {
		return usageError{err}
	}
	return nil
}
