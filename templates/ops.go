package templates

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/template"
	"time"
)

// Unattended describes how synban runs unattended: the program, the
// arguments every run takes, and how often it runs.
type Unattended struct {
	// Binary is the synban program's absolute path, e.g. /usr/local/bin/synban.
	Binary string
	// Config is the policy file's absolute path; "" runs the embedded default.
	Config string
	// StateDir is the state directory; "" is synban's default.
	StateDir string
	// Every is the time between runs of the timer and of cron (cron: whole
	// minutes dividing an hour).
	Every time.Duration
	// WatchEvery is synban-watch.service's --every.
	WatchEvery time.Duration
	// CronUser is the user field of the /etc/cron.d line; "" leaves the
	// field out, for a crontab edited with crontab -e.
	CronUser string
	// LogLevel is the runs' --log-level. Empty means "info" in the systemd
	// units (one summary line per run, and every ban and expiry, into the
	// journal) and "warn" in cron (whatever a run prints, cron mails: a run
	// that went well must print nothing).
	LogLevel string
}

// Unit is one rendered systemd unit.
type Unit struct {
	// Name is the unit's file name, such as "synban.timer".
	Name string
	// Text is the unit file.
	Text string
}

// safePath is what a path may contain to stand unquoted in an ExecStart=
// line and a crontab line: no white space, quotes, backslashes, '%' (a
// specifier to systemd, a newline to cron) or '$'.
var safePath = regexp.MustCompile(`^/[A-Za-z0-9._/+:@,=-]*$`)

// opsData is what the systemd and cron templates render.
type opsData struct {
	Binary, Args, LogLevel, User, Schedule string
	Every, WatchEvery, EverySec            string
}

func (u Unattended) data() (*opsData, error) {
	if !safePath.MatchString(u.Binary) {
		return nil, fmt.Errorf("binary %q: want an absolute path of letters, digits and ._/+:@,=-", u.Binary)
	}
	d := &opsData{Binary: u.Binary, LogLevel: u.LogLevel, User: u.CronUser}
	if d.LogLevel == "" {
		d.LogLevel = "info"
	}
	switch d.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", u.LogLevel)
	}
	for _, a := range []struct{ flag, path string }{{"-c", u.Config}, {"--state-dir", u.StateDir}} {
		if a.path == "" {
			continue
		}
		if !safePath.MatchString(a.path) {
			return nil, fmt.Errorf("%s %q: want an absolute path of letters, digits and ._/+:@,=-", a.flag, a.path)
		}
		d.Args += " " + a.flag + " " + a.path
	}
	if u.CronUser != "" && !regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`).MatchString(u.CronUser) {
		return nil, fmt.Errorf("cron user %q: want a user name", u.CronUser)
	}
	if u.Every < time.Second || u.Every%time.Second != 0 {
		return nil, fmt.Errorf("every %s: want whole seconds, at least 1s", u.Every)
	}
	if u.WatchEvery < 100*time.Millisecond {
		return nil, fmt.Errorf("watch every %s: want at least 100ms", u.WatchEvery)
	}
	d.Every, d.WatchEvery = ShortDuration(u.Every), ShortDuration(u.WatchEvery)
	d.EverySec = fmt.Sprintf("%ds", u.Every/time.Second)
	return d, nil
}

// ShortDuration renders d as Go does, without zero trailing units: "1m"
// rather than "1m0s", "2h" rather than "2h0m0s".
func ShortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// systemdUnits names the units SystemdUnits renders and their templates.
var systemdUnits = []struct{ name, tmpl string }{
	{"synban.service", "systemd-service.tmpl"},
	{"synban.timer", "systemd-timer.tmpl"},
	{"synban-watch.service", "systemd-watch.tmpl"},
	{"synban-upstream.service", "systemd-upstream.tmpl"},
}

// SystemdUnits renders synban's systemd units: synban.service (one run,
// Type=oneshot, exit code 3 counted as success) started by synban.timer
// every u.Every, synban-watch.service, the long-running alternative
// (synban watch), which conflicts with both, and synban-upstream.service,
// the upstream BGP speaker (synban upstream) that either hands its
// announcements to.
func SystemdUnits(u Unattended) ([]Unit, error) {
	d, err := u.data()
	if err != nil {
		return nil, fmt.Errorf("render systemd units: %w", err)
	}
	out := make([]Unit, 0, len(systemdUnits))
	for _, su := range systemdUnits {
		text, err := renderOps(su.tmpl, d)
		if err != nil {
			return nil, err
		}
		out = append(out, Unit{Name: su.name, Text: text})
	}
	return out, nil
}

// Cron writes an /etc/cron.d file running synban every u.Every, which must
// be whole minutes dividing an hour (1m, 2m, 5m, ... 30m) or one hour. The
// line has no pipe, so its exit status is synban's; cron mails its output.
func Cron(w io.Writer, u Unattended) error {
	d, err := u.data()
	if err != nil {
		return fmt.Errorf("render cron: %w", err)
	}
	m := int(u.Every / time.Minute)
	switch {
	case u.Every%time.Minute != 0 || m < 1 || 60%m != 0 && m != 60:
		return fmt.Errorf("render cron: every %s: cron runs in whole minutes dividing an hour (1m, 2m, 5m, 10m, 15m, 30m) or 1h", ShortDuration(u.Every))
	case m == 1:
		d.Schedule = "* * * * *"
	case m == 60:
		d.Schedule = "0 * * * *"
	default:
		d.Schedule = fmt.Sprintf("*/%d * * * *", m)
	}
	if u.LogLevel == "" {
		d.LogLevel = "warn"
	}
	text, err := renderOps("cron.tmpl", d)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, text)
	return err
}

func renderOps(name string, d *opsData) (string, error) {
	t, err := template.New(name).Option("missingkey=error").ParseFS(files, name)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	return b.String(), nil
}
