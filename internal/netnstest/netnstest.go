// Package netnstest gives kernel tests throwaway network namespaces joined by
// veth pairs, removed when the test ends even if it fails.
package netnstest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
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

// RequireCommand skips (or under CI=true fails) when a program is missing.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("test needs %s, which is not installed (CI=true forbids skipping)", name)
	}
	t.Skipf("test needs %s, which is not installed", name)
	return ""
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

// Run runs argv inside the namespace and returns its combined output.
func (n *NS) Run(argv ...string) (string, error) {
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
