package packaging

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// release runs scripts/release.sh into a new temporary directory and
// returns it.
func release(t *testing.T) string {
	t.Helper()
	netnstest.RequireCommand(t, "git")
	dir := t.TempDir()
	cmd := exec.Command("../scripts/release.sh", dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/release.sh %s: %v:\n%s", dir, err, out.String())
	}
	t.Logf("release.sh %s: %s", dir, time.Since(start).Round(time.Second))
	return dir
}

// sums reads dir's SHA256SUMS.
func sums(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// artifact returns the one file of dir whose name matches pattern.
func artifact(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) != 1 {
		t.Fatalf("%s: want one %s, got %v (%v)", dir, pattern, m, err)
	}
	return m[0]
}

// headCommit is the commit the release is built from.
func headCommit(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// treeState is HEAD and the modified tracked files with their contents'
// hash: what release.sh builds from.
func treeState(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", "git rev-parse HEAD && git diff HEAD | sha256sum").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD, git diff HEAD: %v", err)
	}
	return string(out)
}

// TestRelease builds the release twice from this commit into two
// directories: the SHA256SUMS (archives and packages of both
// architectures) are identical. Then lintian checks the .deb, and the .deb
// is installed, exercised and purged with the real dpkg.
func TestRelease(t *testing.T) {
	netnstest.RequireRoot(t)
	commit, tree := headCommit(t), treeState(t)
	first := release(t)
	second := release(t)
	if now := treeState(t); now != tree {
		t.Fatalf("the checkout changed between the two builds (HEAD and modified files before:\n%s\nafter:\n%s): run the test on a quiet checkout", tree, now)
	}
	s1, s2 := sums(t, first), sums(t, second)
	for _, want := range []string{"linux-amd64.tar.gz", "linux-arm64.tar.gz", "_amd64.deb", "_arm64.deb", ".x86_64.rpm", ".aarch64.rpm"} {
		if !strings.Contains(s1, want) {
			t.Errorf("SHA256SUMS lists no *%s:\n%s", want, s1)
		}
	}
	if s1 != s2 {
		t.Errorf("two release builds of one commit differ:\n%s\n%s", s1, s2)
	}
	t.Run("tarball", func(t *testing.T) { checkTarball(t, artifact(t, first, "synban-*-linux-"+runtime.GOARCH+".tar.gz")) })
	deb := artifact(t, first, "synban_*_"+runtime.GOARCH+".deb")
	t.Run("lintian", func(t *testing.T) { checkLintian(t, deb) })
	t.Run("install", func(t *testing.T) { checkInstall(t, deb, commit) })
}

// checkTarball: the archive holds what README says, every entry owned by
// 0:0 with the commit's time, the binary static and runnable.
func checkTarball(t *testing.T, tgz string) {
	out, err := exec.Command("tar", "--numeric-owner", "-tvzf", tgz).CombinedOutput()
	if err != nil {
		t.Fatalf("tar -tvzf %s: %v: %s", tgz, err, out)
	}
	list := string(out)
	for _, want := range []string{"/synban\n", "/README.md\n", "/LICENSE\n", "/synban.8\n", "/policy.toml\n",
		"/completions/synban.bash\n", "/completions/_synban\n", "/completions/synban.fish\n",
		"/systemd/synban.service\n", "/systemd/synban.timer\n", "/systemd/synban-watch.service\n"} {
		if !strings.Contains(list, want) {
			t.Errorf("%s lacks *%s", filepath.Base(tgz), strings.TrimSpace(want))
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		if f := strings.Fields(l); len(f) < 2 || f[1] != "0/0" {
			t.Errorf("%s: entry not owned by 0/0: %s", filepath.Base(tgz), l)
		}
	}
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-xzf", tgz, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar -xzf: %v: %s", err, out)
	}
	bins, _ := filepath.Glob(filepath.Join(dir, "*", "synban"))
	if len(bins) != 1 {
		t.Fatalf("no synban binary in %s", tgz)
	}
	f, err := elf.Open(bins[0])
	if err != nil {
		t.Fatalf("the release binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the release binary is dynamically linked (%v)", p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("the release binary is not stripped: it has a .symtab")
	}
}

// checkLintian: lintian finds no error in the .deb. Warnings are listed in
// README's packaging notes, each with why.
func checkLintian(t *testing.T, deb string) {
	netnstest.RequireCommand(t, "lintian")
	out, err := exec.Command("lintian", "--no-cfg", "--fail-on", "error", deb).CombinedOutput()
	t.Logf("lintian %s:\n%s", filepath.Base(deb), out)
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") {
			t.Errorf("lintian error: %s", l)
		}
	}
	if err != nil {
		t.Errorf("lintian --fail-on error %s: %v", filepath.Base(deb), err)
	}
}
