package detect

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/synban/synban/internal/trust"
)

// TestProcFSRefusesFIFO: a FIFO as net/tcp or net/tcp6 of a capture is
// refused at once (a hang ends the test by its timeout), naming the file.
func TestProcFSRefusesFIFO(t *testing.T) {
	for _, name := range []string{"tcp", "tcp6"} {
		root := t.TempDir()
		if err := os.Mkdir(filepath.Join(root, "net"), 0o755); err != nil {
			t.Fatal(err)
		}
		if name == "tcp6" {
			if err := os.WriteFile(filepath.Join(root, "net", "tcp"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		fifo := filepath.Join(root, "net", name)
		if err := syscall.Mkfifo(fifo, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ProcFS{Root: root}.Sample(context.Background())
		var te *trust.Error
		if !errors.As(err, &te) || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "not a regular file: fifo") {
			t.Errorf("fifo as net/%s: %v", name, err)
		}
	}
}

// TestProcFSReadsLiveProc: the live procfs files (regular, size 0) are
// still read.
func TestProcFSReadsLiveProc(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp")
	}
	s, err := ProcFS{}.Sample(context.Background())
	if err != nil {
		t.Fatalf("live procfs: %v", err)
	}
	if s.Time.IsZero() || s.Malformed != 0 {
		t.Errorf("live procfs sample: time %v, %d malformed", s.Time, s.Malformed)
	}
}
