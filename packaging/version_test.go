package packaging

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synban/synban/internal/netnstest"
)

// TestVersionFromBuildInfo: a plain `go build` in a git clone (no -ldflags
// -X) reports the commit Go stamped, as version its first 12 digits, and
// "-dirty" once a tracked file is modified.
func TestVersionFromBuildInfo(t *testing.T) {
	netnstest.RequireCommand(t, "git")
	clone := filepath.Join(t.TempDir(), "src")
	if out, err := exec.Command("git", "clone", "-q", "--shared", "..", clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v: %s", err, out)
	}
	head, err := exec.Command("git", "-C", clone, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	commit := strings.TrimSpace(string(head))
	build := func() (doc struct {
		Version, Commit, Go string
		Modified            bool
	}) {
		t.Helper()
		bin := filepath.Join(t.TempDir(), "synban")
		cmd := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/synban")
		cmd.Dir = clone
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build in a clone: %v: %s", err, out)
		}
		out, err := exec.Command(bin, "version", "--json").Output()
		if err != nil {
			t.Fatalf("synban version --json: %v", err)
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("synban version --json: %v: %s", err, out)
		}
		return doc
	}
	if v := build(); v.Commit != commit || v.Version != commit[:12] || v.Modified || !strings.HasPrefix(v.Go, "go1.") {
		t.Errorf("clean clone of %s: version --json gives %+v", commit, v)
	}
	readme := filepath.Join(clone, "README.md")
	if err := os.WriteFile(readme, []byte("modified\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v := build(); v.Commit != commit || v.Version != commit[:12]+"-dirty" || !v.Modified {
		t.Errorf("modified clone of %s: version --json gives %+v", commit, v)
	}
}
