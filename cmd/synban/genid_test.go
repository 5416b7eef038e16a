package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/synban/synban/internal/netnstest"
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
	if out := genRun(t, ns, flags...); !unchanged(out) {
		t.Fatalf("a run with nothing to do reconciled in full: %v", out)
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
