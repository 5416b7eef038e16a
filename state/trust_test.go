package state

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/trust"
)

// wantRefusal asserts err carries a *trust.Error whose message contains want.
func wantRefusal(t *testing.T, what string, err error, want string) {
	t.Helper()
	var te *trust.Error
	if !errors.As(err, &te) || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: got %v; want a *trust.Error containing %q", what, err, want)
	}
}

// TestSymlinkedDirRefused: a link as the state directory is refused, and
// nothing is created through it.
func TestSymlinkedDirRefused(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "state")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	_, err := Open(link)
	wantRefusal(t, "symlinked state dir", err, "untrusted directory "+link+" (owner ")
	if err != nil && !strings.Contains(err.Error(), "mode 0777): a symbolic link (to "+real+"); synban does not follow a link as its state directory; fix: give the real directory: --state-dir "+real) {
		t.Errorf("refusal: %v", err)
	}
	if ents, _ := os.ReadDir(real); len(ents) != 0 {
		t.Errorf("files created through the link: %v", ents)
	}
}

// TestFilesCreated0600: a fresh store's directory is 0700 and its lock and
// database 0600 whatever the umask allows.
func TestFilesCreated0600(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fresh")
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	release, err := s.Lock(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := s.Update(func(st *State) error {
		st.Upsert(Ban{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Since: time.Now()})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"": 0o700 | os.ModeDir, LockName: 0o600, FileName: 0o600} {
		fi, err := os.Lstat(filepath.Join(s.Dir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", filepath.Join(s.Dir(), name), fi.Mode(), want)
		}
	}
}

// TestPlantedLockLink: a link planted as DIR/lock is refused; its target
// keeps its content and mode.
func TestPlantedLockLink(t *testing.T) {
	s := mustOpen(t)
	target := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(target, []byte("do not overwrite\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(s.Dir(), LockName)
	if err := os.Symlink(target, lock); err != nil {
		t.Fatal(err)
	}
	for _, wait := range []bool{false, true} {
		_, err := s.Lock(context.Background(), wait)
		wantRefusal(t, "planted lock link", err, "untrusted file "+lock+" ")
		if err != nil && !strings.Contains(err.Error(), "a symbolic link (to "+target+")") {
			t.Errorf("refusal does not name the link's target: %v", err)
		}
	}
	fi, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(target)
	if string(data) != "do not overwrite\n" || fi.Mode() != 0o644 {
		t.Errorf("target changed: mode %v, content %q", fi.Mode(), data)
	}
	// A dangling link must not create its target either.
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(t.TempDir(), "absent")
	if err := os.Symlink(absent, lock); err != nil {
		t.Fatal(err)
	}
	_, err = s.Lock(context.Background(), false)
	wantRefusal(t, "dangling lock link", err, "a symbolic link")
	if _, err := os.Lstat(absent); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dangling link's target was created: %v", err)
	}
}

// TestStateFileNotRegular: a FIFO as the document is refused at once (a
// hang ends the test by its timeout), and a link as the document is not
// followed.
func TestStateFileNotRegular(t *testing.T) {
	s := mustOpen(t)
	if err := syscall.Mkfifo(s.Path(), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Load()
	wantRefusal(t, "fifo state file", err, "not a regular file: fifo")
	if err := s.Update(func(*State) error { return nil }); err == nil {
		t.Error("Update over a fifo state file succeeded")
	}
	if err := os.Remove(s.Path()); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.json")
	if err := os.WriteFile(other, []byte(`{"version":1,"bans":[],"history":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, s.Path()); err != nil {
		t.Fatal(err)
	}
	_, err = s.Load()
	wantRefusal(t, "linked state file", err, "a symbolic link (to "+other+")")
}

// TestDirOwnerAndMode: as root, a group- or world-writable state directory
// (or one under such a directory) and one owned by another user are
// refused; a root 0755 directory and a sticky parent are accepted.
func TestDirOwnerAndMode(t *testing.T) {
	netnstest.RequireRoot(t)
	base := t.TempDir()
	mk := func(name string, mode uint32) string {
		p := filepath.Join(base, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := Open(mk("ok", 0o755)); err != nil {
		t.Errorf("root 0755 dir: %v", err)
	}
	gw := mk("gw", 0o770)
	_, err := Open(gw)
	wantRefusal(t, "group-writable dir", err, "untrusted directory "+gw+" (owner root, uid 0, mode 0770): writable by group; fix: chmod go-w "+gw)
	ww := mk("ww", 0o777)
	_, err = Open(filepath.Join(ww, "state"))
	wantRefusal(t, "dir under a 0777 dir", err, "untrusted directory "+ww+" ")
	if _, err := os.Lstat(filepath.Join(ww, "state")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir created under an untrusted dir: %v", err)
	}
	sticky := mk("sticky", 0o1777)
	if _, err := Open(filepath.Join(sticky, "state")); err != nil {
		t.Errorf("new dir in a sticky dir: %v", err)
	}
	nobody := mk("nobody", 0o700)
	if err := os.Chown(nobody, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err = Open(nobody)
	wantRefusal(t, "another user's dir", err, "(owner nobody, uid 65534, mode 0700): not owned by root; fix: chown root "+nobody)
}
