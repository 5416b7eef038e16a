package templates

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func unattendedFor(every time.Duration) Unattended {
	return Unattended{Binary: "/usr/local/bin/synban", Config: "/etc/synban/policy.toml", Every: every, WatchEvery: 10 * time.Second, CronUser: "root"}
}

func TestCronSchedules(t *testing.T) {
	for every, want := range map[time.Duration]string{
		time.Minute:      "* * * * * root /usr/local/bin/synban run -c /etc/synban/policy.toml --log-level warn\n",
		2 * time.Minute:  "*/2 * * * * root ",
		15 * time.Minute: "*/15 * * * * root ",
		30 * time.Minute: "*/30 * * * * root ",
		time.Hour:        "0 * * * * root ",
	} {
		var b bytes.Buffer
		if err := Cron(&b, unattendedFor(every)); err != nil {
			t.Fatalf("Cron every %s: %v", every, err)
		}
		if !strings.Contains(b.String(), "\n"+want) {
			t.Errorf("Cron every %s lacks a line starting %q:\n%s", every, want, b.String())
		}
	}
	for _, every := range []time.Duration{30 * time.Second, 90 * time.Second, 7 * time.Minute, 45 * time.Minute, 2 * time.Hour} {
		if err := Cron(&bytes.Buffer{}, unattendedFor(every)); err == nil {
			t.Errorf("Cron accepted every %s, which cron cannot express", every)
		}
	}
}

// TestCronKeepsExitStatus runs the rendered cron command with /bin/sh, as
// cron does, on a stand-in for synban that exits 2: the command's status must
// be 2, not that of a pipe's last program.
func TestCronKeepsExitStatus(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "synban")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"synban run: bad policy\" >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	u := unattendedFor(time.Minute)
	u.Binary = bin
	var b bytes.Buffer
	if err := Cron(&b, u); err != nil {
		t.Fatal(err)
	}
	var job string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "* * * * * ") {
			job = l
		}
	}
	// Five schedule fields and the user field, then the command.
	f := strings.SplitN(job, " ", 7)
	if len(f) != 7 || f[5] != "root" {
		t.Fatalf("no job line in:\n%s", b.String())
	}
	cmd := exec.Command(sh, "-c", f[6])
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("cron command %q: %v (output %q); want exit status 2, synban's", f[6], err, out)
	}
	if !strings.Contains(string(out), "bad policy") {
		t.Errorf("cron command %q hid synban's message from cron's mail: output %q", f[6], out)
	}
}

func TestSystemdUnits(t *testing.T) {
	units, err := SystemdUnits(unattendedFor(90 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range units {
		names = append(names, u.Name)
		if strings.Contains(u.Text, "<no value>") {
			t.Errorf("%s has an unfilled field:\n%s", u.Name, u.Text)
		}
	}
	if strings.Join(names, " ") != "synban.service synban.timer synban-watch.service synban-upstream.service" {
		t.Fatalf("units %v", names)
	}
	for i, want := range []string{
		"ExecStart=/usr/local/bin/synban run -c /etc/synban/policy.toml --log-level info\n",
		"OnUnitActiveSec=90s\n",
		"ExecStart=/usr/local/bin/synban watch --every 10s -c /etc/synban/policy.toml --log-level info\n",
		"ExecStart=/usr/local/bin/synban upstream -c /etc/synban/policy.toml --log-level info\n",
	} {
		if !strings.Contains(units[i].Text, want) {
			t.Errorf("%s lacks %q:\n%s", units[i].Name, want, units[i].Text)
		}
	}
}

func TestUnattendedRefusesUnsafePaths(t *testing.T) {
	for _, u := range []Unattended{
		{Binary: "synban"},
		{Binary: "/usr/bin/syn ban"},
		{Binary: "/usr/bin/synban%n"},
		{Binary: "/usr/bin/$HOME"},
		{Binary: "/usr/bin/synban", Config: "/etc/policy\".toml"},
		{Binary: "/usr/bin/synban", StateDir: "relative/dir"},
		{Binary: "/usr/bin/synban", CronUser: "root x"},
		{Binary: "/usr/bin/synban", LogLevel: "loud"},
	} {
		u.Every, u.WatchEvery = time.Minute, 10*time.Second
		if _, err := SystemdUnits(u); err == nil {
			t.Errorf("SystemdUnits accepted %+v", u)
		}
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute: "1m", 90 * time.Second: "1m30s", 2 * time.Hour: "2h", 10 * time.Second: "10s",
		200 * time.Millisecond: "200ms", time.Hour + time.Minute: "1h1m",
	} {
		if got := ShortDuration(d); got != want {
			t.Errorf("ShortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
