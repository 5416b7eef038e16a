package nsenter

import (
	"os"
	"syscall"
	"testing"

	"github.com/synban/synban/internal/netnstest"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestDoEntersAndReturns(t *testing.T) {
	ns := netnstest.New(t, "nsenter")
	want := inode(t, ns.Path())
	var got uint64
	if err := Do(ns.Path(), func() error {
		got = inode(t, "/proc/thread-self/ns/net")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("fn ran in namespace inode %d, want %d", got, want)
	}
	if own := inode(t, "/proc/thread-self/ns/net"); own == want {
		t.Fatal("the calling thread was left in the test namespace")
	}
	if err := Do("/nonexistent/ns", func() error { return nil }); err == nil {
		t.Fatal("Do with a missing namespace file succeeded")
	}
}
