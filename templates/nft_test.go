package templates

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/golden"
	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
)

// updating reports whether the goldens are rewritten instead of compared
// (SYNBAN_UPDATE_GOLDEN=1; see internal/golden).
func updating() bool { return golden.Update() }

const goldenDir = "../testdata/golden"

// checkGolden compares got with testdata/golden/name.nft, or rewrites it
// under SYNBAN_UPDATE_GOLDEN=1.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(goldenDir, name+".nft")
	if updating() {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run SYNBAN_UPDATE_GOLDEN=1 go test ./templates/ to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("rendering differs from %s (SYNBAN_UPDATE_GOLDEN=1 go test ./templates/ rewrites it)\n%s", path, lineDiff(string(want), string(got)))
	}
}

// lineDiff shows the first differing lines of want and got.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
			shown++
		}
	}
	return b.String()
}

// nftCheck feeds script to `nft -c -f -` in a throwaway network namespace
// (unshare -n), so the kernel and nft validate it without touching the host.
func nftCheck(t *testing.T, script []byte) {
	t.Helper()
	netnstest.RequireRoot(t)
	nft := netnstest.RequireCommand(t, "nft")
	out, err := nftInNewNetns(t, script, nft+" -c -f -")
	if err != nil {
		t.Fatalf("nft -c rejected the script: %v\n%s", err, out)
	}
}

// nftInNewNetns runs the shell command cmd in a new network namespace that
// vanishes with it, with script on stdin.
func nftInNewNetns(t *testing.T, script []byte, cmd string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "unshare", "-n", "sh", "-c", cmd)
	c.Stdin = bytes.NewReader(script)
	out, err := c.CombinedOutput()
	return string(out), err
}

func p(s string) netip.Prefix {
	if !strings.Contains(s, "/") {
		a := netip.MustParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen())
	}
	return netip.MustParsePrefix(s)
}

// handRulesets are Rulesets built by hand to reach corners of the template
// that the policy/detect pipeline cases may not: other families, sub-second
// timeouts, a ban without a timeout, empty everything.
func handRulesets() map[string]*rules.Ruleset {
	return map[string]*rules.Ruleset{
		"hand-full": {
			Table: "synban", Family: "inet", Hooks: []string{"input", "forward"}, Priority: -10,
			Allow: []netip.Prefix{p("10.0.0.0/8"), p("127.0.0.0/8"), p("192.0.2.1"), p("::1"), p("2001:db8::1")},
			Bans: []rules.Ban{
				{Prefix: p("198.51.100.0/24"), Timeout: 10 * time.Minute, Reason: "syn-flood: 4000 syn_recv from 200 sources >= 200"},
				{Prefix: p("198.51.101.0/24"), Timeout: time.Hour, Reason: "adjacent /24"},
				{Prefix: p("203.0.113.7"), Timeout: 10 * time.Minute, Reason: "syn-flood: 120 syn_recv >= 50"},
				{Prefix: p("203.0.113.8"), Timeout: 1500 * time.Millisecond, Reason: `needs "sanitising" \ here`},
				{Prefix: p("203.0.113.9"), Timeout: 0, Reason: ""},
				{Prefix: p("2001:db8:bad::/48"), Timeout: 24 * time.Hour, Reason: "conn-flood: 900 established from 3 sources >= 200"},
				{Prefix: p("2001:db8:beef::7"), Timeout: 90 * time.Second, Reason: "syn-flood: 77 syn_recv >= 50"},
			},
			MaxEntries: 65536,
			Meter:      &rules.Meter{Rate: 20, Burst: 40, Timeout: time.Minute, Ports: []uint16{80, 443}, IPv6Length: 64, Size: 65536},
			ConnLimit:  &rules.ConnLimit{Max: 100, Size: 65536},
		},
		"hand-ip-family": {
			Table: "fw_ban", Family: "ip", Hooks: []string{"input"}, Priority: 0,
			Allow:      []netip.Prefix{p("127.0.0.0/8")},
			Bans:       []rules.Ban{{Prefix: p("203.0.113.7"), Timeout: 2500 * time.Millisecond, Reason: "x"}},
			MaxEntries: 1024,
			Meter:      &rules.Meter{Rate: 5, Burst: 10, Timeout: 30 * time.Second, IPv6Length: 64, Size: 1024},
			ConnLimit:  &rules.ConnLimit{Max: 20, Ports: []uint16{22}, Size: 1024},
		},
		"hand-ip6-family": {
			Table: "synban6", Family: "ip6", Hooks: []string{"forward"}, Priority: 100,
			Allow:      []netip.Prefix{p("::1"), p("fe80::/10")},
			Bans:       []rules.Ban{{Prefix: p("2001:db8::/56"), Timeout: time.Minute, Reason: "y"}},
			MaxEntries: 10,
			Meter:      &rules.Meter{Rate: 1, Burst: 1, Timeout: 2500 * time.Millisecond, Ports: []uint16{25}, IPv6Length: 56, Size: 10},
			ConnLimit:  &rules.ConnLimit{Max: 3, Ports: []uint16{25, 587}, Size: 10},
		},
		"hand-empty": {
			Table: "synban", Family: "inet", Hooks: []string{"input"}, Priority: -10, MaxEntries: 65536,
		},
	}
}

func TestNFTHandRulesets(t *testing.T) {
	for name, rs := range handRulesets() {
		t.Run(name, func(t *testing.T) {
			got, err := NFTString(rs, "hand-built "+name)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, name, []byte(got))
			nftCheck(t, []byte(got))
		})
	}
}

// TestNFTAppliesAndReplaces applies a rendering twice for real in a throwaway
// namespace (the second run replaces the table atomically) and reads it back
// with nft's own listing.
func TestNFTAppliesAndReplaces(t *testing.T) {
	netnstest.RequireRoot(t)
	nft := netnstest.RequireCommand(t, "nft")
	script, err := NFTString(handRulesets()["hand-full"], "apply test")
	if err != nil {
		t.Fatal(err)
	}
	out, err := nftInNewNetns(t, []byte(script), "f=$(mktemp) && cat > $f && "+nft+" -f $f && "+nft+" -f $f && "+nft+" list ruleset; rc=$?; rm -f $f; exit $rc")
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	for _, want := range []string{
		"table inet synban {",
		`203.0.113.7 counter packets 0 bytes 0 timeout 10m expires`, // ban sets count per element
		"\t\tcounter\n",
		`comment "syn-flood: 120 syn_recv >= 50"`,
		`comment "needs 'sanitising' / here"`,
		"198.51.100.0/24 counter packets 0 bytes 0 timeout 10m",
		"2001:db8:bad::/48 counter packets 0 bytes 0 timeout 1d",
		"elements = { ::1,",
		"2001:db8::1 }",
		"update @meter_v6 { ip6 saddr & ffff:ffff:ffff:ffff:: limit rate over 20/second burst 40 packets }",
		"meta l4proto tcp ct state new add @connlimit_v4 { ip saddr ct count over 100 }",
		`drop comment "ban_net_v6"`,
		"chain forward {",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list ruleset lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "table inet synban {"); n != 1 {
		t.Errorf("%d synban tables after applying twice, want 1", n)
	}
}

func TestNFTErrors(t *testing.T) {
	if err := NFT(&bytes.Buffer{}, nil, "x"); err == nil {
		t.Error("nil ruleset: no error")
	}
	if err := NFT(&bytes.Buffer{}, &rules.Ruleset{Table: "t", Family: "bridge"}, "x"); err == nil || !strings.Contains(err.Error(), "bridge") {
		t.Errorf("bridge family: err = %v", err)
	}
	if err := NFT(&bytes.Buffer{}, &rules.Ruleset{Family: "inet"}, "x"); err == nil {
		t.Error("empty table: no error")
	}
	if err := NFT(failWriter{}, &rules.Ruleset{Table: "t", Family: "inet"}, "x"); err == nil {
		t.Error("failing writer: no error")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestNFTSourceIsOneLine(t *testing.T) {
	got, err := NFTString(&rules.Ruleset{Table: "t", Family: "inet"}, "evil\nflush ruleset\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, "flush") {
			t.Fatalf("source broke out of its comment:\n%s", got)
		}
	}
}

func TestHelpers(t *testing.T) {
	durs := map[time.Duration]string{
		10 * time.Minute:        "600s",
		time.Second:             "1s",
		1500 * time.Millisecond: "1500ms",
		time.Microsecond:        "1ms",
		1001 * time.Microsecond: "2ms",
		24 * time.Hour:          "86400s",
	}
	for d, want := range durs {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
	}
	elems := map[string]string{
		"203.0.113.7/32":    "203.0.113.7",
		"198.51.100.0/24":   "198.51.100.0/24",
		"2001:db8::1/128":   "2001:db8::1",
		"2001:db8::/32":     "2001:db8::/32",
		"0.0.0.0/0":         "0.0.0.0/0",
		"2001:db8:1:2::/64": "2001:db8:1:2::/64",
	}
	for in, want := range elems {
		if got := Elem(netip.MustParsePrefix(in)); got != want {
			t.Errorf("Elem(%s) = %q, want %q", in, got, want)
		}
	}
	// The v6 meter key and port matches are tested with their builders in
	// rules/nft/spec (TestFragmentText).
}

// TestNFTCompiledOverlapsAccepted shows why Compile normalizes: nft rejects
// overlapping interval elements, and Compile's output for overlapping
// verdicts and allow entries is accepted.
func TestNFTCompiledOverlapsAccepted(t *testing.T) {
	overlapping := &rules.Ruleset{
		Table: "synban", Family: "inet", Hooks: []string{"input"}, Priority: -10, MaxEntries: 16,
		Bans: []rules.Ban{
			{Prefix: p("198.51.100.0/24"), Timeout: time.Minute},
			{Prefix: p("198.51.100.0/25"), Timeout: time.Minute},
		},
	}
	raw, err := NFTString(overlapping, "overlap")
	if err != nil {
		t.Fatal(err)
	}
	netnstest.RequireRoot(t)
	nft := netnstest.RequireCommand(t, "nft")
	if out, err := nftInNewNetns(t, []byte(raw), nft+" -c -f -"); err == nil {
		t.Fatalf("nft -c accepted overlapping interval elements; the check proves nothing:\n%s", out)
	}

	pol := &policy.Policy{
		Ban:      policy.Ban{Duration: policy.Duration{Duration: time.Minute}, MaxEntries: 16},
		NFTables: policy.NFTables{Table: "synban", Family: "inet", Hooks: []string{"input"}, Priority: -10},
	}
	g := policy.NewGuard()
	for _, s := range []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.3/32", "::ffff:10.9.9.9/128", "fd00::/8", "fd00:1::/32"} {
		g.Add(p(s), "allow list")
	}
	var vs []rules.Offence
	for _, s := range []string{"198.51.100.0/25", "198.51.100.0/24", "198.51.100.7", "2001:db8::/48", "2001:db8::/64", "2001:db8::9", "::ffff:198.51.100.9"} {
		vs = append(vs, rules.Offence{Subject: p(s), Rule: "syn-flood", State: policy.StateSynRecv, Count: 9, Threshold: 5, BanFor: time.Minute})
	}
	rs, _, err := rules.Compile(pol, vs, g)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Bans) != 2 || len(rs.Allow) != 2 {
		t.Fatalf("compiled bans %v allow %v, want 2 of each", rs.Bans, rs.Allow)
	}
	script, err := NFTString(rs, "compiled overlaps")
	if err != nil {
		t.Fatal(err)
	}
	nftCheck(t, []byte(script))
}
