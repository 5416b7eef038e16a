package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/crowdsec"
	"github.com/synban/synban/internal/lapitest"
	"github.com/synban/synban/internal/metrics"
	"github.com/synban/synban/internal/metrics/metricstest"
	"github.com/synban/synban/internal/netnstest"
)

// writeSecret writes a secret file with mode perm.
func writeSecret(t *testing.T, text string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(text+"\n"), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// fleetPolicy is e2ePolicy with a [crowdsec] section.
func fleetPolicy(t *testing.T, url, machine, pwFile, keyFile string, push, pull bool, extra string) string {
	t.Helper()
	return writePolicy(t, e2ePolicy+fmt.Sprintf(`
[crowdsec]
enabled = true
lapi_url = %q
machine_id = %q
password_file = %q
bouncer_key_file = %q
push = %v
pull = %v
timeout = "20s"
`, url, machine, pwFile, keyFile, push, pull)+extra)
}

// nftTable lists synban's table in ns with nft (an independent reader).
func nftTable(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	out, err := ns.Run("nft", "list", "table", "inet", "synban")
	if err != nil {
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	return out
}

// rxPackets is the packets received on interface ifc in ns.
func rxPackets(t *testing.T, ns *netnstest.NS, ifc string) uint64 {
	t.Helper()
	out := ns.MustRun("ip", "-j", "-s", "link", "show", "dev", ifc)
	var links []struct {
		Stats64 struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j -s link: %v: %s", err, out)
	}
	return links[0].Stats64.RX.Packets
}

// TestFleetTwoHosts: host A is flooded and pushes its ban to a real LAPI in
// the same run; host B, which never sees the flood, pulls it and drops the
// attacker while a legitimate client connects. Then IPv6 and Range
// decisions made with cscli are enforced on B as prefixes, decisions for
// B's own address and gateway are refused and logged, a decision deleted
// with cscli leaves B's sets on its next run, B's pulled bans are not
// pushed back, and with the LAPI stopped A still bans locally (exit 0, one
// warning, synban_crowdsec_up 0).
func TestFleetTwoHosts(t *testing.T) {
	requireFloodTools(t)
	lapi := lapitest.Start(t)
	hostA, hostB := netnstest.New(t, "fleeta"), netnstest.New(t, "fleetb")
	attacker, client := netnstest.New(t, "fleetatt"), netnstest.New(t, "fleetcli")
	la, lb := lapi.Attach(t, hostA), lapi.Attach(t, hostB)

	const (
		aAddr, attAddr = "10.71.0.1", "10.71.0.2"
		bAttAddr       = "10.72.0.1" // B's address on the attacker's link
		bCliAddr, cli  = "10.73.0.1", "10.73.0.2"
		spoofed        = "10.71.0.3"
	)
	_, attToA := netnstest.Link(t, hostA, attacker, []string{aAddr + "/24"}, []string{attAddr + "/24"})
	bToAtt, attToB := netnstest.Link(t, hostB, attacker, []string{bAttAddr + "/24"}, []string{"10.72.0.2/24"})
	netnstest.Link(t, hostB, client, []string{bCliAddr + "/24"}, []string{cli + "/24"})
	// The attacker reaches B from the address A saw (10.71.0.2), so B's
	// ban of it is what stops it.
	attacker.MustRun("ip", "route", "replace", "10.72.0.0/24", "dev", attToB, "src", attAddr)
	hostB.MustRun("ip", "route", "add", attAddr+"/32", "via", "10.72.0.2")
	hostB.Sysctl("net.ipv4.conf.all.rp_filter", "0")
	hostB.Sysctl("net.ipv4.conf."+bToAtt+".rp_filter", "0")
	// The client is B's default gateway: a decision for it must be refused.
	hostB.MustRun("ip", "route", "add", "default", "via", cli)
	// Only on A's link does the attacker keep half-open entries alive.
	attacker.MustRun("nft", "add table inet att; add chain inet att in { type filter hook input priority 0; }; add rule inet att in iifname "+attToA+" tcp flags & (syn | ack) == syn | ack drop")
	listenIn(t, hostA, "[::]:80")
	listenIn(t, hostB, "[::]:80")

	dial := func(ns *netnstest.NS, addr string) error {
		self, _ := os.Executable()
		out, err := ns.Run("env", "SYNBAN_TEST_ROLE=dial", self, addr, "3")
		if err == nil && !strings.HasPrefix(out, "hello") {
			err = fmt.Errorf("greeting %q", out)
		}
		return err
	}
	if err := dial(attacker, bAttAddr+":80"); err != nil {
		t.Fatalf("before any ban, the attacker cannot reach B: %v", err)
	}

	pw := writeSecret(t, lapi.Password, 0o600)
	keyA := writeSecret(t, lapi.AddBouncer("host-a"), 0o600)
	keyB := writeSecret(t, lapi.BouncerKey, 0o600)
	prom := filepath.Join(t.TempDir(), "a.prom")
	polA := fleetPolicy(t, la.URL4, lapi.MachineID, pw, keyA, true, true, fmt.Sprintf("\n[metrics]\ntextfile = %q\n", prom))
	// B pushes too: its pulled bans must not come back as its own.
	polB := fleetPolicy(t, lb.URL6, lapi.MachineID, pw, keyB, true, true, "")
	dirA, dirB := t.TempDir(), t.TempDir()
	runA := func() (int, string, string) {
		return runIn(t, hostA, "run", "--backend", "nftables", "-c", polA, "--state-dir", dirA)
	}
	runB := func() (int, string, string) {
		return runIn(t, hostB, "run", "--backend", "nftables", "-c", polB, "--state-dir", dirB, "--log-level", "info")
	}

	// A is flooded and pushes.
	rxBefore := rxPackets(t, hostB, bToAtt)
	hping(t, attacker, 200, aAddr)
	halfOpen := func(ns *netnstest.NS) int {
		out := ns.MustRun("ss", "-Htan", "state", "syn-recv")
		return strings.Count(out, "\n")
	}
	netnstest.Eventually(t, 10*time.Second, func() bool { return halfOpen(hostA) >= 150 }, "the flood left fewer than 150 half-open entries in A")
	if code, out, errOut := runA(); code != 0 {
		t.Fatalf("A: synban run exit %d: %s%s", code, out, errOut)
	}
	ds, err := lapi.Decisions()
	if err != nil {
		t.Fatal(err)
	}
	pushed := 0
	for _, d := range ds {
		if d.Value == attAddr && d.Origin == "synban" && d.Scenario == "synban/syn-flood" && d.Type == "ban" && d.Scope == "Ip" {
			pushed++
		}
	}
	if pushed != 1 {
		t.Fatalf("after A's run, cscli shows %d synban decisions for %s, want 1: %+v", pushed, attAddr, ds)
	}
	if !strings.Contains(nftTable(t, hostA), attAddr) {
		t.Fatal("A did not ban the attacker locally")
	}
	{
		fams := parseProm(t, prom)
		up, _ := metricstest.Value(fams, metrics.CrowdSecUp, nil)
		n, _ := metricstest.Value(fams, metrics.CrowdSecPushed, nil)
		if up != 1 || n != 1 {
			t.Fatalf("after A's run %s = %v and %s = %v, want 1 and 1", metrics.CrowdSecUp, up, metrics.CrowdSecPushed, n)
		}
	}

	// B pulls and enforces; it saw nothing of the flood.
	if rx := rxPackets(t, hostB, bToAtt) - rxBefore; rx > 20 {
		t.Fatalf("B received %d packets from the attacker's link during the flood", rx)
	}
	if halfOpen(hostB) != 0 {
		t.Fatal("B holds half-open entries: it saw the flood")
	}
	code, out, errOut := runB()
	if code != 0 {
		t.Fatalf("B: synban run exit %d: %s%s", code, out, errOut)
	}
	if !strings.Contains(nftTable(t, hostB), attAddr) {
		t.Fatalf("B's ban set lacks the attacker after its pull:\n%s\n%s", nftTable(t, hostB), errOut)
	}
	st := requireValidState(t, dirB)
	if b, ok := st.Find(mustPrefix(t, attAddr+"/32")); !ok || b.Origin != "crowdsec:synban" {
		t.Fatalf("B's store: ban of %s = %+v (present %v), want origin crowdsec:synban", attAddr, b, ok)
	}
	stat, _ := runInOK(t, hostB, "status", "--json", "--backend", "nftables", "-c", polB, "--state-dir", dirB)
	if !strings.Contains(stat, "crowdsec:synban") {
		t.Fatalf("B's status does not show the pulled ban's origin: %s", stat)
	}
	if err := dial(attacker, bAttAddr+":80"); err == nil {
		t.Fatal("the attacker still connects to B after B pulled its ban")
	}
	if err := dial(client, bCliAddr+":80"); err != nil {
		t.Fatalf("a legitimate client cannot connect to B: %v", err)
	}
	if ds, err = lapi.Decisions(); err != nil {
		t.Fatal(err)
	}
	if n := countValue(ds, attAddr); n != 1 {
		t.Fatalf("after B's run the LAPI holds %d decisions for %s, want A's one (B must not push back): %+v", n, attAddr, ds)
	}

	// IPv6 and Range decisions, and decisions for B's own address and its
	// gateway, made with cscli.
	for _, args := range [][]string{
		{"--ip", "fd00:99::5"}, {"--range", "2001:db8:77::/48"}, {"--range", "198.51.100.0/24"},
		{"--ip", bAttAddr}, {"--ip", cli},
	} {
		if _, err := lapi.Cscli(append([]string{"decisions", "add", "--duration", "2h", "--reason", "fleet test"}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	code, _, errOut = runB()
	if code != 0 {
		t.Fatalf("B: synban run exit %d: %s", code, errOut)
	}
	table := nftTable(t, hostB)
	for _, want := range []string{"fd00:99::5", "2001:db8:77::/48", "198.51.100.0/24", attAddr} {
		if !strings.Contains(table, want) {
			t.Errorf("B's sets lack %s:\n%s", want, table)
		}
	}
	banV4 := hostB.MustRun("nft", "list", "set", "inet", "synban", "ban_v4")
	for _, refused := range []string{bAttAddr, cli} {
		if strings.Contains(banV4, refused+" ") {
			t.Errorf("B banned its own address or gateway %s:\n%s", refused, banV4)
		}
		if !strings.Contains(errOut, "CrowdSec decision refused") || !strings.Contains(errOut, "subject="+refused+"/32") {
			t.Errorf("B did not log the refusal of %s:\n%s", refused, errOut)
		}
	}
	if err := dial(client, bCliAddr+":80"); err != nil {
		t.Fatalf("the gateway's decision cut B off: %v", err)
	}

	// A decision deleted with cscli leaves B's sets on B's next run.
	if _, err := lapi.Cscli("decisions", "delete", "--range", "198.51.100.0/24"); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = runB(); code != 0 {
		t.Fatalf("B: synban run exit %d: %s", code, errOut)
	}
	table = nftTable(t, hostB)
	if strings.Contains(table, "198.51.100.0/24") {
		t.Fatalf("B still bans the deleted decision's range:\n%s", table)
	}
	if !strings.Contains(table, "2001:db8:77::/48") || !strings.Contains(table, attAddr) {
		t.Fatalf("B lost decisions still listed:\n%s", table)
	}
	if _, ok := requireValidState(t, dirB).Find(mustPrefix(t, "198.51.100.0/24")); ok {
		t.Fatal("B's store still holds the deleted decision")
	}

	// An unban on A deletes A's decision in the LAPI; B's next run then
	// withdraws the pulled ban, and the attacker reaches B again.
	runInOK(t, hostA, "unban", attAddr, "--backend", "nftables", "-c", polA, "--state-dir", dirA)
	if ds, err = lapi.Decisions(); err != nil {
		t.Fatal(err)
	}
	if n := countValue(ds, attAddr); n != 0 {
		t.Fatalf("after A's unban the LAPI still holds %d decisions for %s: %+v", n, attAddr, ds)
	}
	if code, _, errOut = runB(); code != 0 {
		t.Fatalf("B: synban run exit %d: %s", code, errOut)
	}
	if banV4 := hostB.MustRun("nft", "list", "set", "inet", "synban", "ban_v4"); strings.Contains(banV4, attAddr) {
		t.Fatalf("B still bans %s after its decision was deleted:\n%s", attAddr, banV4)
	}
	if err := dial(attacker, bAttAddr+":80"); err != nil {
		t.Fatalf("the attacker, unbanned fleet-wide, cannot reach B: %v", err)
	}

	// A ban by hand on A is shared like a detected one, with scenario
	// synban/manual.
	runInOK(t, hostA, "ban", "203.0.113.99", "--for", "1h", "--backend", "nftables", "-c", polA, "--state-dir", dirA)
	if ds, err = lapi.Decisions(); err != nil {
		t.Fatal(err)
	}
	if n := countValue(ds, "203.0.113.99"); n != 1 {
		t.Fatalf("the manual ban on A reached the LAPI %d times, want once: %+v", n, ds)
	}

	// The LAPI stopped: A bans a new offender locally, exits 0, warns once.
	lapi.Stop()
	hping(t, attacker, 200, aAddr, "-a", spoofed)
	netnstest.Eventually(t, 10*time.Second, func() bool {
		return strings.Count(hostA.MustRun("ss", "-Htan", "state", "syn-recv"), spoofed+"]:") >= 150
	}, "the second flood left fewer than 150 half-open entries in A")
	code, out, errOut = runA()
	if code != 0 {
		t.Fatalf("A with the LAPI stopped: exit %d: %s%s", code, out, errOut)
	}
	if n := strings.Count(errOut, "CrowdSec LAPI unavailable"); n != 1 || strings.Count(errOut, "level=WARN") != 1 {
		t.Fatalf("A with the LAPI stopped logged %d LAPI warnings, want exactly one warning:\n%s", n, errOut)
	}
	if !strings.Contains(nftTable(t, hostA), spoofed) {
		t.Fatal("A did not ban the new offender with the LAPI stopped")
	}
	fams := parseProm(t, prom)
	if v, ok := metricstest.Value(fams, metrics.CrowdSecUp, nil); !ok || v != 0 {
		t.Fatalf("%s = %v (present %v), want 0", metrics.CrowdSecUp, v, ok)
	}
	if v, _ := metricstest.Value(fams, metrics.Success, nil); v != 1 {
		t.Fatalf("%s = %v, want 1: local protection worked", metrics.Success, v)
	}
}

func countValue(ds []lapitest.CscliDecision, value string) int {
	n := 0
	for _, d := range ds {
		if d.Value == value {
			n++
		}
	}
	return n
}

func runInOK(t *testing.T, ns *netnstest.NS, args ...string) (string, string) {
	t.Helper()
	code, out, errOut := runIn(t, ns, args...)
	if code != 0 {
		t.Fatalf("synban %v: exit %d: %s%s", args, code, out, errOut)
	}
	return out, errOut
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFleetCheckOnline: `synban check --online` logs in and pulls (exit 0),
// reports a wrong password or bouncer key (exit 1), and refuses a secret
// file readable by others (exit 2, naming the file, its mode and chmod 600)
// without calling the LAPI.
func TestFleetCheckOnline(t *testing.T) {
	netnstest.RequireRoot(t)
	lapi := lapitest.Start(t)
	host := netnstest.New(t, "fleetchk")
	lk := lapi.Attach(t, host)
	pw, key := writeSecret(t, lapi.Password, 0o600), writeSecret(t, lapi.BouncerKey, 0o600)
	bad := writeSecret(t, "wrong", 0o600)
	open := writeSecret(t, lapi.Password, 0o644)
	for _, c := range []struct {
		name      string
		pw, key   string
		code      int
		out, errs string
	}{
		{"good", pw, key, 0, "machine login as \"synban-test\"", ""},
		{"bad password", bad, key, 1, "", "machine login"},
		{"bad key", pw, bad, 1, "", "decision stream"},
		{"password readable by others", open, key, 2, "", "mode 0644"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pol := fleetPolicy(t, lk.URL4, lapi.MachineID, c.pw, c.key, true, true, "")
			code, out, errOut := runIn(t, host, "check", "--online", "-c", pol)
			if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(errOut, c.errs) {
				t.Fatalf("check --online: exit %d (want %d)\nstdout: %s\nstderr: %s", code, c.code, out, errOut)
			}
			if c.code == 2 && !strings.Contains(errOut, "chmod 600 "+open) {
				t.Fatalf("the refusal does not say chmod 600: %s", errOut)
			}
		})
	}
	// A run refuses the open secret too, before touching the kernel.
	pol := fleetPolicy(t, lk.URL4, lapi.MachineID, open, key, true, true, "")
	code, _, errOut := runIn(t, host, "run", "--backend", "nftables", "-c", pol, "--state-dir", t.TempDir())
	if code != 2 || !strings.Contains(errOut, "crowdsec.password_file") {
		t.Fatalf("run with an open secret: exit %d: %s", code, errOut)
	}
	if out, err := host.Run("nft", "list", "table", "inet", "synban"); err == nil {
		t.Fatalf("the refused run created synban's table:\n%s", out)
	}
}

// TestFleetPull50k: one run of B pulls 50,000 decisions from a real LAPI
// and enforces them all; its wall time and peak RSS are logged for
// BENCHMARKS.md.
func TestFleetPull50k(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	lapi := lapitest.Start(t)
	host := netnstest.New(t, "fleet50k")
	lk := lapi.Attach(t, host)
	c, err := crowdsec.New(crowdsec.Config{URL: lk.URL4, MachineID: lapi.MachineID, Password: lapi.Password,
		HTTPClient: lapitest.HTTPClient(host), BatchSize: 5, Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// 40,000 IPv4 addresses, 9,000 IPv6 addresses, 1,000 IPv4 /24s, in
	// alerts of 1,000 decisions (as crowdsec/lapi50k_test.go loads them).
	var alerts []crowdsec.Alert
	for i := range 50000 {
		var p string
		switch {
		case i < 40000:
			p = fmt.Sprintf("10.%d.%d.%d/32", byte(i>>16), byte(i>>8), byte(i))
		case i < 49000:
			p = fmt.Sprintf("2001:db8::%x/128", i)
		default:
			p = fmt.Sprintf("100.%d.%d.0/24", 64+(i-49000)>>8, byte(i-49000))
		}
		a, err := c.NewAlert(crowdsec.Ban{Prefix: mustPrefix(t, p), Duration: time.Hour, Scenario: "bulk/test", Message: "bulk", Events: 1})
		if err != nil {
			t.Fatal(err)
		}
		if i%1000 == 0 {
			alerts = append(alerts, a)
		} else {
			alerts[len(alerts)-1].Decisions = append(alerts[len(alerts)-1].Decisions, a.Decisions...)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := c.PushAlerts(ctx, alerts); err != nil {
		t.Fatal(err)
	}
	key := writeSecret(t, lapi.BouncerKey, 0o600)
	pol := writePolicy(t, e2ePolicy+fmt.Sprintf(`
[crowdsec]
enabled = true
lapi_url = %q
bouncer_key_file = %q
push = false
timeout = "5m"
`, lk.URL4, key))
	dir := t.TempDir()
	start := time.Now()
	cmd := synbanIn(t, ctx, host, "run", "--backend", "nftables", "-c", pol, "--state-dir", dir)
	out, err := cmd.CombinedOutput()
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("synban run: %v: %s", err, out)
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
	st := requireValidState(t, dir)
	pulled := 0
	for _, b := range st.Bans {
		if b.Origin == "crowdsec:synban" {
			pulled++
		}
	}
	if pulled != 50000 {
		t.Fatalf("the store holds %d pulled bans, want 50000", pulled)
	}
	n4 := setLen(t, host, "ban_v4")
	n6 := setLen(t, host, "ban_v6")
	if n4 != 40000 || n6 != 9000 {
		t.Fatalf("ban_v4 holds %d, ban_v6 %d; want 40000 and 9000", n4, n6)
	}
	if table := nftTable(t, host); !strings.Contains(table, "100.67.231.0/24") {
		t.Fatal("the last /24 range is not in B's sets")
	}
	t.Logf("first run enforcing 50,000 pulled decisions: %s wall, peak RSS %.1f MB (GOMAXPROCS %d)",
		elapsed.Round(time.Millisecond), float64(rss)/1024, runtime.GOMAXPROCS(0))
	// The next cron run: the same 50,000, already in the kernel and store.
	start = time.Now()
	cmd = synbanIn(t, ctx, host, "run", "--backend", "nftables", "-c", pol, "--state-dir", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second synban run: %v: %s", err, out)
	}
	elapsed = time.Since(start)
	rss = cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
	if n4, n6 := setLen(t, host, "ban_v4"), setLen(t, host, "ban_v6"); n4 != 40000 || n6 != 9000 {
		t.Fatalf("after the second run ban_v4 holds %d, ban_v6 %d", n4, n6)
	}
	t.Logf("second run, the same 50,000 already enforced: %s wall, peak RSS %.1f MB",
		elapsed.Round(time.Millisecond), float64(rss)/1024)
}

// setLen counts the elements of synban's set name in ns.
func setLen(t *testing.T, ns *netnstest.NS, name string) int {
	t.Helper()
	out, err := ns.Run("nft", "-j", "list", "set", "inet", "synban", name)
	if err != nil {
		t.Fatalf("nft list set %s: %v", name, err)
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	for _, x := range doc.Nftables {
		if x.Set != nil {
			return len(x.Set.Elem)
		}
	}
	return 0
}
