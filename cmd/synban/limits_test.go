package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/state"
)

var expiresRE = regexp.MustCompile(` expires [0-9dhms]+`)

// counterRE matches the per-element drop counter nft lists in a ban set.
var counterRE = regexp.MustCompile(` counter packets [0-9]+ bytes [0-9]+`)

// TestBanLimitsThroughCLI checks, with nftables in a namespace, that a
// manual ban longer than ban.max_duration is capped and says so, that a ban
// broader than the minimum prefix length is refused (exit 2, nothing
// changed) unless --force, that a /0 is refused even with --force, that a
// forced ban survives a run quietly, and that a stored ban until 2099 comes
// back capped at max_duration.
func TestBanLimitsThroughCLI(t *testing.T) {
	netnstest.RequireRoot(t)
	nft := netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, "limits")
	pol := writePolicy(t, e2ePolicy)
	dir := t.TempDir()
	synban := func(args ...string) (int, string, string) {
		t.Helper()
		return runIn(t, ns, append(args, "-c", pol, "--state-dir", dir, "--backend", "nftables")...)
	}
	elements := func() string {
		t.Helper()
		out, err := ns.Run(nft, "list", "table", "inet", "synban")
		if err != nil {
			return ""
		}
		// The time left changes from one listing to the next; the drop
		// counters are not what this test is about.
		return counterRE.ReplaceAllString(expiresRE.ReplaceAllString(out, ""), "")
	}

	code, out, errOut := synban("ban", "192.0.2.7", "--for", "30000h")
	if code != 0 || !strings.Contains(out, "banned 192.0.2.7/32 for 24h0m0s (capped by ban.max_duration)") {
		t.Fatalf("ban --for 30000h: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if el := elements(); !strings.Contains(el, "192.0.2.7 timeout 1d") {
		t.Fatalf("the kernel does not hold the capped ban for 1d:\n%s", el)
	}

	before := elements()
	for _, tc := range []struct{ subject, want string }{
		{"1.0.0.0/8", "refusing to ban 1.0.0.0/8: broader than ban.min_ipv4_length /16; add --force to ban it anyway"},
		{"2000::/3", "refusing to ban 2000::/3: broader than ban.min_ipv6_length /32; add --force to ban it anyway"},
		{"0.0.0.0/0", "refusing to ban 0.0.0.0/0: a /0 bans every address, even with --force"},
		{"::/0", "refusing to ban ::/0: a /0 bans every address, even with --force"},
	} {
		args := []string{"ban", tc.subject}
		if strings.HasSuffix(tc.subject, "/0") {
			args = append(args, "--force")
		}
		code, out, errOut := synban(args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("ban %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.subject, code, out, errOut, tc.want)
		}
	}
	// The reason a host address is protected reaches the message.
	ns.MustRun("ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	ns.MustRun("ip", "addr", "add", "10.77.0.1/24", "dev", "d0")
	ns.MustRun("ip", "link", "set", "d0", "up")
	ns.MustRun("ip", "link", "set", "d1", "up")
	ns.MustRun("ip", "route", "add", "default", "via", "10.77.0.254")
	for subject, want := range map[string]string{
		"10.77.0.254": "refusing to ban 10.77.0.254/32: 10.77.0.254/32 is protected (default gateway)",
		"10.77.0.1":   "refusing to ban 10.77.0.1/32: 10.77.0.1/32 is protected (host address)",
	} {
		if code, _, errOut := synban("ban", subject); code != 2 || !strings.Contains(errOut, want) {
			t.Errorf("ban %s: exit %d, stderr %q; want exit 2 and %q", subject, code, errOut, want)
		}
	}
	if after := elements(); after != before {
		t.Fatalf("a refused ban changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	if code, out, errOut := synban("ban", "1.0.0.0/8", "--force"); code != 0 || !strings.Contains(out, "banned 1.0.0.0/8 for 10m0s") {
		t.Fatalf("ban --force: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if el := elements(); !strings.Contains(el, "1.0.0.0/8 timeout 10m") {
		t.Fatalf("the forced ban is not in the kernel:\n%s", el)
	}

	// A ban stored until 2099 (an old state file) comes back capped.
	store, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := store.Update(func(s *state.State) error {
		s.Upsert(state.Ban{Prefix: netip.MustParsePrefix("198.51.100.9/32"), Since: now, Until: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), Reason: "manual ban", Rule: "manual", Backend: "nftables"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A run with nothing to detect keeps the forced ban, restores the
	// stored one capped, and has nothing to warn about.
	code, out, errOut = synban("run")
	if code != 0 || errOut != "" {
		t.Fatalf("run: exit %d, stdout %q, stderr %q; want exit 0 and nothing on stderr", code, out, errOut)
	}
	el := elements()
	if !strings.Contains(el, "1.0.0.0/8 timeout 10m") {
		t.Errorf("the forced ban is gone after a run:\n%s", el)
	}
	if !strings.Contains(el, `198.51.100.9 timeout 1d comment "manual ban (capped by ban.max_duration)"`) {
		t.Errorf("the ban stored until 2099 was not restored capped at 1d:\n%s", el)
	}
	st, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	b, ok := st.Find(netip.MustParsePrefix("198.51.100.9/32"))
	if !ok || b.Until.After(time.Now().Add(24*time.Hour)) {
		t.Errorf("stored ban after the run: %+v, want it to end within 24h", b)
	}
}

// TestSecondRunQuiet floods the victim, bans with one run, and checks that
// the next run (the half-open entries still there, the ban restored from
// the state store and decided again) prints nothing at the default level.
func TestSecondRunQuiet(t *testing.T) {
	requireFloodTools(t)
	l := newLab(t, e2ePolicy)
	l.flood(200)
	netnstest.Eventually(t, 10*time.Second, func() bool { return l.halfOpen(attackerAddr) >= 150 },
		"the flood left fewer than 150 half-open entries in the victim")
	args := []string{"run", "--backend", "nftables", "-c", l.policy, "--state-dir", l.stateDir}
	code, out, errOut := runIn(t, l.victim, args...)
	if code != 0 || !l.status("nftables").banned(attackerAddr+"/32") {
		t.Fatalf("first run: exit %d, stdout %q, stderr %q; attacker not banned", code, out, errOut)
	}
	if l.halfOpen(attackerAddr) < 50 {
		t.Fatal("the half-open entries are gone: the second run would not decide the ban again")
	}
	code, out, errOut = runIn(t, l.victim, args...)
	if code != 0 || errOut != "" || out != "" {
		t.Fatalf("second run: exit %d, stdout %q, stderr %q; want exit 0 and no output", code, out, errOut)
	}
}

// TestReplayNothingParsed checks --from with captures that hold nothing
// usable: all lines malformed, or an empty file, exit 2 naming the file; a
// table with only its header line (a quiet host) is a legitimate empty
// table.
func TestReplayNothingParsed(t *testing.T) {
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	capture := func(tcp, tcp6 *string) string {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "net"), 0o700); err != nil {
			t.Fatal(err)
		}
		for name, text := range map[string]*string{"tcp": tcp, "tcp6": tcp6} {
			if text != nil {
				if err := os.WriteFile(filepath.Join(dir, "net", name), []byte(*text), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		return dir
	}
	str := func(s string) *string { return &s }
	garbage := header + "not a line\n   0: zz:zz 00000000:0000 01\n"
	for _, tc := range []struct {
		name      string
		tcp, tcp6 *string
		code      int
		want      string
	}{
		{"all malformed", str(garbage), nil, exitUsage, "net/tcp: no line parsed (2 malformed)"},
		{"tcp6 all malformed", str(header), str(garbage), exitUsage, "net/tcp6: no line parsed (2 malformed)"},
		{"empty file", str(""), nil, exitUsage, "net/tcp: empty file; a capture holds at least the header line"},
		{"empty tcp6", str(header), str(""), exitUsage, "net/tcp6: empty file"},
		{"header only", str(header), str(header), exitOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := capture(tc.tcp, tc.tcp6)
			code, out, errs := runMain(t, "plan", "--from", dir)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("plan --from: exit %d, stderr %q, stdout %q; want exit %d and %q", code, errs, out, tc.code, tc.want)
			}
			if tc.code == exitUsage && !strings.Contains(errs, "--from "+dir+": ") {
				t.Errorf("stderr %q does not name --from %s", errs, dir)
			}
		})
	}
}
