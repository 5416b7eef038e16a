package policy

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

// TestLoadRefusesFIFO: a FIFO as the policy is refused at once (a hang ends
// the test by its timeout) with an *Error naming it.
func TestLoadRefusesFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "f.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(fifo)
	var pe *Error
	var te *trust.Error
	if !errors.As(err, &pe) || !errors.As(err, &te) || !strings.HasPrefix(err.Error(), fifo+": refusing to read the policy: untrusted file "+fifo) || !strings.Contains(err.Error(), "not a regular file: fifo") {
		t.Errorf("Load(fifo) = %v", err)
	}
}

// TestLoadTrust: as root, a world-writable policy, one in a directory
// writable by others, and one naming an untrusted [iptables] path are
// refused; one in a sticky directory is accepted.
func TestLoadTrust(t *testing.T) {
	netnstest.RequireRoot(t)
	base := t.TempDir()
	mk := func(rel string, mode uint32, text string) string {
		p := filepath.Join(base, rel)
		if text == "" {
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	refused := func(what string, err error, want string) {
		t.Helper()
		var pe *Error
		var te *trust.Error
		if !errors.As(err, &pe) || !errors.As(err, &te) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want a policy *Error wrapping a *trust.Error, containing %q", what, err, want)
		}
	}
	ww := mk("ww.toml", 0o666, "backend = \"auto\"\n")
	_, err := Load(ww)
	refused("0666 policy", err, "untrusted file "+ww+" (owner root, uid 0, mode 0666): writable by group and others; fix: chmod go-w "+ww)

	open := mk("open", 0o777, "")
	inOpen := mk("open/p.toml", 0o644, "backend = \"auto\"\n")
	_, err = Load(inOpen)
	refused("policy in a 0777 dir", err, "untrusted directory "+open+" ")

	mk("sticky", 0o1777, "")
	if _, err := Load(mk("sticky/p.toml", 0o644, "backend = \"auto\"\n")); err != nil {
		t.Errorf("root 0644 policy in a sticky dir: %v", err)
	}

	script := mk("open/iptables", 0o755, "#!/bin/sh\ntouch "+filepath.Join(base, "ran")+"\n")
	pol := mk("p.toml", 0o644, "[iptables]\npath = \""+script+"\"\n")
	_, err = Load(pol)
	refused("untrusted iptables path", err, pol+": iptables.path: refusing to run it: untrusted directory "+open+" ")
	if _, err := os.Stat(filepath.Join(base, "ran")); err == nil {
		t.Error("the configured program ran")
	}
	missing := mk("missing.toml", 0o644, "[iptables]\npath = \"/nonexistent/iptables\"\n")
	if _, err := Load(missing); err != nil {
		t.Errorf("a configured program missing here is the backend's business, not Load's: %v", err)
	}
}
