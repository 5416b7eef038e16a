package netnstest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestLinkPings(t *testing.T) {
	a, b := New(t, "pa"), New(t, "pb")
	Link(t, a, b, []string{"10.250.0.1/24", "fd00:250::1/64"}, []string{"10.250.0.2/24", "fd00:250::2/64"})
	out := a.MustRun("ping", "-c", "1", "-W", "2", "10.250.0.2")
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping over veth failed: %s", out)
	}
	out = a.MustRun("ping", "-6", "-c", "1", "-W", "2", "fd00:250::2")
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping6 over veth failed: %s", out)
	}
}

// TestRequireCommandHelper is run by TestRequireCommandMissing in a child
// process whose PATH holds nothing; on its own it skips.
func TestRequireCommandHelper(t *testing.T) {
	if os.Getenv("NETNSTEST_HELPER") != "1" {
		t.Skip("run by TestRequireCommandMissing")
	}
	RequireCommand(t, "nft")
	t.Log("nft found")
}

// TestRequireCommandMissing: a missing program skips with the exact
// install command as the reason, and under CI=true fails with it.
func TestRequireCommandMissing(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		ci, verdict string
		fails       bool
	}{{"", "--- SKIP", false}, {"true", "--- FAIL", true}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRequireCommandHelper$", "-test.v")
		cmd.Env = append(os.Environ(), "PATH="+empty, "NETNSTEST_HELPER=1", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		want := "test needs nft, which is not installed"
		if !strings.Contains(string(out), want) || !strings.Contains(string(out), ": apt-get install nftables") ||
			!strings.Contains(string(out), tc.verdict) || (err != nil) != tc.fails {
			t.Errorf("CI=%q: err %v, want %s with %q and the apt-get line:\n%s", tc.ci, err, tc.verdict, want, out)
		}
	}
}

// TestProgramsGoThroughRequireCommand: every test file that runs one of
// the programs of Packages with exec.Command itself (not through NS.Run,
// which checks) calls RequireCommand for it, so a missing program skips
// with its install command instead of failing with "executable file not
// found".
func TestProgramsGoThroughRequireCommand(t *testing.T) {
	root := filepath.Join("..", "..")
	call := regexp.MustCompile(`exec\.Command(?:Context)?\((?:ctx, |[a-zA-Z]+, )?"([a-z0-9-]+)"`)
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range call.FindAllStringSubmatch(string(src), -1) {
			if _, ok := Package(m[1]); !ok {
				continue
			}
			checked++
			if !strings.Contains(string(src), `RequireCommand(t, "`+m[1]+`")`) && !strings.Contains(string(src), `RequireCommand(b, "`+m[1]+`")`) &&
				!strings.Contains(string(src), `RequireCommand(tb, "`+m[1]+`")`) {
				t.Errorf("%s runs %s with exec.Command but never calls netnstest.RequireCommand for it", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("found no exec.Command of a known program: the pattern no longer matches the tests")
	}
}

// TestInstallHint: the hint is the exact apt-get command.
func TestInstallHint(t *testing.T) {
	for prog, want := range map[string]string{"nft": "apt-get install nftables", "ip6tables-save": "apt-get install iptables",
		"tmux": "apt-get install tmux", "cscli": "apt-get install crowdsec"} {
		if got := InstallHint(prog); got != want {
			t.Errorf("InstallHint(%s) = %q, want %q", prog, got, want)
		}
	}
}
