package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
	"github.com/synban/synban/engine"
	"github.com/synban/synban/templates"
)

func flagsRender(fs *flag.FlagSet, o *options) {
	flagsCommon(fs, o)
	flagsState(fs, o)
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

// renderSystemd returns synban.service, synban.timer and
// synban-watch.service, or writes them into --output-dir.
func renderSystemd(_ context.Context, _ *app, o *options) ([]jsondoc.File, error) {
	u, err := unattended(o)
	if err != nil {
		return nil, err
	}
	units, err := templates.SystemdUnits(u)
	if err != nil {
		return nil, usageError{err}
	}
	files := make([]jsondoc.File, 0, len(units))
	for _, unit := range units {
		f := jsondoc.File{Name: unit.Name, Text: unit.Text}
		if o.outputDir != "" {
			f.Path = filepath.Join(o.outputDir, unit.Name)
			if err := os.WriteFile(f.Path, []byte(unit.Text), 0o644); err != nil {
				return nil, fmt.Errorf("write %s: %w", f.Path, err)
			}
		}
		files = append(files, f)
	}
	return files, nil
}

// renderCron returns the /etc/cron.d file.
func renderCron(_ context.Context, _ *app, o *options) ([]jsondoc.File, error) {
	if o.outputDir != "" {
		return nil, badInput("--output-dir is for systemd; redirect cron's output: synban render cron > /etc/cron.d/synban")
	}
	u, err := unattended(o)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if err := templates.Cron(&b, u); err != nil {
		return nil, usageError{err}
	}
	return []jsondoc.File{{Name: "synban", Text: b.String()}}, nil
}
