package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/synban/synban/internal/metrics"
	"github.com/synban/synban/internal/metrics/metricstest"
	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/state"
)

// synbanIn returns a command running synban inside ns: this test binary
// standing in for it, or for `synban upstream` the built binary.
func synbanIn(t *testing.T, ctx context.Context, ns *netnstest.NS, args ...string) *exec.Cmd {
	t.Helper()
	if len(args) > 0 && args[0] == "upstream" {
		// `synban upstream` executes the speaker binary found next to
		// synban: the built synban, which has it beside it, not this test
		// binary.
		return ns.Command(ctx, append([]string{synbanBin.Path(t)}, args...)...)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return ns.Command(ctx, append([]string{"env", "SYNBAN_TEST_ROLE=synban", self}, args...)...)
}

// runIn runs synban inside ns and returns its exit code, stdout and stderr.
func runIn(t *testing.T, ns *netnstest.NS, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := synbanIn(t, ctx, ns, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return exitOf(t, args, err, out.String(), errb.String())
}

func writePolicy(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// requireValidState checks the state database is there and that the store
// loads.
func requireValidState(t *testing.T, dir string) *state.State {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, state.FileName)); err != nil {
		t.Fatalf("state database: %v", err)
	}
	s, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Load()
	if err != nil {
		t.Fatalf("state store does not load: %v", err)
	}
	return st
}

// hasOpen reports whether process pid has path open.
func hasOpen(pid int, path string) bool {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && target == path {
			return true
		}
	}
	return false
}

// TestRunWhileLocked: a run that finds the state lock held exits 3 at once
// and touches nothing; with --wait it waits, and runs once the lock is
// released. The state file is valid afterwards.
func TestRunWhileLocked(t *testing.T) {
	ns := netnstest.New(t, "lock")
	dir := t.TempDir()
	pol := writePolicy(t, "[meter]\nenabled = false\n")
	store, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	release, err := store.Lock(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	code, _, stderr := runIn(t, ns, "run", "-c", pol, "--state-dir", dir, "--backend", "nftables")
	if code != exitLocked || !strings.Contains(stderr, fmt.Sprintf("held by pid %d", os.Getpid())) {
		t.Fatalf("run with the lock held: exit %d, want %d naming the holder; stderr:\n%s", code, exitLocked, stderr)
	}
	if out, err := ns.Run("nft", "list", "tables"); err != nil || strings.Contains(out, "synban") {
		t.Fatalf("a locked-out run touched the firewall: %v: %s", err, out)
	}

	// --wait: the run waits for the lock (it holds the lock file open while
	// it polls), and completes once the test lets go.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := synbanIn(t, ctx, ns, "run", "-c", pol, "--state-dir", dir, "--backend", "nftables", "--wait", "30s")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	lockPath := filepath.Join(dir, state.LockName)
	netnstest.Eventually(t, 20*time.Second, func() bool { return hasOpen(cmd.Process.Pid, lockPath) },
		"synban run --wait never opened the lock file")
	select {
	case err := <-done:
		t.Fatalf("run --wait ended while the lock was held: %v: %s", err, errb.String())
	default:
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run --wait after the lock was released: %v: %s", err, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run --wait did not finish within 30s of the lock's release")
	}
	requireValidState(t, dir)
	if out := ns.MustRun("nft", "list", "tables"); !strings.Contains(out, "synban") {
		t.Fatalf("run --wait did not apply: nft list tables = %q", out)
	}

	// --wait that runs out still exits 3.
	release2, err := store.Lock(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer release2()
	start := time.Now()
	code, _, stderr = runIn(t, ns, "run", "-c", pol, "--state-dir", dir, "--backend", "nftables", "--wait", "300ms")
	if code != exitLocked || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("run --wait 300ms with the lock held: exit %d after %s, want %d after >= 300ms: %s", code, time.Since(start), exitLocked, stderr)
	}
}

// TestTwoRunsAtOnce starts two runs together, each with a sampling window
// of about a second: without --wait one may find the lock taken (exit 3),
// with --wait both succeed; never anything else, and the state stays valid.
func TestTwoRunsAtOnce(t *testing.T) {
	ns := netnstest.New(t, "two")
	dir := t.TempDir()
	pol := writePolicy(t, "[sample]\ncount = 4\ninterval = \"300ms\"\n\n[meter]\nenabled = false\n")
	for _, wait := range []string{"0s", "30s"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var cmds []*exec.Cmd
		var errs []*bytes.Buffer
		for range 2 {
			cmd := synbanIn(t, ctx, ns, "run", "-c", pol, "--state-dir", dir, "--backend", "nftables", "--wait", wait)
			b := &bytes.Buffer{}
			cmd.Stderr = b
			cmds, errs = append(cmds, cmd), append(errs, b)
		}
		for _, c := range cmds {
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
		}
		var codes []int
		for i, c := range cmds {
			err := c.Wait()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != exitOK && !(code == exitLocked && wait == "0s") {
				t.Errorf("--wait %s: run %d exited %d: %s", wait, i, code, errs[i])
			}
			codes = append(codes, code)
		}
		cancel()
		if codes[0] != exitOK && codes[1] != exitOK {
			t.Errorf("--wait %s: neither run succeeded: %v", wait, codes)
		}
		t.Logf("--wait %s: exit codes %v", wait, codes)
		requireValidState(t, dir)
	}
}

// TestWatchStopsOnSIGTERM runs `synban watch --every 200ms` in a namespace,
// waits for two cycles (the metrics file's run time changes), sends
// SIGTERM and expects exit 0 promptly.
func TestWatchStopsOnSIGTERM(t *testing.T) {
	ns := netnstest.New(t, "watch")
	dir := t.TempDir()
	prom := filepath.Join(t.TempDir(), "synban.prom")
	pol := writePolicy(t, fmt.Sprintf("[meter]\nenabled = false\n\n[metrics]\ntextfile = %q\n", prom))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := synbanIn(t, ctx, ns, "watch", "--every", "200ms", "-c", pol, "--state-dir", dir, "--backend", "nftables", "--log-level", "info")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	seen := map[float64]bool{}
	netnstest.Eventually(t, 30*time.Second, func() bool {
		f, err := os.Open(prom)
		if err != nil {
			return false
		}
		defer f.Close()
		fams, err := metricstest.Parse(f)
		if err != nil {
			t.Fatalf("metrics file does not parse: %v", err)
		}
		if ok, _ := metricstest.Value(fams, metrics.Success, nil); ok != 1 {
			t.Fatalf("a watch cycle failed; stderr:\n%s", errb.String())
		}
		if v, ok := metricstest.Value(fams, metrics.LastRun, nil); ok {
			seen[v] = true
		}
		return len(seen) >= 2
	}, "watch did not complete two cycles; stderr:\n%s", &errb)

	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch after SIGTERM: %v, want exit 0; stderr:\n%s", err, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("watch still running 15s after SIGTERM; stderr:\n%s", errb.String())
	}
	t.Logf("watch exited %s after SIGTERM", time.Since(sent).Round(time.Millisecond))
	if n := strings.Count(errb.String(), "run done"); n < 2 {
		t.Errorf("want one summary line per cycle (at least 2), got %d:\n%s", n, errb.String())
	}
	if !strings.Contains(errb.String(), "watch stopped") {
		t.Errorf("no 'watch stopped' line:\n%s", errb.String())
	}
	requireValidState(t, dir)
}

// TestSysctlCheckAndApply: check reports drift without changing anything;
// run changes the settings only with apply = true, logging old and new
// values; the values are read back with sysctl(8), an independent reader.
// All inside a namespace: net.* settings are per namespace.
func TestSysctlCheckAndApply(t *testing.T) {
	netnstest.RequireCommand(t, "sysctl")
	ns := netnstest.New(t, "sysctl")
	ns.Sysctl("net.ipv4.tcp_synack_retries", "5")
	ns.Sysctl("net.core.somaxconn", "4096")
	ns.Sysctl("net.ipv4.tcp_syncookies", "1")
	hostBefore, err := os.ReadFile("/proc/sys/net/ipv4/tcp_synack_retries")
	if err != nil {
		t.Fatal(err)
	}
	read := func(key string) string {
		return strings.TrimSpace(ns.MustRun("sysctl", "-n", key))
	}
	settings := "tcp_syncookies = 1\ntcp_synack_retries = 2\nsomaxconn = 1024\n"
	dir := t.TempDir()

	for _, apply := range []bool{false, true} {
		pol := writePolicy(t, fmt.Sprintf("[meter]\nenabled = false\n\n[sysctl]\napply = %v\n%s", apply, settings))
		code, out, stderr := runIn(t, ns, "check", "-c", pol)
		if code != exitOK {
			t.Fatalf("check: exit %d: %s%s", code, out, stderr)
		}
		for _, want := range []string{
			"sysctl net.ipv4.tcp_synack_retries: drift: 5, policy wants 2",
			"sysctl net.core.somaxconn: drift: 4096, policy wants 1024",
			"sysctl net.ipv4.tcp_syncookies: 1 as the policy wants",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("apply=%v: check output lacks %q:\n%s", apply, want, out)
			}
		}
		code, _, stderr = runIn(t, ns, "run", "-c", pol, "--state-dir", dir, "--backend", "nftables")
		if code != exitOK {
			t.Fatalf("run: exit %d: %s", code, stderr)
		}
		if !apply {
			if got := read("net.ipv4.tcp_synack_retries"); got != "5" {
				t.Fatalf("apply = false, yet run set tcp_synack_retries to %s", got)
			}
			if strings.Contains(stderr, "kernel setting changed") {
				t.Fatalf("apply = false, yet run logged a change:\n%s", stderr)
			}
			continue
		}
		if got := read("net.ipv4.tcp_synack_retries"); got != "2" {
			t.Errorf("tcp_synack_retries = %s after run, want 2", got)
		}
		if got := read("net.core.somaxconn"); got != "1024" {
			t.Errorf("somaxconn = %s after run, want 1024", got)
		}
		for _, want := range []string{"key=net.ipv4.tcp_synack_retries old=5 new=2", "key=net.core.somaxconn old=4096 new=1024"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("run's log lacks %q:\n%s", want, stderr)
			}
		}
		if strings.Contains(stderr, "key=net.ipv4.tcp_syncookies") {
			t.Errorf("run changed a setting that already had the wanted value:\n%s", stderr)
		}
		// No drift left; --json says so too.
		_, out, _ = runIn(t, ns, "check", "-c", pol, "--json")
		var res struct {
			Sysctl []struct {
				Key   string
				Drift bool
			}
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Sysctl) != 3 {
			t.Fatalf("check --json: %v: %s", err, out)
		}
		for _, s := range res.Sysctl {
			if s.Drift {
				t.Errorf("drift left after run: %+v", s)
			}
		}
	}
	if hostAfter, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_synack_retries"); !bytes.Equal(hostBefore, hostAfter) {
		t.Fatalf("the host's tcp_synack_retries changed: %q -> %q", hostBefore, hostAfter)
	}
}

// TestMetricsAfterFlood floods a victim, runs synban there with a metrics
// file, parses it with Prometheus' own parser and checks the values; after
// a second flood and run the ban's drop counter is there too.
func TestMetricsAfterFlood(t *testing.T) {
	requireFloodTools(t)
	prom := filepath.Join(t.TempDir(), "synban.prom")
	l := newLab(t, e2ePolicy+fmt.Sprintf("\n[metrics]\ntextfile = %q\n", prom))
	l.flood(200)
	netnstest.Eventually(t, 10*time.Second, func() bool { return l.halfOpen(attackerAddr) >= 150 },
		"the flood left fewer than 150 half-open entries in the victim")
	before := time.Now()
	if out, err := l.synban("run", "--backend", "nftables"); err != nil {
		t.Fatalf("synban run: %v: %s", err, out)
	}
	after := time.Now()
	fams := parseProm(t, prom)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{metrics.Success, nil, 1},
		{metrics.Samples, nil, 1},
		{metrics.Verdicts, nil, 1},
		{metrics.BansAdded, nil, 1},
		{metrics.Bans, map[string]string{"backend": "nftables", "reason": "syn-flood"}, 1},
		{metrics.Flood, map[string]string{"kind": "real"}, 1},
		{metrics.Flood, map[string]string{"kind": "spoofed"}, 0},
	} {
		if got, ok := metricstest.Value(fams, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if v, _ := metricstest.Value(fams, metrics.HalfOpen, nil); v < 150 {
		t.Errorf("%s = %v, want >= 150 (the flood's half-open entries)", metrics.HalfOpen, v)
	}
	if v, _ := metricstest.Value(fams, metrics.Sources, nil); v < 1 {
		t.Errorf("%s = %v, want >= 1", metrics.Sources, v)
	}
	last, _ := metricstest.Value(fams, metrics.LastSuccess, nil)
	if last < float64(before.Unix()) || last > float64(after.Unix()+1) {
		t.Errorf("%s = %v, want between %d and %d", metrics.LastSuccess, last, before.Unix(), after.Unix()+1)
	}
	if d, _ := metricstest.Value(fams, metrics.Duration, nil); d <= 0 || d > after.Sub(before).Seconds() {
		t.Errorf("%s = %v, want in (0, %v]", metrics.Duration, d, after.Sub(before).Seconds())
	}

	// The ban drops the next flood; the next run's metrics count it.
	l.flood(100)
	netnstest.Eventually(t, 20*time.Second, func() bool {
		if out, err := l.synban("run", "--backend", "nftables"); err != nil {
			t.Fatalf("second run: %v: %s", err, out)
		}
		v, _ := metricstest.Value(parseProm(t, prom), metrics.DropPackets, map[string]string{"backend": "nftables", "rule": "ban_v4"})
		return v >= 100
	}, "%s{rule=ban_v4} did not reach the 100 flood packets", metrics.DropPackets)
}

func parseProm(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("metrics file: %v", err)
	}
	defer f.Close()
	fams, err := metricstest.Parse(f)
	if err != nil {
		t.Fatalf("Prometheus' parser rejects the metrics file: %v", err)
	}
	return fams
}

// TestRenderSystemdVerifies renders the units and has systemd-analyze
// verify them (the ExecStart program must exist: the test binary stands in).
func TestRenderSystemdVerifies(t *testing.T) {
	analyze := netnstest.RequireCommand(t, "systemd-analyze")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pol := filepath.Join("..", "..", "testdata", "policy", "example.toml")
	code, out, stderr := runMain(t, "render", "systemd", "--binary", self, "-c", pol, "--state-dir", "/var/lib/synban-test",
		"--every", "2m", "--watch-every", "15s", "--output-dir", dir)
	if code != exitOK {
		t.Fatalf("render systemd: exit %d: %s%s", code, out, stderr)
	}
	units := []string{"synban.service", "synban.timer", "synban-watch.service", "synban-upstream.service"}
	var paths []string
	for _, u := range units {
		paths = append(paths, filepath.Join(dir, u))
	}
	verify := func(paths ...string) (string, error) {
		cmd := exec.Command(analyze, append([]string{"verify"}, paths...)...)
		cmd.Dir = dir
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := verify(paths...); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v:\n%s", err, out)
	}
	absPol, _ := filepath.Abs(pol)
	text := map[string]string{}
	for i, u := range units {
		b, err := os.ReadFile(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		text[u] = string(b)
	}
	for unit, want := range map[string]string{
		"synban.service":       "ExecStart=" + self + " run -c " + absPol + " --state-dir /var/lib/synban-test --log-level info\n",
		"synban.timer":         "OnUnitActiveSec=120s\n",
		"synban-watch.service": "ExecStart=" + self + " watch --every 15s -c " + absPol + " --state-dir /var/lib/synban-test --log-level info\n",
		// The speaker is a long-running service restarted on failure, not
		// a timer's run.
		"synban-upstream.service": "ExecStart=" + self + " upstream -c " + absPol + " --state-dir /var/lib/synban-test --log-level info\n",
	} {
		if !strings.Contains(text[unit], want) {
			t.Errorf("%s lacks %q:\n%s", unit, want, text[unit])
		}
	}
	// A bad policy (exit 2) stops the watch unit instead of restarting it
	// every RestartSec forever.
	if !strings.Contains(text["synban-watch.service"], "\nRestartPreventExitStatus=2\n") {
		t.Errorf("synban-watch.service restarts on exit 2 (bad policy):\n%s", text["synban-watch.service"])
	}
	if !strings.Contains(text["synban-upstream.service"], "\nRestart=on-failure\n") || strings.Contains(text["synban-upstream.service"], "Timer") {
		t.Errorf("synban-upstream.service is not a service restarted on failure:\n%s", text["synban-upstream.service"])
	}
	if !strings.Contains(text["synban.service"], "SuccessExitStatus=3") {
		t.Errorf("synban.service does not treat exit 3 (lock held) as success:\n%s", text["synban.service"])
	}

	// The check has teeth: verify rejects units whose program is missing.
	bad := t.TempDir()
	if code, _, stderr := runMain(t, "render", "systemd", "--binary", "/nonexistent/synban", "--output-dir", bad); code != exitOK {
		t.Fatalf("render systemd: exit %d: %s", code, stderr)
	}
	if out, err := verify(filepath.Join(bad, "synban.service")); err == nil {
		t.Fatalf("systemd-analyze verify accepted a unit running a missing program:\n%s", out)
	}

	// Without --output-dir the four units are printed.
	code, out, _ = runMain(t, "render", "systemd", "--binary", self)
	if code != exitOK || strings.Count(out, "[Unit]") != 4 {
		t.Fatalf("render systemd to stdout: exit %d:\n%s", code, out)
	}
}

func TestRenderCron(t *testing.T) {
	for _, tc := range []struct {
		args []string
		line string
	}{
		{nil, "* * * * * root /usr/local/bin/synban run --log-level warn"},
		{[]string{"--every", "5m", "--user", "", "--binary", "/opt/synban/bin/synban", "--log-level", "info"},
			"*/5 * * * * /opt/synban/bin/synban run --log-level info"},
		{[]string{"--every", "1h", "--state-dir", "/srv/synban"}, "0 * * * * root /usr/local/bin/synban run --state-dir /srv/synban --log-level warn"},
	} {
		code, out, stderr := runMain(t, append([]string{"render", "cron"}, tc.args...)...)
		if code != exitOK {
			t.Fatalf("render cron %v: exit %d: %s", tc.args, code, stderr)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, "#") && !strings.Contains(strings.SplitN(l, " ", 2)[0], "=") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || lines[0] != tc.line {
			t.Errorf("render cron %v: job lines %q, want exactly %q", tc.args, lines, tc.line)
		}
	}
	// The state dir given as the default is left out.
	if _, out, _ := runMain(t, "render", "cron", "--state-dir", "/var/lib/synban/"); strings.Contains(out, "--state-dir") {
		t.Errorf("default state dir spelled out:\n%s", out)
	}
}

func TestRenderBadInput(t *testing.T) {
	dir := t.TempDir()
	badPol := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(badPol, []byte("[sysctl]\nsomaxconn = 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"render", "cron", "--every", "90s"}, "whole minutes"},
		{[]string{"render", "cron", "--every", "7m"}, "whole minutes"},
		{[]string{"render", "systemd", "--binary", "synban"}, "absolute path"},
		{[]string{"render", "systemd", "--binary", "/usr/local/bin/syn ban"}, "absolute path"},
		{[]string{"render", "systemd", "--binary", "/usr/bin/100%"}, "absolute path"},
		{[]string{"render", "systemd", "--every", "1.5s"}, "whole seconds"},
		{[]string{"render", "systemd", "--every", "soon"}, "--every"},
		{[]string{"render", "systemd", "-c", badPol}, "sysctl.somaxconn"},
		{[]string{"render", "cron", "--user", "root; rm"}, "user"},
		{[]string{"render", "crontab"}, "unknown KIND"},
		{[]string{"render"}, "one KIND"},
		{[]string{"watch", "--every", "10ms"}, "--every"},
		{[]string{"run", "--log-level", "loud"}, "--log-level"},
	} {
		code, out, stderr := runMain(t, tc.args...)
		if code != exitUsage || !strings.Contains(out+stderr, tc.want) {
			t.Errorf("synban %q: exit %d, want %d with %q:\n%s%s", tc.args, code, exitUsage, tc.want, out, stderr)
		}
	}
}

// exitOf turns what running synban args returned into its exit code and
// output; a run that did not exit on its own fails the test.
func exitOf(t *testing.T, args []string, err error, out, errOut string) (int, string, string) {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out, errOut
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode(), out, errOut
	}
	t.Fatalf("synban %v: %v: %s", args, err, errOut)
	return 0, "", ""
}
