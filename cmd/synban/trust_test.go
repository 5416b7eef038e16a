package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// Issue 10 points 1, 2 and 4 through the CLI: what synban reads and runs as
// root must be trusted, and only regular files are read.

// runChild runs this test binary as synban with args, outside any namespace,
// and fails the test when it has not exited within d (a context deadline on
// the child: a hang is killed, not waited for). cred, when not nil, runs it
// as another user; bin, when not "", is the binary to run.
func runChild(t *testing.T, d time.Duration, bin string, cred *syscall.Credential, args ...string) (int, string, string) {
	t.Helper()
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		bin = self
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"SYNBAN_TEST_ROLE=synban", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Dir = "/"
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("synban %v did not exit within %s (%v): %s", args, d, err, errb.String())
	}
	return exitOf(t, args, err, out.String(), errb.String())
}

// mkdirMode makes dir with exactly mode (raw bits: 0o1777 is sticky).
func mkdirMode(t *testing.T, dir string, mode uint32) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeMode writes a file with exactly mode.
func writeMode(t *testing.T, path, text string, mode uint32) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantExit2 asserts a refusal: exit 2 and every want in stderr.
func wantExit2(t *testing.T, what string, code int, stderr string, want ...string) {
	t.Helper()
	if code != exitUsage {
		t.Errorf("%s: exit %d, want 2; stderr:\n%s", what, code, stderr)
		return
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("%s: stderr lacks %q:\n%s", what, w, stderr)
		}
	}
}

// TestWritablePolicyRefused: a world-writable policy is refused by every
// command that loads it, naming its path, owner, mode and the fix; nothing
// runs and no state directory appears.
func TestWritablePolicyRefused(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "trustpol")
	pol := writeMode(t, filepath.Join(t.TempDir(), "p.toml"), "backend = \"auto\"\n", 0o666)
	stateDir := filepath.Join(t.TempDir(), "state")
	for _, args := range [][]string{
		{"check", "-c", pol},
		{"plan", "-c", pol, "--state-dir", stateDir},
		{"status", "-c", pol, "--state-dir", stateDir},
		{"run", "-c", pol, "--state-dir", stateDir},
		{"ban", "192.0.2.9", "-c", pol, "--state-dir", stateDir},
	} {
		code, _, errs := runIn(t, ns, args...)
		wantExit2(t, "synban "+args[0]+" with a 0666 policy", code, errs,
			"untrusted file "+pol+" (owner root, uid 0, mode 0666): writable by group and others; fix: chmod go-w "+pol)
	}
	if _, err := os.Lstat(stateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused command created the state directory: %v", err)
	}
	if out := ns.MustRun("nft", "list", "ruleset"); strings.Contains(out, "synban") {
		t.Errorf("a refused command touched the kernel:\n%s", out)
	}
}

// fakePrograms writes iptables and ip6tables scripts in dir that would
// leave a marker if run, and returns the iptables one and the marker.
func fakePrograms(t *testing.T, dir string) (string, string) {
	t.Helper()
	marker := filepath.Join(t.TempDir(), "ran-as-root")
	for _, name := range []string{"iptables", "ip6tables"} {
		writeMode(t, filepath.Join(dir, name), "#!/bin/sh\ntouch "+marker+"\necho 'iptables v1.8.9 (nf_tables)'\n", 0o755)
	}
	return filepath.Join(dir, "iptables"), marker
}

// TestPolicyProgramRefused reproduces issue 10 point 1: a root-owned 0644
// policy whose [iptables] path names a script in a 0777 directory made
// `status --backend iptables` run the script as root. Now it exits 2 and the
// script never runs; a script owned by uid 65534 is refused likewise.
func TestPolicyProgramRefused(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "trustprog")
	open := mkdirMode(t, filepath.Join(t.TempDir(), "open"), 0o777)
	script, marker := fakePrograms(t, open)
	pol := writeMode(t, filepath.Join(t.TempDir(), "p.toml"), "[iptables]\npath = \""+script+"\"\n", 0o644)
	stateDir := filepath.Join(t.TempDir(), "state")
	for _, args := range [][]string{
		{"status", "--backend", "iptables", "-c", pol, "--state-dir", stateDir},
		{"status", "-c", pol, "--state-dir", stateDir},
		{"check", "-c", pol},
		{"run", "--backend", "iptables", "-c", pol, "--state-dir", stateDir},
	} {
		code, _, errs := runIn(t, ns, args...)
		wantExit2(t, "synban "+strings.Join(args[:2], " ")+" with an untrusted iptables path", code, errs,
			pol+": iptables.path: refusing to run it: untrusted directory "+open+" (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w "+open)
	}

	owned := mkdirMode(t, filepath.Join(t.TempDir(), "owned"), 0o755)
	script2, marker2 := fakePrograms(t, owned)
	if err := os.Chown(script2, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	pol2 := writeMode(t, filepath.Join(t.TempDir(), "p.toml"), "[iptables]\npath = \""+script2+"\"\n", 0o644)
	code, _, errs := runIn(t, ns, "status", "--backend", "iptables", "-c", pol2, "--state-dir", stateDir)
	wantExit2(t, "status with an iptables owned by 65534", code, errs,
		"untrusted program "+script2+" (owner nobody, uid 65534, mode 0755): not owned by root; fix: chown root "+script2)

	for _, m := range []string{marker, marker2} {
		if _, err := os.Stat(m); err == nil {
			t.Errorf("the configured iptables ran as root (%s exists)", m)
		}
	}
}

// TestPolicyDirectoryTrust: a policy in a directory writable by others is
// refused; in a sticky 1777 directory a root-owned 0644 policy is accepted.
func TestPolicyDirectoryTrust(t *testing.T) {
	netnstest.RequireRoot(t)
	base := t.TempDir()
	open := mkdirMode(t, filepath.Join(base, "open"), 0o777)
	pol := writeMode(t, filepath.Join(open, "p.toml"), "backend = \"auto\"\n", 0o644)
	code, _, errs := runMain(t, "check", "-c", pol)
	wantExit2(t, "policy in a 0777 dir", code, errs,
		"untrusted directory "+open+" (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w "+open)

	sticky := mkdirMode(t, filepath.Join(base, "sticky"), 0o1777)
	pol = writeMode(t, filepath.Join(sticky, "p.toml"), "backend = \"auto\"\n", 0o644)
	if code, out, errs := runMain(t, "check", "-c", pol); code != exitOK {
		t.Errorf("policy in a sticky dir: exit %d: %s%s", code, out, errs)
	}
	// The file itself owned by someone else is refused even there.
	if err := os.Chown(pol, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runMain(t, "check", "-c", pol)
	wantExit2(t, "another user's policy in a sticky dir", code, errs, "(owner nobody, uid 65534, mode 0644): not owned by root; fix: chown root "+pol)
}

// TestPlantedLockSymlink reproduces issue 10 point 2: a link planted as
// DIR/lock made root overwrite its target with a pid. Now run and ban exit
// 2 naming the lock, and the target keeps its content and mode.
func TestPlantedLockSymlink(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "trustlock")
	dir := t.TempDir()
	target := writeMode(t, filepath.Join(t.TempDir(), "precious"), "root's data\n", 0o640)
	lock := filepath.Join(dir, "lock")
	if err := os.Symlink(target, lock); err != nil {
		t.Fatal(err)
	}
	pol := writePolicy(t, "backend = \"auto\"\n")
	for _, args := range [][]string{
		{"run", "-c", pol, "--state-dir", dir},
		{"ban", "192.0.2.9", "-c", pol, "--state-dir", dir},
		{"unban", "192.0.2.9", "-c", pol, "--state-dir", dir},
	} {
		code, _, errs := runIn(t, ns, args...)
		wantExit2(t, "synban "+args[0]+" with a planted lock link", code, errs,
			"untrusted file "+lock+" ", "a symbolic link (to "+target+")")
	}
	fi, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "root's data\n" || fi.Mode().Perm() != 0o640 {
		t.Errorf("the lock link's target changed: mode %v, content %q", fi.Mode(), data)
	}
	if out := ns.MustRun("nft", "list", "ruleset"); strings.Contains(out, "192.0.2.9") {
		t.Errorf("the ban reached the kernel:\n%s", out)
	}
}

// TestStateDirTrust: a symlinked state directory and a group-writable one
// are refused (exit 2); a fresh one is created 0700 with state.db and
// lock 0600.
func TestStateDirTrust(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "truststate")
	pol := writePolicy(t, "backend = \"route\"\n")
	base := t.TempDir()

	real := mkdirMode(t, filepath.Join(base, "real"), 0o700)
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runIn(t, ns, "ban", "192.0.2.9", "-c", pol, "--state-dir", link)
	wantExit2(t, "symlinked state dir", code, errs, "untrusted directory "+link+" ", "a symbolic link (to "+real+")", "--state-dir "+real)
	if ents, _ := os.ReadDir(real); len(ents) != 0 {
		t.Errorf("files written through the state dir link: %v", ents)
	}

	gw := mkdirMode(t, filepath.Join(base, "gw"), 0o770)
	code, _, errs = runIn(t, ns, "ban", "192.0.2.9", "-c", pol, "--state-dir", gw)
	wantExit2(t, "group-writable state dir", code, errs, "untrusted directory "+gw+" (owner root, uid 0, mode 0770): writable by group; fix: chmod go-w "+gw)

	fresh := filepath.Join(base, "fresh", "state")
	if code, out, errs := runIn(t, ns, "ban", "192.0.2.9", "--for", "1h", "-c", pol, "--state-dir", fresh); code != exitOK {
		t.Fatalf("ban with a fresh state dir: exit %d: %s%s", code, out, errs)
	}
	for name, want := range map[string]os.FileMode{"": os.ModeDir | 0o700, "state.db": 0o600, "lock": 0o600} {
		fi, err := os.Lstat(filepath.Join(fresh, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", filepath.Join(fresh, name), fi.Mode(), want)
		}
	}
	if st := requireValidState(t, fresh); len(st.Bans) != 1 {
		t.Errorf("state after the ban: %+v", st.Bans)
	}
}

// TestFIFORefusedAtOnce reproduces issue 10 point 4: `mkfifo f.toml;
// synban check -c f.toml` never returned. A FIFO as the policy, as net/tcp
// of a --from capture, or as the state file now exits 2 within a second.
func TestFIFORefusedAtOnce(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "f.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runChild(t, time.Second, "", nil, "check", "-c", fifo)
	wantExit2(t, "check -c FIFO", code, errs, fifo, "not a regular file: fifo")

	capture := filepath.Join(t.TempDir(), "capture")
	if err := os.MkdirAll(filepath.Join(capture, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	tcp := filepath.Join(capture, "net", "tcp")
	if err := syscall.Mkfifo(tcp, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runChild(t, time.Second, "", nil, "plan", "--from", capture, "--state-dir", filepath.Join(dir, "none"))
	wantExit2(t, "plan --from with a FIFO as net/tcp", code, errs, tcp, "not a regular file: fifo")

	stateDir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	stateFile := filepath.Join(stateDir, "state.json")
	if err := syscall.Mkfifo(stateFile, 0o600); err != nil {
		t.Fatal(err)
	}
	// plan goes on without an unreadable store, saying why.
	code, _, errs = runChild(t, time.Second, "", nil, "plan", "--from", "../../testdata/proc/quiet", "--state-dir", stateDir)
	if code != exitOK || !strings.Contains(errs, "untrusted file "+stateFile+" ") || !strings.Contains(errs, "not a regular file: fifo") {
		t.Errorf("plan with a FIFO as state.json: exit %d, want 0 and a warning naming the FIFO:\n%s", code, errs)
	}
	// A command that records bans refuses it (in a namespace: it would
	// touch the kernel).
	if os.Geteuid() == 0 {
		ns := netnstest.New(t, "trustfifo")
		pol := writePolicy(t, "backend = \"route\"\n")
		code, _, errs = runIn(t, ns, "ban", "192.0.2.9", "-c", pol, "--state-dir", stateDir)
		wantExit2(t, "ban with a FIFO as state.json", code, errs, stateFile, "not a regular file: fifo")
	}
}

// TestNonRootOwnFiles: an ordinary user (uid 65534) is not held to the
// root-only checks: their own group-writable policy in their own
// group-writable directory is checked and planned with; as root the same
// file is refused.
func TestNonRootOwnFiles(t *testing.T) {
	netnstest.RequireRoot(t)
	// A copy of the test binary that nobody can execute, in directories
	// nobody can enter.
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "synban.test")
	copyFile(t, self, bin, 0o755)

	home := mkdirMode(t, filepath.Join(base, "home"), 0o775)
	pol := writeMode(t, filepath.Join(home, "p.toml"), "backend = \"auto\"\n", 0o664)
	for _, p := range []string{home, pol} {
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	capture, err := filepath.Abs("../../testdata/proc/single-flood")
	if err != nil {
		t.Fatal(err)
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	stateDir := filepath.Join(home, "state")
	if code, out, errs := runChild(t, 30*time.Second, bin, nobody, "check", "-c", pol); code != exitOK {
		t.Errorf("check as nobody of nobody's policy: exit %d: %s%s", code, out, errs)
	}
	code, out, errs := runChild(t, 30*time.Second, bin, nobody, "plan", "-c", pol, "--from", capture, "--format", "nft", "--state-dir", stateDir)
	if code != exitOK || !strings.Contains(out, "203.0.113.7") {
		t.Errorf("plan as nobody: exit %d: %s%s", code, out, errs)
	}
	if _, err := os.Lstat(stateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("plan as nobody created the state directory: %v", err)
	}
	code, _, errs = runChild(t, 30*time.Second, bin, nil, "check", "-c", pol)
	wantExit2(t, "check as root of nobody's group-writable policy", code, errs, "untrusted directory "+home+" (owner nobody, uid 65534, mode 0775)")
}

// copyFile copies src to dst with mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
