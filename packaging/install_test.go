package packaging

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// dpkgIn runs dpkg args inside ns (so that the maintainer scripts, and the
// synban flush of a purge, reach only that namespace's firewall), retrying
// while another dpkg holds the lock.
func dpkgIn(t *testing.T, ns *netnstest.NS, args ...string) (string, error) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := ns.Run(append([]string{"dpkg"}, args...)...)
		if err == nil || !strings.Contains(out, "lock") || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(2 * time.Second)
	}
}

// installed reports whether dpkg has synban installed (or half so).
func installed() bool {
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "synban").Output()
	return err == nil && string(out) != "not-installed" && string(out) != ""
}

// checkInstall installs the .deb with dpkg, checks what an operator would
// check, then removes and purges it and checks nothing is left: not a file
// of the package, nor the nftables table a run made. It leaves the machine
// as it found it: the package is purged even when a check fails.
func checkInstall(t *testing.T, deb, commit string) {
	netnstest.RequireCommand(t, "dpkg")
	netnstest.RequireCommand(t, "systemd-analyze")
	netnstest.RequireCommand(t, "systemctl")
	netnstest.RequireCommand(t, "man")
	netnstest.RequireCommand(t, "bash")
	netnstest.RequireCommand(t, "nft")
	if installed() {
		t.Fatal("synban is already installed on this machine: this test installs and purges it, so it will not run here")
	}
	if left := systemdTraces(); len(left) > 0 {
		t.Fatalf("synban's units are already known to systemd here: %v", left)
	}
	ns := netnstest.New(t, "pkg")
	t.Cleanup(func() {
		if installed() {
			if out, err := dpkgIn(t, ns, "--purge", "synban"); err != nil {
				t.Errorf("cleanup: dpkg --purge synban: %v: %s", err, out)
			}
		}
	})

	out, err := dpkgIn(t, ns, "-i", deb)
	if err != nil {
		t.Fatalf("dpkg -i: %v", err)
	}
	if !strings.Contains(out, "not enabled") {
		t.Errorf("postinst does not say the units are not enabled:\n%s", out)
	}
	listing, err := exec.Command("dpkg", "-L", "synban").Output()
	if err != nil {
		t.Fatalf("dpkg -L synban: %v", err)
	}
	var files []string // the package's files, and its own directories
	for _, p := range strings.Split(strings.TrimSpace(string(listing)), "\n") {
		fi, err := os.Stat(p) // /lib is a link to usr/lib: a directory
		if err != nil {
			t.Errorf("dpkg -L lists %s, which is missing: %v", p, err)
			continue
		}
		if !fi.IsDir() || strings.Contains(p, "synban") {
			files = append(files, p)
		}
	}
	for _, want := range []string{"/usr/sbin/synban", "/etc/synban/policy.toml", "/lib/systemd/system/synban.service",
		"/lib/systemd/system/synban.timer", "/lib/systemd/system/synban-watch.service", "/usr/share/man/man8/synban.8.gz",
		"/usr/share/bash-completion/completions/synban", "/usr/share/zsh/vendor-completions/_synban",
		"/usr/share/fish/vendor_completions.d/synban.fish", "/usr/share/doc/synban/copyright",
		"/usr/share/doc/synban/changelog.Debian.gz", "/var/lib/synban", "/usr/libexec/synban/synban-speaker"} {
		if !strings.Contains("\n"+string(listing), "\n"+want+"\n") {
			t.Errorf("dpkg -L synban lacks %s", want)
		}
	}
	t.Logf("the package's files: %s", strings.Join(files, " "))

	// The policy: a conffile, 0600 root, the documented default.
	conffiles, _ := exec.Command("dpkg-query", "-W", "-f=${Conffiles}", "synban").Output()
	if !strings.Contains(string(conffiles), "/etc/synban/policy.toml ") {
		t.Errorf("/etc/synban/policy.toml is not a conffile: %q", conffiles)
	}
	checkMode(t, "/etc/synban/policy.toml", 0o600)
	checkMode(t, "/var/lib/synban", fs.ModeDir|0o700)
	def, err := exec.Command("/usr/sbin/synban", "policy", "default").Output()
	if err != nil {
		t.Fatalf("synban policy default: %v", err)
	}
	if got, _ := os.ReadFile("/etc/synban/policy.toml"); string(got) != string(def) {
		t.Errorf("/etc/synban/policy.toml is not `synban policy default`")
	}

	// The binary names the commit, and the policy checks.
	if out, err := exec.Command("/usr/sbin/synban", "version").CombinedOutput(); err != nil || !strings.Contains(string(out), commit) {
		t.Errorf("/usr/sbin/synban version: %v: %q does not name commit %s", err, out, commit)
	}
	if out, err := ns.Run("/usr/sbin/synban", "check", "-c", "/etc/synban/policy.toml"); err != nil {
		t.Errorf("synban check -c /etc/synban/policy.toml: %v: %s", err, out)
	}

	checkSpeaker(t, ns)

	// The units: accepted by systemd-analyze, for the installed paths, not enabled.
	units, _ := filepath.Glob("/lib/systemd/system/synban*")
	if len(units) < 3 {
		t.Fatalf("units installed: %v", units)
	}
	if out, err := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, units...)...).CombinedOutput(); err != nil || strings.Contains(string(out), "synban") {
		t.Errorf("systemd-analyze verify %v: %v:\n%s", units, err, out)
	}
	for _, u := range units {
		b, _ := os.ReadFile(u)
		if strings.HasSuffix(u, "service") && !strings.Contains(string(b), "ExecStart=/usr/sbin/synban ") {
			t.Errorf("%s does not run /usr/sbin/synban:\n%s", u, b)
		}
		if strings.Contains(string(b), "ExecStart=") && !strings.Contains(string(b), " -c /etc/synban/policy.toml") {
			t.Errorf("%s does not read /etc/synban/policy.toml:\n%s", u, b)
		}
	}
	if links, _ := filepath.Glob("/etc/systemd/system/*/synban*"); len(links) > 0 {
		t.Errorf("units enabled by the install: %v", links)
	}
	// The operator enables the timer; dpkg -r must disable it.
	if out, err := exec.Command("systemctl", "--no-reload", "enable", "synban.timer").CombinedOutput(); err != nil {
		t.Errorf("systemctl enable synban.timer: %v: %s", err, out)
	} else if _, err := os.Lstat("/etc/systemd/system/timers.target.wants/synban.timer"); err != nil {
		t.Errorf("systemctl enable synban.timer made no link: %v: %s", err, out)
	}

	// The man page formats without warnings; the bash completion loads.
	man := exec.Command("man", "--warnings", "-l", "/usr/share/man/man8/synban.8.gz")
	man.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=80")
	var manErr strings.Builder
	man.Stderr = &manErr
	if out, err := man.Output(); err != nil || manErr.Len() > 0 || !strings.Contains(string(out), "SYNBAN(8)") {
		t.Errorf("man -l synban.8.gz: %v: stderr %q, page begins %.80q", err, manErr.String(), out)
	}
	if out, err := exec.Command("bash", "-c", "source /usr/share/bash-completion/completions/synban && complete -p synban").CombinedOutput(); err != nil {
		t.Errorf("bash completion: %v: %s", err, out)
	}

	// A run makes synban's table in the namespace (never in the host's).
	ns.MustRun("/usr/sbin/synban", "ban", "198.51.100.7", "--for", "1h", "-c", "/etc/synban/policy.toml")
	if out, err := ns.Run("/usr/sbin/synban", "run", "-c", "/etc/synban/policy.toml"); err != nil {
		t.Fatalf("synban run: %v: %s", err, out)
	}
	if out := ns.MustRun("nft", "list", "table", "inet", "synban"); !strings.Contains(out, "198.51.100.7") {
		t.Fatalf("after synban ban and run, the namespace's table lacks the ban:\n%s", out)
	}

	// dpkg -r: the binary goes, the conffile stays, the bans stay (to expire).
	if out, err := dpkgIn(t, ns, "-r", "synban"); err != nil {
		t.Fatalf("dpkg -r: %v: %s", err, out)
	}
	if _, err := os.Stat("/usr/sbin/synban"); err == nil {
		t.Errorf("dpkg -r left /usr/sbin/synban")
	}
	if _, err := os.Stat("/etc/synban/policy.toml"); err != nil {
		t.Errorf("dpkg -r removed the conffile: %v", err)
	}
	if links, _ := filepath.Glob("/etc/systemd/system/*/synban*"); len(links) > 0 {
		t.Errorf("dpkg -r left the units enabled: %v", links)
	}
	if out, err := ns.Run("nft", "list", "table", "inet", "synban"); err != nil || !strings.Contains(out, "198.51.100.7") {
		t.Errorf("dpkg -r removed the bans; they are left to expire: %v: %s", err, out)
	}

	// dpkg --purge: nothing left, the table flushed.
	if out, err := dpkgIn(t, ns, "--purge", "synban"); err != nil {
		t.Fatalf("dpkg --purge: %v: %s", err, out)
	}
	for _, f := range files {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("dpkg --purge left %s", f)
		}
	}
	if out, err := ns.Run("nft", "list", "tables"); err != nil || strings.Contains(out, "synban") {
		t.Errorf("dpkg --purge left synban's table in the namespace: %v: %s", err, out)
	}
	if installed() {
		t.Errorf("dpkg still knows synban after the purge")
	}
	if left := systemdTraces(); len(left) > 0 {
		t.Errorf("dpkg --purge left systemd links or deb-systemd-helper state: %v", left)
	}
}

// systemdTraces lists what names synban under /etc/systemd/system and
// deb-systemd-helper's state directories: enable links, masks, state.
func systemdTraces() []string {
	var out []string
	for _, root := range []string{"/etc/systemd/system", "/var/lib/systemd/deb-systemd-helper-enabled", "/var/lib/systemd/deb-systemd-helper-masked"} {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.Contains(d.Name(), "synban") {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// checkMode: path has mode want and belongs to root.
func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("%s: not owned by root", path)
	}
}

// checkSpeaker runs the installed `synban upstream` on a policy with
// [upstream] on: synban hands over to /usr/libexec/synban/synban-speaker
// (the same process, so the unit's signals reach it), which starts, and
// stops with exit 0 on SIGTERM. The neighbor is a documentation address the
// namespace has no route to: no session comes up, nothing leaves it.
func checkSpeaker(t *testing.T, ns *netnstest.NS) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "upstream.toml")
	text := "[upstream]\nenabled = true\nlocal_asn = 64512\nrouter_id = \"192.0.2.10\"\nown_prefixes = [\"192.0.2.0/24\"]\n" +
		"interfaces = [\"lo\"]\nuplink_bps = 1000000000\n\n[[upstream.neighbor]]\naddress = \"192.0.2.1\"\npeer_asn = 64500\nfamilies = [\"ipv4-flowspec\"]\n"
	if err := os.WriteFile(pol, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Run("/usr/libexec/synban/synban-speaker"); err == nil || !strings.Contains(out, "synban upstream") {
		t.Errorf("synban-speaker run by hand: %v, %q: want a refusal that names synban upstream", err, out)
	}
	var logs netnstest.LogBuffer
	cmd := ns.Command(t.Context(), "/usr/sbin/synban", "upstream", "-c", pol, "--state-dir", filepath.Join(dir, "state"), "--log-level", "info")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start synban upstream: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	running := func() bool { return strings.Contains(logs.String(), "upstream speaker running") }
	deadline := time.Now().Add(30 * time.Second)
	for !running() && time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("synban upstream exited before the speaker ran: %v:\n%s", err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !running() {
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("the installed synban upstream did not start its speaker in 30 s:\n%s", logs.String())
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); err != nil || exe != "/usr/libexec/synban/synban-speaker" {
		t.Errorf("synban upstream (pid %d) runs %q (%v), want /usr/libexec/synban/synban-speaker", cmd.Process.Pid, exe, err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the speaker after SIGTERM: %v:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Errorf("the speaker did not stop within 30 s of SIGTERM:\n%s", logs.String())
	}
}
