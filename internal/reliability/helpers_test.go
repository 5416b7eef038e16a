package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/testbin"
	"github.com/synban/synban/state"
)

// synbanBin is cmd/synban, built once for the suite.
var synbanBin = testbin.Binary{Pkg: testbin.Synban}

func TestMain(m *testing.M) { os.Exit(synbanBin.RunTests(m)) }

// report prints a count line both in the test log and on standard output,
// where CI shows it even for passing tests.
func report(t testing.TB, format string, args ...any) {
	t.Helper()
	netnstest.Report(t, "reliability", format, args...)
}

// runSynban runs the synban binary inside ns and returns its exit code,
// standard output and standard error.
func runSynban(t testing.TB, ns *netnstest.NS, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb strings.Builder
	cmd := ns.Command(ctx, append([]string{synbanBin.Path(t)}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String(), errb.String()
		}
		t.Fatalf("run synban %v: %v", args, err)
	}
	return 0, out.String(), errb.String()
}

// writePolicy writes text as a policy file in a temporary directory.
func writePolicy(t testing.TB, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeState replaces the bans in the state store at dir with addrs, each
// active for an hour, and forgets the last apply's generation record, as a
// run that decided them would: the next run reconciles in full (the
// generation shortcut trusts a store only synban wrote after an apply).
func writeState(t testing.TB, dir string, addrs []netip.Addr) {
	t.Helper()
	st, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = st.Update(func(s *state.State) error {
		s.Applied = nil
		s.Bans = make([]state.Ban, len(addrs))
		for i, a := range addrs {
			s.Bans[i] = state.Ban{Prefix: netip.PrefixFrom(a, a.BitLen()), Since: now, Until: now.Add(time.Hour), Reason: "reliability", Backend: "nftables"}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// nftSetAddrs lists the addresses in set of table inet tbl inside ns with
// `nft -j`; ok is false when the table does not exist.
func nftSetAddrs(t testing.TB, ns *netnstest.NS, tbl, set string) (addrs []netip.Addr, ok bool) {
	t.Helper()
	if _, err := ns.Run("nft", "list", "table", "inet", tbl); err != nil {
		return nil, false
	}
	out := ns.MustRun("nft", "-j", "list", "set", "inet", tbl, set)
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j list set %s: %v", set, err)
	}
	for _, obj := range doc.Nftables {
		raw, ok := obj["set"]
		if !ok {
			continue
		}
		var s struct {
			Elem []json.RawMessage `json:"elem"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("nft -j set: %v", err)
		}
		for _, e := range s.Elem {
			addrs = append(addrs, elemAddr(t, e))
		}
	}
	return addrs, true
}

// elemAddr decodes one element of `nft -j`: a plain string, or an object
// {"elem": {"val": "...", "timeout": ...}}.
func elemAddr(t testing.TB, e json.RawMessage) netip.Addr {
	t.Helper()
	var s string
	if json.Unmarshal(e, &s) == nil {
		return netip.MustParseAddr(s)
	}
	var o struct {
		Elem struct {
			Val string `json:"val"`
		} `json:"elem"`
	}
	if err := json.Unmarshal(e, &o); err != nil || o.Elem.Val == "" {
		t.Fatalf("unexpected nft -j element %s", e)
	}
	return netip.MustParseAddr(o.Elem.Val)
}

// mib renders bytes as MiB.
func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// withStateDir adds --state-dir dir to args for the commands that take it
// (check does not: it never reads the state store).
func withStateDir(args []string, dir string) []string {
	if args[0] == "check" {
		return args
	}
	return append(args, "--state-dir", dir)
}
