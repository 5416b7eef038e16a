package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteReplacesAndLeavesNoTemp(t *testing.T) {
	for _, durable := range []bool{true, false} {
		dir := t.TempDir()
		for _, text := range []string{"one\n", "two\n"} {
			if err := Write(dir, "doc.json", []byte(text), durable); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "doc.json"))
			if err != nil || string(b) != text {
				t.Fatalf("read back %q %v, want %q", b, err, text)
			}
		}
		fi, err := os.Stat(filepath.Join(dir, "doc.json"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v %v, want 0600", fi.Mode(), err)
		}
		if es, _ := os.ReadDir(dir); len(es) != 1 {
			t.Fatalf("dir holds %v, want the document only", es)
		}
	}
}

// The target is replaced, never written through: a symbolic link planted
// at its name is replaced by the file, its target untouched.
func TestWriteNeverThroughALink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "doc.json")); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, "doc.json", []byte("new"), true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatalf("the link's target was written: %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "doc.json")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("doc.json is %v %v, want a regular file", fi.Mode(), err)
	}
}

func TestWriteMissingDir(t *testing.T) {
	if err := Write(filepath.Join(t.TempDir(), "nope"), "doc.json", nil, true); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

// WriteMode gives the file exactly the mode asked for, whatever the umask.
func TestWriteModeIgnoresUmask(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if err := WriteMode(dir, "m.prom", []byte("x 1\n"), 0o644, false); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "m.prom"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v %v, want 0644", fi.Mode(), err)
	}
}
