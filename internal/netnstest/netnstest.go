// Package netnstest gives kernel tests throwaway network namespaces joined by
// veth pairs, removed when the test ends even if it fails.
package netnstest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// RequireRoot skips t when not running as root, with a reason, except under
// CI=true where kernel tests must run: there it fails instead.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("kernel test needs root, and CI=true forbids skipping it")
	}
	t.Skip("kernel test needs root (network namespaces, netfilter); run as root to include it")
}

// packages maps each program the tests run to the Debian package that
// installs it; README.md's apt-get line installs them all.
var packages = map[string]string{
	"nft":               "nftables",
	"iptables":          "iptables",
	"ip6tables":         "iptables",
	"iptables-save":     "iptables",
	"ip6tables-save":    "iptables",
	"iptables-legacy":   "iptables",
	"ipset":             "ipset",
	"hping3":            "hping3",
	"conntrack":         "conntrack",
	"ip":                "iproute2",
	"ping":              "iputils-ping",
	"sysctl":            "procps",
	"systemd-analyze":   "systemd",
	"gobgpd":            "gobgpd",
	"gobgp":             "gobgpd",
	"cscli":             "crowdsec",
	"crowdsec":          "crowdsec",
	"tmux":              "tmux",
	"bash":              "bash",
	"zsh":               "zsh",
	"fish":              "fish",
	"groff":             "groff-base",
	"bird":              "bird2",
	"birdc":             "bird2",
	"tcpdump":           "tcpdump",
	"/usr/lib/frr/bgpd": "frr",
	"systemctl":         "systemd",
	"dpkg":              "dpkg",
	"lintian":           "lintian",
	"man":               "man-db",
	"git":               "git",
	// The coexistence suite (internal/coexist): the firewalls operators
	// already run, and what it sandboxes them with.
	"busybox":                   "busybox-static",
	"nsenter":                   "util-linux",
	"ufw":                       "ufw",
	"firewalld":                 "firewalld",
	"firewall-cmd":              "firewalld",
	"dbus-daemon":               "dbus",
	"dockerd":                   "docker.io",
	"docker":                    "docker.io",
	"containerd":                "docker.io",
	"runc":                      "docker.io",
	"fail2ban-server":           "fail2ban",
	"fail2ban-client":           "fail2ban",
	"crowdsec-firewall-bouncer": "crowdsec-firewall-bouncer",
	// The drop bench (bench/drop.go, `go run ./bench -drop`): its second
	// sender and its XDP anchor. Listed so that the install lines keep them.
	"trafgen":    "netsniff-ng",
	"xdp-filter": "xdp-tools",
}

// Package returns the Debian package that installs the program name, and
// whether the tests know it.
func Package(name string) (string, bool) {
	p, ok := packages[name]
	return p, ok
}

// Packages returns every Debian package the kernel tests' programs come
// from, sorted.
func Packages() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range packages {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// InstallHint is the command that installs the program name:
// "apt-get install nftables" for "nft".
func InstallHint(name string) string {
	if p, ok := packages[name]; ok {
		return "apt-get install " + p
	}
	return "install " + name
}

// RequireCommand returns the path of the program name. When it is not
// installed, it skips t with the exact install command as the reason
// ("test needs nft: apt-get install nftables"), except under CI=true where
// every kernel test must run: there it fails t. Every test that runs one of
// the programs of Packages goes through it, directly or through NS.Run,
// MustRun, Start, KernelState, New and Link.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("test needs %s, which is not installed (CI=true forbids skipping): %s", name, InstallHint(name))
	}
	t.Skipf("test needs %s, which is not installed: %s", name, InstallHint(name))
	return ""
}

// requireArgv calls RequireCommand for argv's program when it is one the
// tests know (a path such as the synban binary is the test's own).
func (n *NS) requireArgv(argv []string) {
	n.t.Helper()
	if len(argv) > 0 {
		if _, ok := packages[argv[0]]; ok {
			RequireCommand(n.t, argv[0])
		}
	}
}

// NS is a network namespace made for one test.
type NS struct {
	t    testing.TB
	Name string
}

var seq atomic.Uint64

// New creates a network namespace with loopback up, named after prefix, the
// process id and a counter, and deletes it (with every process still in it)
// when the test ends.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "ip")
	name := fmt.Sprintf("sb-%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
	if len(name) > 60 {
		name = name[:60]
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{t: t, Name: name}
	t.Cleanup(func() {
		// Kill anything left inside, then delete the namespace.
		if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
			for _, pid := range strings.Fields(string(out)) {
				_ = exec.Command("kill", "-9", pid).Run()
			}
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns.MustRun("ip", "link", "set", "lo", "up")
	return ns
}

// Path is the namespace's file, for setns or nftables.WithNetNSFd.
func (n *NS) Path() string { return "/run/netns/" + n.Name }

// Command returns a command that runs argv inside the namespace.
func (n *NS) Command(ctx context.Context, argv ...string) *exec.Cmd {
	args := append([]string{"netns", "exec", n.Name}, argv...)
	return exec.CommandContext(ctx, "ip", args...)
}

// Run runs argv inside the namespace and returns its combined output. A
// program the tests know (see Packages) that is not installed skips or
// fails the test as RequireCommand does, so Run must be called from the
// test's goroutine.
func (n *NS) Run(argv ...string) (string, error) {
	n.t.Helper()
	n.requireArgv(argv)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var buf bytes.Buffer
	cmd := n.Command(ctx, argv...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		return buf.String(), fmt.Errorf("in netns %s: %s: %w: %s", n.Name, strings.Join(argv, " "), err, buf.String())
	}
	return buf.String(), nil
}

// MustRun is Run that fails the test on error.
func (n *NS) MustRun(argv ...string) string {
	n.t.Helper()
	out, err := n.Run(argv...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// Start starts argv inside the namespace in the background; it is killed when
// the test ends.
func (n *NS) Start(argv ...string) *exec.Cmd {
	n.t.Helper()
	n.requireArgv(argv)
	cmd := n.Command(context.Background(), argv...)
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start %v in %s: %v", argv, n.Name, err)
	}
	n.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// Sysctl sets a sysctl inside the namespace (key like net.ipv4.tcp_syncookies).
func (n *NS) Sysctl(key, value string) {
	n.t.Helper()
	n.MustRun("sysctl", "-qw", key+"="+value)
}

// Link joins a and b with a veth pair and gives each side its addresses
// (CIDR notation, IPv4 or IPv6, e.g. "10.9.0.1/24", "fd00:9::1/64"). IPv6
// duplicate address detection is switched off so addresses are usable at once.
// It returns the interface names in a and b.
func Link(t testing.TB, a, b *NS, addrsA, addrsB []string) (string, string) {
	t.Helper()
	RequireCommand(t, "ip")
	RequireCommand(t, "sysctl")
	n := seq.Add(1)
	ifA, ifB := fmt.Sprintf("sba%d", n), fmt.Sprintf("sbb%d", n)
	if out, err := exec.Command("ip", "link", "add", ifA, "netns", a.Name, "type", "veth", "peer", "name", ifB, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip link add veth: %v: %s", err, out)
	}
	for _, side := range []struct {
		ns    *NS
		ifc   string
		addrs []string
	}{{a, ifA, addrsA}, {b, ifB, addrsB}} {
		side.ns.MustRun("sysctl", "-qw", "net.ipv6.conf."+side.ifc+".accept_dad=0")
		for _, addr := range side.addrs {
			args := []string{"ip", "addr", "add", addr, "dev", side.ifc}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			side.ns.MustRun(args...)
		}
		side.ns.MustRun("ip", "link", "set", side.ifc, "up")
	}
	return ifA, ifB
}

// Eventually polls cond every interval until it returns true or the deadline
// passes, then fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LogBuffer is a log destination safe for concurrent writes, for tests that
// check what a backend logged.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// KernelState is everything a firewall backend could create or change in
// ns, as text: the nftables ruleset, iptables and ip6tables, the ipsets and
// every routing table (iptables-save's time-stamp comments left out). Tests
// compare it before and after a command that must change nothing.
func (n *NS) KernelState() string {
	n.t.Helper()
	var b strings.Builder
	for _, argv := range [][]string{
		{"nft", "list", "ruleset"}, {"iptables-save"}, {"ip6tables-save"}, {"ipset", "list"},
		{"ip", "-4", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
	} {
		out := n.MustRun(argv...)
		var keep []string
		for _, l := range strings.Split(out, "\n") {
			if !strings.HasPrefix(l, "# ") {
				keep = append(keep, l)
			}
		}
		b.WriteString(strings.Join(argv, " ") + ":\n" + strings.Join(keep, "\n") + "\n")
	}
	return b.String()
}
