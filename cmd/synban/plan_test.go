package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/templates"
)

type planOut struct {
	Backend        string `json:"backend"`
	BackendWhy     string `json:"backend_why"`
	BackendAssumed bool   `json:"backend_assumed"`
	Format         string `json:"format"`
	Ruleset        string `json:"ruleset"`
}

// TestPlanSaysWhichBackend: plan names the backend run would choose, why,
// and renders in its syntax; run then does choose that backend; and plan's
// probing creates nothing in the kernel.
func TestPlanSaysWhichBackend(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "iptables")
	for _, tc := range []struct {
		args                  []string
		backend, header, text string
	}{
		{nil, "nftables", "# backend run would use: nftables (nftables: works; chose nftables)\n", "table inet synban {"},
		{[]string{"--disable-nftables"}, "iptables", "# backend run would use: iptables (nftables: disabled by option; iptables: works (", "# synban ruleset for iptables + ipset"},
		{[]string{"--backend", "route"}, "route", "# backend run would use: route (route: requested, works; chose route)\n", "prohibit"},
	} {
		t.Run(tc.backend, func(t *testing.T) {
			ns := netnstest.New(t, "planb")
			dir := filepath.Join(t.TempDir(), "state")
			args := append([]string{"--state-dir", dir}, tc.args...)
			before := ns.KernelState()
			code, out, errs := runIn(t, ns, append([]string{"plan"}, args...)...)
			if code != exitOK || !strings.Contains(out, tc.header) || !strings.Contains(out, tc.text) {
				t.Fatalf("plan %v: exit %d, want a header %q and %q in:\n%s%s", tc.args, code, tc.header, tc.text, out, errs)
			}
			code, js, errs := runIn(t, ns, append([]string{"plan", "--json"}, args...)...)
			var p planOut
			if code != exitOK || json.Unmarshal([]byte(js), &p) != nil || p.Backend != tc.backend || p.BackendAssumed || p.BackendWhy == "" ||
				p.Format != templates.FormatFor(tc.backend) || !strings.Contains(p.Ruleset, tc.text) {
				t.Fatalf("plan --json %v: exit %d: %+v\n%s", tc.args, code, p, errs)
			}
			if after := ns.KernelState(); after != before {
				t.Fatalf("plan changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			// run, with the same flags, chooses what plan said.
			code, js, errs = runIn(t, ns, append([]string{"run", "--json"}, args...)...)
			var r struct {
				Backend string `json:"backend"`
			}
			if code != exitOK || json.Unmarshal([]byte(js), &r) != nil || r.Backend != tc.backend {
				t.Errorf("run %v chose %q (exit %d), plan said %s:\n%s%s", tc.args, r.Backend, code, tc.backend, js, errs)
			}
		})
	}
}

// TestPlanUnprivilegedSaysAssumed: as an ordinary user nftables and
// iptables cannot be probed; plan says which backend it assumes rather than
// falling through to routes (whose probe any user passes).
func TestPlanUnprivilegedSaysAssumed(t *testing.T) {
	netnstest.RequireRoot(t) // to switch to nobody
	bin := synbanBin.Path(t)
	for _, tc := range []struct {
		args    []string
		backend string
	}{
		{nil, "nftables"},
		{[]string{"--disable-nftables"}, "iptables"},
		{[]string{"--backend", "iptables"}, "iptables"},
	} {
		cmd := exec.Command(bin, append([]string{"plan", "--state-dir", filepath.Join(t.TempDir(), "state")}, tc.args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("plan %v as nobody: %v\n%s", tc.args, err, errb.String())
		}
		want := "# backend run would use: " + tc.backend + " (assumed: probing needs root)\n"
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan %v as nobody lacks %q:\n%s", tc.args, want, out.String())
		}
	}
}
