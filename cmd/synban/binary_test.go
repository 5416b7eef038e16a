package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// built is the synban binary go build made for this test run.
var built struct {
	once sync.Once
	path string
	err  error
}

// synbanBinary builds cmd/synban once per test run, into a directory any
// user may enter (tests run it as nobody too), and returns its path. The
// directory is removed when TestMain's m.Run returns (see removeBuilt).
func synbanBinary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "synban-cmd-")
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "synban")
		out, err := exec.Command("go", "build", "-o", built.path, "github.com/synban/synban/cmd/synban").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build cmd/synban: %w: %s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// removeBuilt removes the binary synbanBinary built, if any.
func removeBuilt() {
	if built.path != "" {
		_ = os.RemoveAll(filepath.Dir(built.path))
	}
}
