package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules/nft"
	"github.com/synban/synban/state"
)

// genRun runs `synban run --json` in ns and decodes what it printed.
func genRun(t *testing.T, ns *netnstest.NS, args ...string) map[string]any {
	t.Helper()
	code, stdout, stderr := runIn(t, ns, append([]string{"run", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("run: exit %d\n%s", code, stderr)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("run --json: %v\n%s", err, stdout)
	}
	return out
}

// TestGenerationShortcut: a run that finds the nftables generation as the
// last full run left it, and decides nothing, reads nothing back
// ("unchanged"); an outside `nft flush ruleset`, `nft delete element` or
// `nft add element` into synban's set, a manual ban and a policy edit each
// move the generation or the structure, and the next run repairs exactly
// as a full reconcile does.
func TestGenerationShortcut(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, "genid")
	ns.MustRun("ip", "link", "set", "lo", "up")
	dir := t.TempDir()
	pol := writePolicy(t, "[meter]\nenabled = false\n")
	flags := []string{"-c", pol, "--state-dir", dir, "--backend", "nftables"}
	unchanged := func(out map[string]any) bool { return out["unchanged"] == true }
	set := func() string { return ns.MustRun("nft", "list", "set", "inet", "synban", "ban_v4") }

	if code, _, stderr := runIn(t, ns, append([]string{"ban", "192.0.2.1", "--for", "1h"}, flags...)...); code != 0 {
		t.Fatalf("ban: exit %d\n%s", code, stderr)
	}
	if st := requireValidState(t, dir); st.Applied != nil {
		t.Fatalf("a manual ban left an Applied record: %+v", *st.Applied)
	}
	if out := genRun(t, ns, flags...); unchanged(out) {
		t.Fatalf("the run after a manual ban skipped the reconcile: %v", out)
	}
	if st := requireValidState(t, dir); st.Applied == nil || st.Applied.Backend != "nftables" || st.Applied.Ruleset == "" {
		t.Fatalf("a full run recorded no Applied: %+v", st.Applied)
	}
	if out := genRun(t, ns, flags...); !unchanged(out) || out["restored"] != float64(1) {
		t.Fatalf("a run with nothing to do reconciled in full, or did not count the stored ban: %v", out)
	}

	// 1. An outside flush: restored.
	ns.MustRun("nft", "flush", "ruleset")
	out := genRun(t, ns, flags...)
	if unchanged(out) || out["created"] != true || !strings.Contains(set(), "192.0.2.1") {
		t.Fatalf("after nft flush ruleset: %v\n%s", out, set())
	}
	if out := genRun(t, ns, flags...); !unchanged(out) {
		t.Fatalf("the run after the repair reconciled in full: %v", out)
	}

	// 2. An outside delete of synban's element: put back.
	ns.MustRun("nft", "delete", "element", "inet", "synban", "ban_v4", "{ 192.0.2.1 }")
	out = genRun(t, ns, flags...)
	if unchanged(out) || out["added"] != float64(1) || !strings.Contains(set(), "192.0.2.1") {
		t.Fatalf("after nft delete element: %v\n%s", out, set())
	}

	// 3. An outside add into synban's set: a full reconcile, which keeps it
	// (bans in the kernel and not in the ruleset expire by themselves).
	ns.MustRun("nft", "add", "element", "inet", "synban", "ban_v4", "{ 203.0.113.5 timeout 1h }")
	out = genRun(t, ns, flags...)
	if s := set(); unchanged(out) || !strings.Contains(s, "203.0.113.5") || !strings.Contains(s, "192.0.2.1") {
		t.Fatalf("after nft add element: %v\n%s", out, s)
	}
	if out := genRun(t, ns, flags...); !unchanged(out) {
		t.Fatalf("the run after the outside add reconciled in full: %v", out)
	}

	// A ban written into the store by other means (a backup restored):
	// the count differs, the run reconciles in full and applies it.
	store, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Update(func(s *state.State) error {
		s.Upsert(state.Ban{Prefix: netip.MustParsePrefix("192.0.2.77/32"), Since: time.Now(), Until: time.Now().Add(time.Hour), Reason: "restored backup"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if out := genRun(t, ns, flags...); unchanged(out) || !strings.Contains(set(), "192.0.2.77") {
		t.Fatalf("a ban added to the store by hand was not applied: %v\n%s", out, set())
	}

	// A policy edit changes the structure with the generation unchanged.
	pol2 := writePolicy(t, "[meter]\nenabled = true\n")
	flags2 := []string{"-c", pol2, "--state-dir", dir, "--backend", "nftables"}
	if out := genRun(t, ns, flags2...); unchanged(out) {
		t.Fatalf("a run after a policy edit skipped the reconcile: %v", out)
	}
	if s := ns.MustRun("nft", "list", "table", "inet", "synban"); !strings.Contains(s, "meter_v4") {
		t.Fatalf("the edited policy's meter was not applied:\n%s", s)
	}
	if out := genRun(t, ns, flags2...); !unchanged(out) {
		t.Fatalf("the run after the policy edit's apply reconciled in full: %v", out)
	}
}

// writeList writes a ban list to a file and returns its path.
func writeList(t *testing.T, lines []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "blocklist.txt")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// nftGeneration reads the generation id of ns.
func nftGeneration(t *testing.T, ns *netnstest.NS) uint32 {
	t.Helper()
	b, err := nft.New(nft.Options{NetNS: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	g, err := b.Generation(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestBanFromFile100k: `synban ban --from-file` with 100,000 lines
// (addresses of both families and prefixes, with comments and blank lines)
// applies them in one nftables transaction (the generation moves by one)
// and records every one in the state store.
func TestBanFromFile100k(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, "banfile")
	dir := t.TempDir()
	pol := writePolicy(t, "[meter]\nenabled = false\n[ban]\nmax_entries = 131072\n")
	lines := []string{"# imported blocklist", ""}
	want := 0
	for i := 0; i < 90000; i++ {
		lines = append(lines, fmt.Sprintf("198.%d.%d.%d", 18+i>>16, i>>8&255, i&255))
		want++
	}
	for i := 0; i < 9000; i++ {
		lines = append(lines, fmt.Sprintf("2001:db8::%x  # v6", i+1))
		want++
	}
	for i := 0; i < 1000; i++ {
		lines = append(lines, fmt.Sprintf("100.%d.%d.0/24", 64+i/256, i%256))
		want++
	}
	// Inside a prefix of the list: banned through it.
	lines = append(lines, "100.64.0.9")
	file := writeList(t, lines)
	before := nftGeneration(t, ns)
	start := time.Now()
	code, stdout, stderr := runIn(t, ns, "ban", "--from-file", file, "--for", "1h", "-c", pol, "--state-dir", dir, "--backend", "nftables")
	t.Logf("ban --from-file of %d lines took %s", len(lines), time.Since(start))
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("banned %d addresses and prefixes, 1 more inside them", want)) {
		t.Fatalf("ban --from-file: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if after := nftGeneration(t, ns); after != before+1 {
		t.Fatalf("ban --from-file moved the generation from %d to %d: not one transaction", before, after)
	}
	b, err := nft.New(nft.Options{NetNS: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	bans, err := b.Bans(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reading the %d bans back took %s", len(bans), time.Since(start))
	if len(bans) != want {
		t.Fatalf("the kernel holds %d bans, want %d", len(bans), want)
	}
	if st := requireValidState(t, dir); len(st.Bans) != want || st.Applied != nil {
		t.Fatalf("the state store holds %d bans (applied %v), want %d and no Applied record", len(st.Bans), st.Applied, want)
	}
}

// TestBanFromFileBadLine: a line that is not an address, a prefix the
// policy refuses without --force, or a list read from stdin with a bad
// line: exit 2 naming FILE:LINE, and nothing applied or stored.
func TestBanFromFileBadLine(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, "banbad")
	dir := t.TempDir()
	pol := writePolicy(t, "[meter]\nenabled = false\n")
	flags := []string{"-c", pol, "--state-dir", dir, "--backend", "nftables"}
	notAddr := writeList(t, []string{"# list", "192.0.2.1", "", "192.0.2.2 # two", "192.0.2.300", "192.0.2.4"})
	broad := writeList(t, []string{"192.0.2.1", "2001:db8::1", "10.0.0.0/8", "192.0.2.4"})
	for _, c := range []struct {
		file, want string
	}{
		{notAddr, notAddr + `:5: "192.0.2.300"`},
		{broad, broad + ":3: refusing to ban 10.0.0.0/8"},
	} {
		code, _, stderr := runIn(t, ns, append([]string{"ban", "--from-file", c.file}, flags...)...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Fatalf("ban --from-file %s: exit %d, want %d naming %q; stderr:\n%s", c.file, code, exitUsage, c.want, stderr)
		}
		if out := ns.MustRun("nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
			t.Fatalf("a refused list applied something:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(dir, state.FileName)); err == nil {
			if st := requireValidState(t, dir); len(st.Bans) != 0 {
				t.Fatalf("a refused list stored bans: %v", st.Bans)
			}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := synbanIn(t, ctx, ns, append([]string{"ban", "--from-file", "-"}, flags...)...)
	cmd.Stdin = strings.NewReader("192.0.2.1\nnonsense\n")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitUsage || !strings.Contains(string(out), `stdin:2: "nonsense"`) {
		t.Fatalf("ban --from-file - with a bad line 2: %v\n%s", err, out)
	}
	if code, _, _ := runIn(t, ns, append([]string{"ban", "192.0.2.1", "--from-file", broad}, flags...)...); code != exitUsage {
		t.Fatalf("ban with an address and --from-file: exit %d, want %d", code, exitUsage)
	}
}
