package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestPathBuildsOnceAndRemove builds a tiny program, checks a second Path
// returns the same file without rebuilding, that the directory is
// enterable by anyone, and that Remove deletes it.
func TestPathBuildsOnceAndRemove(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not on PATH")
	}
	b := &Binary{Pkg: "github.com/synban/synban/internal/testbin/testdata/hello"}
	p := b.Path(t)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("built binary: %v", err)
	}
	di, err := os.Stat(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o755 {
		t.Errorf("binary's directory mode %v, want 0755", di.Mode().Perm())
	}
	if again := b.Path(t); again != p {
		t.Errorf("second Path = %q, want %q", again, p)
	}
	if fi2, _ := os.Stat(p); !fi2.ModTime().Equal(fi.ModTime()) {
		t.Error("second Path rebuilt the binary")
	}
	if out, err := exec.Command(p).CombinedOutput(); err != nil || string(out) != "hello\n" {
		t.Errorf("running it: %q, %v", out, err)
	}
	b.Remove()
	if _, err := os.Stat(filepath.Dir(p)); !os.IsNotExist(err) {
		t.Errorf("after Remove, the directory is still there: %v", err)
	}
}

// TestRemoveUnbuilt checks Remove on a Binary never built does nothing.
func TestRemoveUnbuilt(t *testing.T) {
	(&Binary{Pkg: Synban}).Remove()
}
