package nft

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backendtest"
	"github.com/synban/synban/templates"
)

// helperEnv switches the test binary into a helper process: "listen ADDR"
// accepts TCP connections forever, "dial ADDR" connects once (exit 0) or
// exits 3 when the connect fails within a second.
const helperEnv = "SYNBAN_NFT_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(h))
	}
	os.Exit(m.Run())
}

func helper(spec string) int {
	mode, addr, _ := strings.Cut(spec, " ")
	switch mode {
	case "listen":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				return 2
			}
			_ = c.Close()
		}
	case "dial":
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		_ = c.Close()
		return 0
	}
	return 2
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newBackend(t testing.TB, ns *netnstest.NS) *Backend {
	t.Helper()
	b, err := New(Options{NetNS: ns.Path(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func setup(t *testing.T, name string) (*netnstest.NS, *Backend) {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, name)
	return ns, newBackend(t, ns)
}

func fullRuleset(bans ...rules.Ban) *rules.Ruleset {
	rs := backendtest.BaseRuleset(bans...)
	rs.Allow = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fd00:aa::/32"),
	}
	rs.Hooks = []string{"input", "forward"}
	rs.Meter = &rules.Meter{Rate: 20, Burst: 40, Timeout: time.Minute, Ports: []uint16{80, 443}, IPv6Length: 64, Size: 65536}
	rs.ConnLimit = &rules.ConnLimit{Max: 100, Ports: []uint16{22}, Size: 65536}
	return rs
}

func apply(t *testing.T, b *Backend, rs *rules.Ruleset) rules.Result {
	t.Helper()
	res, err := b.Apply(context.Background(), rs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

var (
	reHandle  = regexp.MustCompile(` # handle \d+`)
	reCounter = regexp.MustCompile(`counter packets \d+ bytes \d+`)
)

// normalize strips what changes between listings: handles, counter values
// and expires tokens.
func normalize(s string) string {
	s = reHandle.ReplaceAllString(s, "")
	s = reCounter.ReplaceAllString(s, "counter")
	return backendtest.StripExpires(s)
}

func TestContract(t *testing.T) {
	netnstest.RequireCommand(t, "nft")
	backendtest.Run(t, func(t *testing.T, ns *netnstest.NS) rules.Backend {
		return newBackend(t, ns)
	}, backendtest.Options{
		Disrupt: func(t *testing.T, ns *netnstest.NS) { ns.MustRun("nft", "flush", "ruleset") },
		Ruleset: func(rs *rules.Ruleset) {
			rs.Meter = &rules.Meter{Rate: 20, Burst: 40, Timeout: time.Minute, IPv6Length: 64, Size: 1024}
		},
	})
}

// TestMatchesTemplate applies a full ruleset with the backend in one
// namespace and the nft script templates.NFT renders in another, and
// requires both listings to be the same.
func TestMatchesTemplate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		adjust func(rs *rules.Ruleset)
	}{
		{"full", func(*rules.Ruleset) {}},
		{"one-port-v6-128", func(rs *rules.Ruleset) {
			rs.Meter.Ports = []uint16{8443}
			rs.Meter.IPv6Length = 128
			rs.ConnLimit.Ports = nil
		}},
		{"no-ports-no-connlimit", func(rs *rules.Ruleset) {
			rs.Meter.Ports = nil
			rs.ConnLimit = nil
			rs.Priority = 5
		}},
		{"ip-family", func(rs *rules.Ruleset) {
			rs.Family = "ip"
			rs.Table = "synban4"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := fullRuleset(backendtest.SampleBans(time.Hour)...)
			tc.adjust(rs)
			netnstest.RequireRoot(t)
			netnstest.RequireCommand(t, "nft")
			nsB := netnstest.New(t, "tmplb")
			b, err := New(Options{NetNS: nsB.Path(), Logger: testLogger(t), Table: rs.Table, Family: rs.Family})
			if err != nil {
				t.Fatal(err)
			}
			apply(t, b, rs)
			got := normalize(nsB.MustRun("nft", "list", "table", rs.Family, rs.Table))

			nsT := netnstest.New(t, "tmplt")
			script, err := templates.NFTString(rs, "test")
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "synban.nft")
			if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
				t.Fatal(err)
			}
			nsT.MustRun("nft", "-f", file)
			want := normalize(nsT.MustRun("nft", "list", "table", rs.Family, rs.Table))
			if got != want {
				t.Errorf("backend's table differs from the template's:\n--- backend\n%s\n--- template\n%s", got, want)
			}
			for _, frag := range []string{`comment "ban_v4"`, `comment "syn-flood: 120 syn_recv >= 50"`} {
				if !strings.Contains(got, frag) {
					t.Errorf("listing lacks %s:\n%s", frag, got)
				}
			}
		})
	}
}

func TestMeterAndConnLimitRules(t *testing.T) {
	ns, b := setup(t, "meter")
	apply(t, b, fullRuleset())
	out := ns.MustRun("nft", "list", "table", "inet", "synban")
	for _, want := range []string{
		"update @meter_v6 { ip6 saddr & ffff:ffff:ffff:ffff:: limit rate over 20/second burst 40 packets }",
		"update @meter_v4 { ip saddr limit rate over 20/second burst 40 packets }",
		"tcp dport { 80, 443 } tcp flags syn / fin,syn,rst,ack",
		"tcp dport 22 ct state new add @connlimit_v4 { ip saddr ct count over 100 }",
		"add @connlimit_v6 { ip6 saddr ct count over 100 }",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("listing lacks %q:\n%s", want, out)
		}
	}
}

func TestApplyTwiceKeepsHandles(t *testing.T) {
	ns, b := setup(t, "twice")
	rs := fullRuleset(backendtest.SampleBans(time.Hour)...)
	if res := apply(t, b, rs); !res.Created || res.Added != 4 {
		t.Errorf("first Apply = %+v, want Created and Added 4", res)
	}
	before := normalizeKeepHandles(ns.MustRun("nft", "-a", "list", "table", "inet", "synban"))
	// The same bans again at once would lengthen none of them: nothing is sent.
	res := apply(t, b, rs)
	if res.Created || len(res.Changed) != 0 || res.Added != 0 || res.Refreshed != 0 {
		t.Errorf("second Apply = %+v, want nothing created, changed or refreshed", res)
	}
	after := normalizeKeepHandles(ns.MustRun("nft", "-a", "list", "table", "inet", "synban"))
	if before != after {
		t.Errorf("second Apply changed the table:\n--- before\n%s\n--- after\n%s", before, after)
	}
	// Decided again for longer: every ban is refreshed, and the structure
	// (handles included) still stays as it was.
	res = apply(t, b, fullRuleset(backendtest.SampleBans(2*time.Hour)...))
	if res.Created || len(res.Changed) != 0 || res.Added != 0 || res.Refreshed != 4 {
		t.Errorf("Apply with longer bans = %+v, want 4 refreshed and nothing else", res)
	}
	bans, err := b.Bans(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, bn := range bans {
		if bn.Expires <= time.Hour {
			t.Errorf("ban %s has %s left after the refresh to 2h", bn.Prefix, bn.Expires)
		}
	}
	if got := normalizeKeepHandles(ns.MustRun("nft", "-a", "list", "table", "inet", "synban")); StripTimeouts(got) != StripTimeouts(before) {
		t.Errorf("refresh changed the structure:\n--- before\n%s\n--- after\n%s", before, got)
	}
}

// StripTimeouts removes element timeouts from an nft listing.
func StripTimeouts(s string) string { return reTimeout.ReplaceAllString(s, "") }

var reTimeout = regexp.MustCompile(` timeout [0-9hmsd]+`)

func normalizeKeepHandles(s string) string {
	return backendtest.StripExpires(reCounter.ReplaceAllString(s, "counter"))
}

func TestRestoreAfterDisruption(t *testing.T) {
	for _, disrupt := range [][]string{
		{"nft", "delete", "table", "inet", "synban"},
		{"nft", "flush", "ruleset"},
		{"nft", "delete", "chain", "inet", "synban", "forward"},
		{"nft", "flush", "chain", "inet", "synban", "input"},
	} {
		t.Run(strings.Join(disrupt[1:], "-"), func(t *testing.T) {
			ns, b := setup(t, "restore")
			rs := fullRuleset(backendtest.SampleBans(time.Hour)...)
			apply(t, b, rs)
			want := normalize(ns.MustRun("nft", "list", "table", "inet", "synban"))
			ns.MustRun(disrupt...)
			res := apply(t, b, rs)
			if !res.Created && len(res.Changed) == 0 {
				t.Errorf("Apply after %v = %+v, want Created or Changed", disrupt, res)
			}
			if got := normalize(ns.MustRun("nft", "list", "table", "inet", "synban")); got != want {
				t.Errorf("after %v and Apply:\n%s\nwant:\n%s", disrupt, got, want)
			}
		})
	}
}

// TestPolicyChangeKeepsBans changes the meter rate and the ban sets' size:
// the sets are recreated and every ban survives, including one the new
// ruleset does not mention.
func TestPolicyChangeKeepsBans(t *testing.T) {
	ns, b := setup(t, "policy")
	old := backendtest.SampleBans(time.Hour)
	extra := rules.Ban{Prefix: netip.MustParsePrefix("192.0.2.77/32"), Timeout: time.Hour, Reason: "earlier run"}
	rs := fullRuleset(append(slices.Clone(old), extra)...)
	rs.MaxEntries = 4096
	apply(t, b, rs)

	rs2 := fullRuleset(old...)
	rs2.MaxEntries = 8192
	rs2.Meter.Rate = 50
	rs2.Meter.Timeout = 2 * time.Minute
	res := apply(t, b, rs2)
	for _, want := range []string{"set ban_v4", "set ban_net_v6", "set meter_v4", "chain input"} {
		if !slices.Contains(res.Changed, want) {
			t.Errorf("Changed = %v, lacks %q", res.Changed, want)
		}
	}
	if res.Refreshed != len(old) || res.Added != 0 {
		t.Errorf("Apply = %+v, want Refreshed %d, Added 0", res, len(old))
	}
	bans, err := b.Bans(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[netip.Prefix]rules.ActiveBan{}
	for _, ab := range bans {
		got[ab.Prefix] = ab
	}
	for _, w := range append(old, extra) {
		ab, ok := got[w.Prefix]
		if !ok {
			t.Errorf("ban %s lost by the policy change", w.Prefix)
			continue
		}
		if ab.Reason != w.Reason || ab.Expires <= 0 || ab.Expires > time.Hour {
			t.Errorf("ban %s after policy change: %+v", w.Prefix, ab)
		}
	}
	out := ns.MustRun("nft", "list", "table", "inet", "synban")
	for _, want := range []string{"size 8192", "limit rate over 50/second", "timeout 2m"} {
		if !strings.Contains(out, want) {
			t.Errorf("listing lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "size 4096") {
		t.Errorf("old size still listed:\n%s", out)
	}
}

// TestOverlappingPrefixBans: a narrower ban inside a wider one already in
// the kernel is covered, a wider one replaces the narrower.
func TestOverlappingPrefixBans(t *testing.T) {
	_, b := setup(t, "overlap")
	ban := func(p string) rules.Ban {
		return rules.Ban{Prefix: netip.MustParsePrefix(p), Timeout: time.Hour, Reason: p}
	}
	apply(t, b, fullRuleset(ban("198.51.100.0/24"), ban("2001:db8:5::/64")))
	res := apply(t, b, fullRuleset(ban("198.51.100.128/25"), ban("2001:db8:5::/48")))
	if res.Added != 1 {
		t.Errorf("Apply = %+v, want Added 1 (the /48)", res)
	}
	bans, err := b.Bans(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ab := range bans {
		got = append(got, ab.Prefix.String())
	}
	slices.Sort(got)
	if want := []string{"198.51.100.0/24", "2001:db8:5::/48"}; !slices.Equal(got, want) {
		t.Errorf("bans = %v, want %v", got, want)
	}
}

func TestFlushLeavesOthers(t *testing.T) {
	ns, b := setup(t, "flush")
	ns.MustRun("nft", "add", "table", "ip", "synban") // same name, other family
	ns.MustRun("nft", "add", "table", "inet", "other")
	ns.MustRun("nft", "add", "set", "inet", "other", "s", "{ type ipv4_addr; }")
	ns.MustRun("nft", "add", "element", "inet", "other", "s", "{ 192.0.2.1 }")
	before := ns.MustRun("nft", "list", "ruleset")
	apply(t, b, fullRuleset(backendtest.SampleBans(time.Hour)...))
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := ns.MustRun("nft", "list", "ruleset"); after != before {
		t.Errorf("Flush changed others' ruleset:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

func TestCountersAndDrop(t *testing.T) {
	victim, b := setup(t, "victim")
	attacker := netnstest.New(t, "attacker")
	netnstest.Link(t, victim, attacker, []string{"10.77.0.1/24"}, []string{"10.77.0.2/24"})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ln := victim.Command(ctx, self)
	ln.Env = append(os.Environ(), helperEnv+"=listen 10.77.0.1:8080")
	stdout, err := ln.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Process.Kill(); _ = ln.Wait() })
	buf := make([]byte, 64)
	if n, err := stdout.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "listening") {
		t.Fatalf("listener did not start: %q %v", buf[:n], err)
	}
	dial := func() error {
		cmd := attacker.Command(ctx, self)
		cmd.Env = append(os.Environ(), helperEnv+"=dial 10.77.0.1:8080")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}

	rs := backendtest.BaseRuleset()
	apply(t, b, rs)
	if err := dial(); err != nil {
		t.Fatalf("connect before the ban failed: %v", err)
	}
	rs = backendtest.BaseRuleset(rules.Ban{Prefix: netip.MustParsePrefix("10.77.0.2/32"), Timeout: time.Hour, Reason: "test"},
		rules.Ban{Prefix: netip.MustParsePrefix("10.77.0.3/32"), Timeout: time.Hour, Reason: "silent"},
		rules.Ban{Prefix: netip.MustParsePrefix("2001:db8:77::/48"), Timeout: time.Hour, Reason: "silent net"})
	apply(t, b, rs)
	before, err := b.BanDrops(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(); err == nil {
		t.Fatal("connect from a banned address succeeded")
	}
	// The per-element counters name the ban that dropped the packets.
	after, err := b.BanDrops(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	attackerBan, silent, silentNet := netip.MustParsePrefix("10.77.0.2/32"), netip.MustParsePrefix("10.77.0.3/32"), netip.MustParsePrefix("2001:db8:77::/48")
	if before[attackerBan] != 0 || after[attackerBan] == 0 {
		t.Errorf("BanDrops of the attacker's ban: %d before the connect, %d after; want 0 then > 0", before[attackerBan], after[attackerBan])
	}
	for _, p := range []netip.Prefix{silent, silentNet} {
		if n, ok := after[p]; !ok || n != 0 {
			t.Errorf("BanDrops of %s = %d (present %v), want a zero count", p, n, ok)
		}
	}
	counters, err := b.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, c := range counters {
		if c.Chain == "input" && c.Rule == rules.SetBan4 {
			found = true
			if c.Packets == 0 || c.Bytes == 0 {
				t.Errorf("ban_v4 counter = %+v, want packets > 0", c)
			}
		} else if c.Packets != 0 {
			t.Errorf("counter %+v rose, want only ban_v4", c)
		}
	}
	if !found {
		t.Errorf("no ban_v4 counter in %+v", counters)
	}
}

// bigBans returns n bans, half IPv4 and half IPv6, one in fifty a prefix.
func bigBans(n int) []rules.Ban {
	bans := make([]rules.Ban, 0, n)
	for i := 0; i < n/2; i++ {
		var v4, v6 netip.Prefix
		if i%50 == 0 {
			j := i / 50
			v4 = netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(16 + j>>8), byte(j), 0}), 24)
			v6 = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0, byte(i >> 16), byte(i >> 8), byte(i)}), 72)
		} else {
			v4 = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(64 + i>>16), byte(i >> 8), byte(i)}), 32)
			v6 = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: byte(i >> 8), 15: byte(i), 13: byte(i >> 16)}), 128)
		}
		bans = append(bans,
			rules.Ban{Prefix: v4, Timeout: time.Hour, Reason: fmt.Sprintf("syn-flood: %d syn_recv >= 50", i)},
			rules.Ban{Prefix: v6, Timeout: time.Hour, Reason: fmt.Sprintf("syn-flood: %d syn_recv >= 50", i)})
	}
	return bans
}

func bigRuleset(n int) *rules.Ruleset {
	rs := fullRuleset(bigBans(n)...)
	rs.MaxEntries = 65536
	return rs
}

func TestHundredThousandBans(t *testing.T) {
	ns, b := setup(t, "big")
	const n = 100000
	rs := bigRuleset(n)
	start := time.Now()
	res := apply(t, b, rs)
	t.Logf("Apply of %d bans took %s", n, time.Since(start))
	if res.Added != n {
		t.Errorf("Added = %d, want %d", res.Added, n)
	}
	bans, err := b.Bans(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(bans) != n {
		t.Errorf("Bans lists %d, want %d", len(bans), n)
	}
	listed := map[netip.Prefix]bool{}
	for _, ab := range bans {
		listed[ab.Prefix] = true
	}
	for _, w := range rs.Bans {
		if !listed[w.Prefix] {
			t.Errorf("ban %s not listed", w.Prefix)
			break
		}
	}
	total := 0
	for _, set := range banSets {
		var doc struct {
			Nftables []struct {
				Set *struct {
					Elem []json.RawMessage `json:"elem"`
				} `json:"set"`
			} `json:"nftables"`
		}
		out := ns.MustRun("nft", "-j", "list", "set", "inet", "synban", set)
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("nft -j list set %s: %v", set, err)
		}
		cnt := 0
		for _, o := range doc.Nftables {
			if o.Set != nil {
				cnt += len(o.Set.Elem)
			}
		}
		if want := len(rs.BansIn(set)); cnt != want {
			t.Errorf("nft -j lists %d elements in %s, want %d", cnt, set, want)
		}
		total += cnt
	}
	if total != n {
		t.Errorf("nft -j lists %d bans, want %d", total, n)
	}
}

func TestProbeAndNew(t *testing.T) {
	if _, err := New(Options{Family: "bridge"}); err == nil {
		t.Error("New with family bridge: no error")
	}
	if _, err := New(Options{NetNS: "/nonexistent/netns"}); err == nil {
		t.Error("New with a missing namespace file: no error")
	}
	ns, b := setup(t, "probe")
	if b.Name() != "nftables" {
		t.Errorf("Name = %q", b.Name())
	}
	if err := Probe(Options{NetNS: ns.Path()}); err != nil {
		t.Errorf("Probe: %v", err)
	}
	// Nothing applied yet: empty answers, no errors.
	if bans, err := b.Bans(context.Background()); err != nil || len(bans) != 0 {
		t.Errorf("Bans on an empty namespace = %v, %v", bans, err)
	}
	if n, err := b.Unban(context.Background(), []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}); err != nil || n != 0 {
		t.Errorf("Unban on an empty namespace = %d, %v", n, err)
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Errorf("Flush on an empty namespace: %v", err)
	}
	if _, err := b.Apply(context.Background(), &rules.Ruleset{Table: "x", Family: "inet", Hooks: []string{"nohook"}, MaxEntries: 1}); err == nil {
		t.Error("Apply with an unknown hook: no error")
	}
}
