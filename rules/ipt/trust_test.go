package ipt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/trust"
)

// fakeIPTables writes, in dir, an iptables and an ip6tables script that
// would leave a marker file if they ever ran, and returns the iptables one
// and the marker's path.
func fakeIPTables(t *testing.T, dir string) (prog, marker string) {
	t.Helper()
	marker = filepath.Join(t.TempDir(), "ran")
	for _, name := range []string{"iptables", "ip6tables"} {
		p := filepath.Join(dir, name)
		script := "#!/bin/sh\ntouch " + marker + "\necho 'iptables v1.8.9 (nf_tables)'\n"
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "iptables"), marker
}

// TestUntrustedProgramNeverRuns: a configured iptables in a directory
// writable by others, or owned by another user, is refused with a
// *trust.Error naming it, and never runs; a fake iptables first in $PATH is
// ignored by the auto choice.
func TestUntrustedProgramNeverRuns(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "ipttrust")

	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	prog, marker := fakeIPTables(t, open)
	_, err := New(Options{NetNS: ns.Path(), Path: prog})
	var te *trust.Error
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "untrusted directory "+open+" (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w "+open) {
		t.Errorf("iptables in a 0777 dir: %v", err)
	}

	owned := filepath.Join(t.TempDir(), "owned")
	if err := os.Mkdir(owned, 0o755); err != nil {
		t.Fatal(err)
	}
	prog2, marker2 := fakeIPTables(t, owned)
	if err := os.Chown(prog2, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err = Probe(Options{NetNS: ns.Path(), Path: prog2})
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "untrusted program "+prog2+" (owner nobody, uid 65534, mode 0755): not owned by root; fix: chown root "+prog2) {
		t.Errorf("iptables owned by 65534: %v", err)
	}
	// The ip6tables twin is checked as well.
	if err := os.Chown(prog2, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(owned, "ip6tables"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err = Probe(Options{NetNS: ns.Path(), Path: prog2})
	if !errors.As(err, &te) || te.Path != filepath.Join(owned, "ip6tables") {
		t.Errorf("ip6tables owned by 65534: %v", err)
	}

	if _, err := New(Options{NetNS: ns.Path(), Path: "sbin/iptables"}); !errors.As(err, &te) || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("relative path: %v", err)
	}

	// A fake iptables first in $PATH: the auto choice does not see it.
	pathDir := t.TempDir()
	_, marker3 := fakeIPTables(t, pathDir)
	t.Setenv("PATH", pathDir+":"+os.Getenv("PATH"))
	b, err := New(Options{NetNS: ns.Path()})
	if err != nil {
		t.Fatalf("auto choice with a fake iptables in $PATH: %v", err)
	}
	if v4, _ := b.Paths(); strings.HasPrefix(v4, pathDir) {
		t.Errorf("auto choice took %s from $PATH", v4)
	}
	for _, m := range []string{marker, marker2, marker3} {
		if _, err := os.Stat(m); err == nil {
			t.Errorf("a refused program ran (%s exists)", m)
		}
	}
}
