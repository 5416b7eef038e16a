package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// runMain runs synban in-process and returns its exit code and output.
func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodesForBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[[rule]]\nname = \"x\"\nstate = \"syn_recv\"\nthreshold = 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"check", "-c", bad}, exitUsage, "bad.toml:4: rule[0].threshold"},
		{[]string{"plan", "-c", bad}, exitUsage, "bad.toml:4"},
		{[]string{"run", "-c", bad, "--state-dir", dir}, exitUsage, "bad.toml:4"},
		{[]string{"check", "-c", filepath.Join(dir, "missing.toml")}, exitUsage, "missing.toml"},
		{[]string{"nonsense"}, exitUsage, "unknown command"},
		{[]string{"plan", "--format", "pf"}, exitUsage, "--format"},
		{[]string{"plan", "--backend", "pf"}, exitUsage, "--backend"},
		{[]string{"ban", "10.0.0.1/8", "--state-dir", dir}, exitUsage, `did you mean "10.0.0.0/8"`},
		{[]string{"ban", "not-an-address", "--state-dir", dir}, exitUsage, "not-an-address"},
		{[]string{"ban", "::1", "--state-dir", dir}, exitUsage, "loopback"},
		{[]string{"ban", "192.0.2.9", "--for", "soon", "--state-dir", dir}, exitUsage, "--for"},
		{[]string{"unban", "--state-dir", dir}, exitUsage, "unban takes"},
		{[]string{"plan", "extra"}, exitUsage, "no arguments"},
		{[]string{"check", "--no-such-flag"}, exitUsage, "no-such-flag"},
	} {
		code, out, errs := runMain(t, tc.args...)
		if code != tc.code || !strings.Contains(out+errs, tc.want) {
			t.Errorf("synban %v: exit %d, want %d with %q; got:\n%s%s", tc.args, code, tc.code, tc.want, out, errs)
		}
	}
	// Bad input never creates the state directory.
	if _, err := os.Stat(filepath.Join(dir, "state.db")); !os.IsNotExist(err) {
		t.Errorf("bad input left a state file behind: %v", err)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"ban", "-h"}, {"version"}} {
		if code, out, errs := runMain(t, args...); code != exitOK || out == "" {
			t.Errorf("synban %v: exit %d, output %q %q", args, code, out, errs)
		}
	}
}

// TestHelpPrintedOnce: every command's --help and -h print its usage once,
// on stdout, nothing on stderr, and exit 0; a bad flag prints the error and
// the usage once, on stderr only, and exits 2.
func TestHelpPrintedOnce(t *testing.T) {
	for _, c := range commands() {
		for _, h := range []string{"--help", "-h"} {
			code, out, errs := runMain(t, c.name, h)
			want := "usage: synban " + c.name + " "
			if code != exitOK || strings.Count(out, want) != 1 || errs != "" {
				t.Errorf("synban %s %s: exit %d, %d usage(s) on stdout, stderr %q; want exit 0, one usage on stdout, empty stderr:\n%s",
					c.name, h, code, strings.Count(out, want), errs, out)
			}
		}
		code, out, errs := runMain(t, c.name, "--no-such-flag")
		if code != exitUsage || out != "" || strings.Count(errs, "usage: synban "+c.name+" ") != 1 || !strings.Contains(errs, "no-such-flag") {
			t.Errorf("synban %s --no-such-flag: exit %d, stdout %q, stderr %q", c.name, code, out, errs)
		}
	}
}

// TestPlanChangesNothing: plan as a whole is a valid nft script, --format
// nft prints the script alone, and neither writes a state directory.
func TestPlanChangesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	code, out, errs := runMain(t, "plan", "--state-dir", dir)
	if code != exitOK {
		t.Fatalf("plan: exit %d: %s", code, errs)
	}
	if !strings.HasPrefix(out, "# synban plan") || !strings.Contains(out, "table inet synban {") {
		t.Fatalf("plan output lacks summary or script:\n%s", out)
	}
	code, script, errs := runMain(t, "plan", "--format", "nft", "--state-dir", dir)
	if code != exitOK || !strings.HasPrefix(script, "#!/usr/sbin/nft -f") {
		t.Fatalf("plan --format nft: exit %d, %s\n%s", code, errs, script)
	}
	code, js, _ := runMain(t, "plan", "--json", "--state-dir", dir)
	var plan struct {
		Verdicts []any  `json:"verdicts"`
		Ruleset  string `json:"ruleset"`
	}
	if code != exitOK || json.Unmarshal([]byte(js), &plan) != nil || !strings.Contains(plan.Ruleset, "table inet synban") {
		t.Fatalf("plan --json: exit %d, %s", code, js)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("plan created the state directory %s", dir)
	}
	if os.Geteuid() == 0 {
		ns := netnstest.New(t, "plan")
		f := filepath.Join(t.TempDir(), "plan.nft")
		if err := os.WriteFile(f, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		ns.MustRun("nft", "-c", "-f", f)
	}
}

// TestManualBanLifecycle runs ban --for 2s, status, expiry, unban and flush
// through the CLI in a namespace, with every backend.
func TestManualBanLifecycle(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	for _, backend := range []string{"nftables", "iptables", "route"} {
		t.Run(backend, func(t *testing.T) {
			l := newLab(t, e2ePolicy)
			// An unrelated table someone else owns: flush must leave it alone.
			l.victim.MustRun("nft", "add table inet other; add chain inet other c { type filter hook input priority 0; }; add rule inet other c tcp dport 22 accept")
			other := l.victim.MustRun("nft", "list", "table", "inet", "other")

			if out, err := l.synban("ban", "198.51.100.7", "--for", "2s", "--backend", backend); err != nil {
				t.Fatalf("ban: %v\n%s", err, out)
			}
			if out, err := l.synban("ban", "2001:db8:7::/48", "--for", "1h", "--backend", backend); err != nil {
				t.Fatalf("ban prefix: %v\n%s", err, out)
			}
			st := l.status(backend)
			if !st.banned("198.51.100.7/32") || !st.banned("2001:db8:7::/48") {
				t.Fatalf("status does not list both bans: %+v", st.Bans)
			}
			for _, b := range st.Bans {
				if b.Expires <= 0 || b.Expires > 3600 {
					t.Errorf("ban %s has %v s left, want within (0, 3600]", b.Prefix, b.Expires)
				}
			}
			// The 2 s ban goes by itself. The route backend has no kernel
			// timeouts: the next run expires it (status only reads).
			netnstest.Eventually(t, 10*time.Second, func() bool {
				if backend == "route" {
					if out, err := l.synban("run", "--backend", backend); err != nil {
						t.Fatalf("run: %v\n%s", err, out)
					}
				}
				return !l.status(backend).banned("198.51.100.7/32")
			}, "the 2s ban of 198.51.100.7 did not expire")

			if out, err := l.synban("unban", "2001:db8:7::/48", "--backend", backend); err != nil || !strings.Contains(out, "unbanned 1 of 1") {
				t.Fatalf("unban: %v\n%s", err, out)
			}
			if st := l.status(backend); len(st.Bans) != 0 {
				t.Fatalf("bans left after unban: %+v", st.Bans)
			}
			if out, err := l.synban("flush", "--backend", backend); err != nil {
				t.Fatalf("flush: %v\n%s", err, out)
			}
			if got := l.victim.MustRun("nft", "list", "table", "inet", "other"); got != other {
				t.Fatalf("flush changed someone else's table:\nbefore:\n%s\nafter:\n%s", other, got)
			}
			if backend == "nftables" {
				if out, err := l.victim.Run("nft", "list", "table", "inet", "synban"); err == nil {
					t.Fatalf("synban's table survived flush:\n%s", out)
				}
			}
		})
	}
}

// TestBackendFallback: with nftables unusable synban picks iptables, and with
// no iptables program either it picks routes, and says so.
func TestBackendFallback(t *testing.T) {
	netnstest.RequireRoot(t)
	l := newLab(t, e2ePolicy)
	out, err := l.synban("run", "-v", "--disable-nftables")
	if err != nil || !strings.Contains(out, "chose iptables") {
		t.Fatalf("run --disable-nftables did not choose iptables and say so: %v\n%s", err, out)
	}
	noIPT := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(noIPT, []byte(e2ePolicy+"\n[iptables]\npath = \"/nonexistent/iptables\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.policy = noIPT
	out, err = l.synban("run", "-v", "--disable-nftables")
	if err != nil || !strings.Contains(out, "chose route") {
		t.Fatalf("run without nftables and iptables did not choose route and say so: %v\n%s", err, out)
	}
}

// TestEscalationAcrossRuns: a source banned again within the window gets a
// longer ban, capped at the maximum.
func TestEscalationAcrossRuns(t *testing.T) {
	requireFloodTools(t)
	l := newLab(t, e2ePolicy+`
[ban]
duration = "10m"
escalate_factor = 2.0
max_duration = "30m"
`)
	l.flood(200)
	netnstest.Eventually(t, 10*time.Second, func() bool { return l.halfOpen(attackerAddr) >= 150 },
		"the flood left fewer than 150 half-open entries in the victim")
	var got []float64
	for run := 0; run < 3; run++ {
		if out, err := l.synban("run", "--backend", "nftables"); err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out)
		}
		st := l.status("nftables")
		if len(st.Bans) != 1 {
			t.Fatalf("run %d: want the attacker banned, got %+v", run, st.Bans)
		}
		got = append(got, st.Bans[0].Expires)
		// Unban so the next run bans afresh from the same half-open entries.
		if out, err := l.synban("unban", attackerAddr, "--backend", "nftables"); err != nil {
			t.Fatalf("unban: %v\n%s", err, out)
		}
	}
	// 10m, then 20m, then capped at 30m (time left a little under each).
	for i, want := range []float64{600, 1200, 1800} {
		if got[i] > want || got[i] < want-30 {
			t.Fatalf("ban lengths over three runs = %v s, want about %v", got, []float64{600, 1200, 1800})
		}
	}
}

// TestPlanFromCapture replays captured tables: the single-source flood is
// banned, the IPv4-mapped and IPv6 sources of the mixed capture are banned
// in their own families, and the JSON verdicts say so.
func TestPlanFromCapture(t *testing.T) {
	code, out, errs := runMain(t, "plan", "--from", "../../testdata/proc/single-flood", "--format", "nft")
	if code != exitOK || !strings.Contains(out, "203.0.113.7 timeout 600s") {
		t.Fatalf("plan --from single-flood: exit %d, %s\n%s", code, errs, out)
	}
	code, js, errs := runMain(t, "plan", "--from", "../../testdata/proc/mixed", "--json")
	var plan struct {
		Bans []struct{ Prefix string } `json:"bans"`
	}
	if code != exitOK || json.Unmarshal([]byte(js), &plan) != nil {
		t.Fatalf("plan --from mixed --json: exit %d, %s\n%s", code, errs, js)
	}
	var v4, v6 int
	for _, b := range plan.Bans {
		if strings.Contains(b.Prefix, "::ffff:") {
			t.Errorf("IPv4-mapped source banned as IPv6: %s", b.Prefix)
		}
		if strings.Contains(b.Prefix, ":") {
			v6++
		} else {
			v4++
		}
	}
	if v4 == 0 || v6 == 0 {
		t.Errorf("want IPv4 and IPv6 bans from the mixed capture, got %+v", plan.Bans)
	}
	if code, _, errs := runMain(t, "sample", "--from", "../../testdata/proc/malformed"); code != exitOK {
		t.Errorf("sample --from malformed: exit %d: %s", code, errs)
	} else if !strings.Contains(errs, "malformed") {
		t.Errorf("sample --from malformed did not warn about malformed lines: %s", errs)
	}
}
