// Package testbin builds a Go program once per test binary, for tests that
// run it as a separate process (in a network namespace, as another user),
// and removes it when the tests are done.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
)

// Synban is the import path of synban's command, the program most suites build.
const Synban = "github.com/synban/synban/cmd/synban"

// Speaker is the import path of the upstream speaker binary, which
// `synban upstream` executes from the directory it runs from: building
// Synban builds it beside it.
const Speaker = "github.com/synban/synban/cmd/synban-speaker"

// companions are the programs built into the same directory as a package.
var companions = map[string][]string{Synban: {Speaker}}

// Binary is one program built on first use. Its zero value is not usable:
// set Pkg. A Binary must not be copied after first use.
type Binary struct {
	// Pkg is the import path of the main package go build compiles.
	Pkg string

	once sync.Once
	dir  string
	path string
	err  error
}

// Path builds the program the first time it is called (go build, into a
// new temporary directory any user may enter, since some tests run the
// binary as nobody) and returns the binary's path. A failed build fails t,
// on this and every later call.
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(b.build)
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func (b *Binary) build() {
	name := path.Base(b.Pkg)
	dir, err := os.MkdirTemp("", "testbin-"+name+"-")
	if err != nil {
		b.err = fmt.Errorf("go build %s: %w", b.Pkg, err)
		return
	}
	b.dir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		b.err = fmt.Errorf("go build %s: %w", b.Pkg, err)
		return
	}
	b.path = filepath.Join(dir, name)
	for _, pkg := range append([]string{b.Pkg}, companions[b.Pkg]...) {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, path.Base(pkg)), pkg).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build %s: %w: %s", pkg, err, out)
			return
		}
	}
}

// Remove deletes the binary and its directory, if Path built one. TestMain
// calls it after m.Run.
func (b *Binary) Remove() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// RunTests runs m's tests, then removes the binary, and returns the exit
// code for os.Exit: what a TestMain that only cleans up does.
func (b *Binary) RunTests(m *testing.M) int {
	code := m.Run()
	b.Remove()
	return code
}
