package detect

import (
	"net/netip"
	"testing"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/nsenter"
)

func TestSSHClient(t *testing.T) {
	for env, want := range map[string]string{
		"203.0.113.9 52311 192.0.2.1 22":       "203.0.113.9",
		"2001:db8::7 52311 2001:db8::1 22":     "2001:db8::7",
		"::ffff:198.51.100.4 4000 10.0.0.1 22": "198.51.100.4",
	} {
		got, ok := sshClient(env)
		if !ok || got != netip.MustParseAddr(want) {
			t.Errorf("sshClient(%q) = %v, %v; want %s", env, got, ok, want)
		}
	}
	for _, env := range []string{"", "garbage 1 2 3"} {
		if _, ok := sshClient(env); ok {
			t.Errorf("sshClient(%q) found a client", env)
		}
	}
}

// TestHostProtectedInNamespace calls HostProtected inside a namespace with
// known addresses and a default gateway, and checks each is reported.
func TestHostProtectedInNamespace(t *testing.T) {
	a, b := netnstest.New(t, "hosta"), netnstest.New(t, "hostb")
	netnstest.Link(t, a, b, []string{"10.251.0.1/24", "fd00:251::1/64"}, []string{"10.251.0.2/24"})
	a.MustRun("ip", "route", "add", "default", "via", "10.251.0.2")

	got := inNamespace(t, a.Path(), func() ([]Protected, error) {
		return HostProtected("198.51.100.77 40000 10.251.0.1 22")
	})
	want := map[string]string{
		"10.251.0.1/32":    "host address",
		"fd00:251::1/128":  "host address",
		"127.0.0.1/32":     "host address",
		"10.251.0.2/32":    "default gateway",
		"198.51.100.77/32": "SSH client running synban",
	}
	seen := map[string]string{}
	for _, p := range got {
		seen[p.Prefix.String()] = p.Why
	}
	for pfx, why := range want {
		if seen[pfx] != why {
			t.Errorf("HostProtected: %s = %q, want %q (all: %v)", pfx, seen[pfx], why, got)
		}
	}
	if _, ok := seen["10.251.0.0/24"]; ok {
		t.Errorf("HostProtected protected the whole link prefix, want only host addresses: %v", got)
	}
}

func inNamespace(t *testing.T, path string, fn func() ([]Protected, error)) []Protected {
	t.Helper()
	var out []Protected
	if err := nsenter.Do(path, func() (err error) {
		out, err = fn()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
