package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/internal/gobgptest"
	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/upstream"
)

// The upstream lab: the attacker A (10.96.0.2, fd00:96::2), the upstream
// router R running Debian's gobgpd (10.96.0.1 towards A, 10.97.0.1 towards
// V) and the victim V (10.97.0.2, fd00:97::2), where `synban upstream`
// holds the BGP session and `synban run` decides. V's uplink is the veth
// from R, shaped on R's side to 10 Mbit/s, the policy's uplink_bps.
const (
	upAttacker4 = "10.96.0.2"
	upAttacker6 = "fd00:96::2"
	upRouter4   = "10.97.0.1"
	upRouter6   = "fd00:97::1"
	upVictim4   = "10.97.0.2"
	upVictim6   = "fd00:97::2"
	upRouterASN = 64500
	upVictimASN = 64512
)

type upLab struct {
	t        *testing.T
	a, r, v  *netnstest.NS
	router   *gobgptest.Router
	policy   string
	stateDir string
	speaker  *exec.Cmd
	log      *netnstest.LogBuffer
}

func newUpLab(t *testing.T) *upLab {
	t.Helper()
	requireFloodTools(t)
	netnstest.RequireCommand(t, "gobgpd")
	netnstest.RequireCommand(t, "tc")
	l := &upLab{t: t, stateDir: t.TempDir()}
	l.a, l.r, l.v = netnstest.New(t, "upe-a"), netnstest.New(t, "upe-r"), netnstest.New(t, "upe-v")
	netnstest.Link(t, l.a, l.r, []string{upAttacker4 + "/24", upAttacker6 + "/64"}, []string{"10.96.0.1/24", "fd00:96::1/64"})
	rToV, vToR := netnstest.Link(t, l.r, l.v, []string{upRouter4 + "/24", upRouter6 + "/64"}, []string{upVictim4 + "/24", upVictim6 + "/64"})
	l.a.MustRun("ip", "route", "add", "default", "via", "10.96.0.1")
	l.a.MustRun("ip", "-6", "route", "add", "default", "via", "fd00:96::1")
	l.v.MustRun("ip", "route", "add", "default", "via", upRouter4)
	l.v.MustRun("ip", "-6", "route", "add", "default", "via", upRouter6)
	// The router forwards, and drops what the victim sends to the forged
	// sources of a spoofed flood (no default route: nothing leaves the lab).
	l.r.Sysctl("net.ipv4.ip_forward", "1")
	l.r.Sysctl("net.ipv6.conf.all.forwarding", "1")
	for _, ifc := range []string{"all", "default", rToV} {
		l.r.Sysctl("net.ipv4.conf."+ifc+".rp_filter", "0")
	}
	l.r.MustRun("ip", "route", "add", "blackhole", "default")
	// The declared uplink capacity, enforced by the "provider".
	l.r.MustRun("tc", "qdisc", "add", "dev", rToV, "root", "tbf", "rate", "10mbit", "burst", "32kb", "latency", "100ms")
	// The attacker's kernel must not answer the victim's SYN-ACKs with RSTs,
	// or the half-open entries would vanish at once.
	l.a.MustRun("nft", "add table inet att; add chain inet att in { type filter hook input priority 0; }; add rule inet att in tcp flags & (syn | ack) == syn | ack drop")
	// No SYN cookies (a cookie storm would read as spoofed), and half-open
	// entries that die within ~3 s, so one phase's do not linger into the
	// next.
	l.v.Sysctl("net.ipv4.tcp_syncookies", "0")
	l.v.Sysctl("net.ipv4.tcp_synack_retries", "1")
	listenIn(t, l.v, "[::]:80")
	l.router = gobgptest.Start(t, l.r, gobgptest.Config{ASN: upRouterASN, RouterID: upRouter4,
		Neighbors: []gobgptest.Neighbor{{Address: upVictim4, PeerASN: upVictimASN,
			Families: []string{"ipv4-flowspec", "ipv6-flowspec", "ipv4-unicast", "ipv6-unicast"}}}})
	l.policy = writePolicy(t, fmt.Sprintf(`
[sample]
count = 3
interval = "300ms"

[[rule]]
name = "syn-flood"
state = "syn_recv"
threshold = 50
ports = [80]

[prefix]
enabled = false

[meter]
enabled = false

[upstream]
enabled = true
local_asn = %d
router_id = %q
own_prefixes = ["10.97.0.0/24", "fd00:97::/64"]
interfaces = [%q]
uplink_bps = 10000000
saturation_ratio = 0.7
flowspec_rate_bytes = 12500
withdraw_after_quiet = "1h"
max_age = "1m"

[[upstream.neighbor]]
address = %q
peer_asn = %d
families = ["ipv4-flowspec", "ipv6-flowspec", "ipv4-unicast", "ipv6-unicast"]
`, upVictimASN, upVictim4, vToR, upRouter4, upRouterASN))
	return l
}

// startSpeaker runs `synban upstream` (this test binary) in V.
func (l *upLab) startSpeaker() {
	l.t.Helper()
	l.log = &netnstest.LogBuffer{}
	cmd := synbanIn(l.t, context.Background(), l.v, "upstream", "-c", l.policy, "--state-dir", l.stateDir, "--log-level", "info")
	cmd.Stdout, cmd.Stderr = l.log, l.log
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.speaker = cmd
	log := l.log
	l.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if l.t.Failed() {
			l.t.Logf("synban upstream log:\n%s", log.String())
		}
	})
}

// stopSpeaker sends SIGTERM and returns the exit code.
func (l *upLab) stopSpeaker() int {
	l.t.Helper()
	if err := l.speaker.Process.Signal(syscall.SIGTERM); err != nil {
		l.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.speaker.Wait() }()
	select {
	case err := <-done:
		code, _, _ := exitOf(l.t, []string{"upstream"}, err, "", l.log.String())
		return code
	case <-time.After(20 * time.Second):
		l.t.Fatal("synban upstream did not stop within 20 s of SIGTERM")
	}
	return -1
}

// run runs synban in V with the lab's policy and state directory.
func (l *upLab) run(args ...string) (string, string) {
	l.t.Helper()
	return runInOK(l.t, l.v, append(args, "-c", l.policy, "--state-dir", l.stateDir)...)
}

// flood runs argv in A in the background, bounded by its own count and a
// timeout; the returned function stops it (once the phase has seen what it
// needed) and waits for it.
func (l *upLab) flood(argv ...string) func() {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	cmd := l.a.Command(ctx, argv...)
	if err := cmd.Start(); err != nil {
		cancel()
		l.t.Fatalf("flood %v: %v", argv, err)
	}
	stop := func() { cancel(); _ = cmd.Wait() }
	l.t.Cleanup(stop)
	return stop
}

// halfOpen counts the victim's SYN_RECV entries whose peer starts with src.
func (l *upLab) halfOpen(src string) int {
	out := l.v.MustRun("ss", "-Htan", "state", "syn-recv")
	n := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && strings.HasPrefix(strings.TrimPrefix(strings.TrimPrefix(f[3], "[::ffff:"), "["), src) {
			n++
		}
	}
	return n
}

// rib returns the router's routes of family.
func (l *upLab) rib(family string) []gobgptest.Route {
	l.t.Helper()
	rs, err := l.router.RIB(family)
	if err != nil {
		l.t.Fatal(err)
	}
	return rs
}

// waitRIB polls the router until match holds for family's routes and
// returns how long it took.
func (l *upLab) waitRIB(timeout time.Duration, family string, match func([]gobgptest.Route) bool, what string) time.Duration {
	l.t.Helper()
	began := time.Now()
	var last []gobgptest.Route
	netnstest.Eventually(l.t, timeout, func() bool { last = l.rib(family); return match(last) },
		"router's %s RIB never showed %s; last %+v", family, what, &ribText{&last})
	return time.Since(began)
}

type ribText struct{ rs *[]gobgptest.Route }

func (r *ribText) String() string { return fmt.Sprintf("%+v", *r.rs) }

// flowRule reports whether rs is exactly one FlowSpec rule whose NLRI text
// names every part and whose traffic rate (bytes/s, 0 = discard) is rate.
func flowRule(rs []gobgptest.Route, rate float64, parts ...string) bool {
	if len(rs) != 1 || rs[0].Rate == nil || *rs[0].Rate != rate {
		return false
	}
	for _, p := range parts {
		if !strings.Contains(rs[0].Key, p) {
			return false
		}
	}
	return true
}

// synConnect6 opens n non-blocking TCP connections from A to the victim's
// IPv6 port 80 and keeps them for d: A drops the SYN-ACKs, so each leaves a
// half-open entry in V. hping3 has no IPv6, so this is the IPv6 SYN flood.
func (l *upLab) synConnect6(n int, d time.Duration) {
	l.t.Helper()
	var fds []int
	err := nsenter.Do(l.a.Path(), func() error {
		dst := &unix.SockaddrInet6{Port: 80, Addr: netip.MustParseAddr(upVictim6).As16()}
		for range n {
			fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := unix.Connect(fd, dst); err != nil && err != unix.EINPROGRESS {
				return err
			}
		}
		return nil
	})
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	if err != nil {
		closeAll()
		l.t.Fatalf("IPv6 SYNs from A: %v", err)
	}
	time.AfterFunc(d, closeAll)
	l.t.Cleanup(closeAll)
}

// TestUpstreamEndToEnd: Debian's gobgpd is the upstream router; `synban
// upstream` holds the session from the victim. A bounded SYN flood fills
// the shaped uplink: `synban plan` prints the FlowSpec rule in gobgp
// syntax and hands nothing over; `synban run` bans the attacker locally and
// the router holds its discard rule within 2 s; `synban status` shows it
// and the established session. A spoofed flood (hping3 --rand-source)
// replaces it with exactly one rate-limit rule for the victim's port. An
// IPv6 SYN flood (non-blocking connects from A, hping3 having no IPv6) with
// the uplink filled by IPv6 echo requests gives the IPv6 FlowSpec rule.
// SIGTERM stops the speaker with exit 0 and the router withdraws all. A
// second speaker on the same state directory exits 3.
func TestUpstreamEndToEnd(t *testing.T) {
	l := newUpLab(t)
	l.startSpeaker()
	netnstest.Eventually(t, 30*time.Second, func() bool {
		st, err := l.router.NeighborState(upVictim4)
		return err == nil && st == "established"
	}, "the router's session to synban upstream never came up")
	// One speaker per state directory: a second one exits 3 at once.
	if code, _, stderr := runIn(t, l.v, "upstream", "-c", l.policy, "--state-dir", l.stateDir); code != exitLocked ||
		!strings.Contains(stderr, "another synban upstream runs on this state directory") {
		t.Fatalf("a second synban upstream: exit %d: %s", code, stderr)
	}

	// A real flood: 1200-byte SYNs at 10k/s for 6 s, shaped to 10 Mbit/s.
	stop := l.flood("hping3", "-q", "-S", "-p", "80", "-d", "1200", "-i", "u100", "-c", "60000", upVictim4)
	netnstest.Eventually(t, 10*time.Second, func() bool { return l.halfOpen(upAttacker4) >= 150 },
		"the flood left fewer than 150 half-open entries in the victim")
	plan, _ := l.run("plan")
	wantCLI := "# gobgp global rib -a ipv4-flowspec add match destination " + upVictim4 + "/32 source " + upAttacker4 +
		"/32 protocol tcp tcp-flags S&!A destination-port ==80 then discard\n"
	if !strings.Contains(plan, wantCLI) {
		t.Fatalf("plan does not print %q:\n%s", wantCLI, plan)
	}
	if _, err := os.Stat(filepath.Join(l.stateDir, upstream.DesiredFile)); !os.IsNotExist(err) {
		t.Fatalf("plan wrote the hand-off file (%v)", err)
	}
	_, stderr := l.run("run", "--backend", "nftables", "--log-level", "info")
	ran := time.Now()
	if !strings.Contains(stderr, "upstream decision") {
		t.Errorf("run did not log its upstream decision:\n%s", stderr)
	}
	l.waitRIB(2*time.Second-time.Since(ran), "ipv4-flowspec", func(rs []gobgptest.Route) bool {
		return flowRule(rs, 0, "destination: "+upVictim4+"/32", "source: "+upAttacker4+"/32", "80")
	}, "the attacker's discard rule")
	t.Logf("real flood: the router holds the attacker's rule %s after synban run returned", time.Since(ran).Round(time.Millisecond))
	stop()
	if len(l.rib("ipv4-unicast")) != 0 {
		t.Errorf("RTBH announced without allow_rtbh: %+v", l.rib("ipv4-unicast"))
	}
	netnstest.Eventually(t, 5*time.Second, func() bool {
		out, _ := l.run("status", "--backend", "nftables")
		return strings.Contains(out, "neighbor "+upRouter4) && strings.Contains(out, "established") &&
			strings.Contains(out, strings.TrimPrefix(strings.TrimSuffix(wantCLI, "\n"), "# ")) &&
			strings.Contains(out, "to "+upRouter4+": session up, sent")
	}, "synban status does not show the session and the live announcement")
	// status --json carries the running speaker's part, valid against the
	// schema file, with the same announcement.
	args := []string{"status", "--backend", "nftables", "--json"}
	out, errs := l.run(args...)
	newSchemaCheck(t).validate(args, "status", exitOK, out, errs)
	var sj struct {
		Upstream struct {
			Running bool `json:"running"`
			Speaker struct {
				Announcements []struct {
					CLI       string `json:"cli"`
					Neighbors []struct {
						Address   string `json:"address"`
						SessionUp bool   `json:"session_up"`
						Sent      bool   `json:"sent"`
					} `json:"neighbors"`
				} `json:"announcements"`
			} `json:"speaker"`
		} `json:"upstream"`
	}
	if err := json.Unmarshal([]byte(out), &sj); err != nil || !sj.Upstream.Running || len(sj.Upstream.Speaker.Announcements) != 1 ||
		"# "+sj.Upstream.Speaker.Announcements[0].CLI+"\n" != wantCLI || len(sj.Upstream.Speaker.Announcements[0].Neighbors) != 1 ||
		sj.Upstream.Speaker.Announcements[0].Neighbors[0].Address != upRouter4 || !sj.Upstream.Speaker.Announcements[0].Neighbors[0].Sent {
		t.Errorf("status --json with the speaker running (%v):\n%s", err, out)
	}

	// A spoofed flood: random sources, never per-source rules; one
	// rate-limit rule for the victim's port replaces the discard rule.
	stop = l.flood("hping3", "-q", "-S", "-p", "80", "-d", "1200", "-i", "u100", "-c", "50000", "--rand-source", upVictim4)
	// The real flood's half-open entries outlive it (the victim retries its
	// SYN-ACKs for a minute): count only the forged sources' entries.
	netnstest.Eventually(t, 10*time.Second, func() bool { return l.halfOpen("")-l.halfOpen(upAttacker4) >= 300 },
		"the spoofed flood left fewer than 300 half-open entries from forged sources")
	out, _ = l.run("run", "--backend", "nftables", "--json")
	ran = time.Now()
	var rj runJSON
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rj); err != nil || rj.Classification.Kind != "spoofed" {
		t.Fatalf("spoofed flood classified %+v (%v):\n%s", rj.Classification, err, out)
	}
	l.waitRIB(2*time.Second-time.Since(ran), "ipv4-flowspec", func(rs []gobgptest.Route) bool {
		return flowRule(rs, 12500, "destination: "+upVictim4+"/32", "80") && !strings.Contains(rs[0].Key, "source")
	}, "exactly one rate-limit rule")
	t.Logf("spoofed flood: one rate-limit rule %s after synban run returned", time.Since(ran).Round(time.Millisecond))
	stop()

	// IPv6: 300 half-open entries from A's IPv6 address while 1200-byte
	// echo requests fill the uplink, once the spoofed flood's entries are
	// gone (else the window would still see a spoofed flood).
	netnstest.Eventually(t, 15*time.Second, func() bool { return l.halfOpen("") == 0 },
		"the spoofed flood's half-open entries never expired")
	stop = l.flood("ping", "-6", "-q", "-s", "1200", "-i", "0.0005", "-c", "12000", "-w", "6", upVictim6)
	l.synConnect6(300, 8*time.Second)
	netnstest.Eventually(t, 10*time.Second, func() bool { return l.halfOpen(upAttacker6) >= 150 },
		"the IPv6 SYNs left fewer than 150 half-open entries")
	l.run("run", "--backend", "nftables")
	ran = time.Now()
	l.waitRIB(2*time.Second, "ipv6-flowspec", func(rs []gobgptest.Route) bool {
		return flowRule(rs, 0, "destination: "+upVictim6+"/128", "source: "+upAttacker6+"/128", "80")
	}, "the IPv6 attacker's discard rule")
	t.Logf("IPv6 flood: the router holds the rule %s after synban run returned", time.Since(ran).Round(time.Millisecond))
	stop()

	// SIGKILL: no clean stop, but the router's session goes down and it
	// drops every route learnt on it; a restarted speaker announces again
	// what the last run handed off (confirmed well within max_age).
	if err := l.speaker.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = l.speaker.Wait()
	killed := time.Now()
	l.waitRIB(10*time.Second, "ipv6-flowspec", func(rs []gobgptest.Route) bool { return len(rs) == 0 },
		"nothing once the killed speaker's session is down")
	t.Logf("SIGKILL: the router withdrew the rules %s after the kill", time.Since(killed).Round(time.Millisecond))
	l.startSpeaker()
	restarted := time.Now()
	l.waitRIB(15*time.Second, "ipv6-flowspec", func(rs []gobgptest.Route) bool {
		return flowRule(rs, 0, "destination: "+upVictim6+"/128", "source: "+upAttacker6+"/128", "80")
	}, "the IPv6 attacker's rule again, from the state directory, after a restart")
	t.Logf("restart: the router holds the rule again %s after the speaker started", time.Since(restarted).Round(time.Millisecond))

	// SIGTERM: exit 0, everything withdrawn.
	if code := l.stopSpeaker(); code != 0 {
		t.Fatalf("synban upstream exited %d on SIGTERM:\n%s", code, l.log.String())
	}
	if !strings.Contains(l.log.String(), "every withdrawal written before the Cease") {
		t.Errorf("synban upstream did not log that its withdrawals were written before the Cease:\n%s", l.log.String())
	}
	for _, f := range []string{"ipv4-flowspec", "ipv6-flowspec", "ipv4-unicast", "ipv6-unicast"} {
		l.waitRIB(5*time.Second, f, func(rs []gobgptest.Route) bool { return len(rs) == 0 }, "nothing")
	}
	if out, _ := l.run("status", "--backend", "nftables"); !strings.Contains(out, "speaker is not running") {
		t.Errorf("status after the speaker stopped:\n%s", out)
	}
}

// upstreamPolicyText is an enabled [upstream] measuring lo, with extra
// neighbor keys.
func upstreamPolicyText(neighborExtra string) string {
	return `
[upstream]
enabled = true
local_asn = 64512
router_id = "192.0.2.10"
own_prefixes = ["192.0.2.0/24"]
interfaces = ["lo"]
uplink_bps = 1000000000

[[upstream.neighbor]]
address = "192.0.2.1"
peer_asn = 64500
families = ["ipv4-flowspec"]
` + neighborExtra
}

// TestUpstreamBadInput: `synban upstream` refuses, with exit 2 and before
// any BGP session, a policy without [upstream], a password file others can
// read, and a password longer than TCP MD5 allows (upstream.Config's own
// Validate); check names a bad [upstream] key with its line.
func TestUpstreamBadInput(t *testing.T) {
	dir := t.TempDir()
	long := writeSecret(t, strings.Repeat("x", 81), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"upstream", "--state-dir", dir}, "upstream.enabled is false"},
		{[]string{"upstream", "--state-dir", dir, "-c", writePolicy(t, upstreamPolicyText(fmt.Sprintf("password_file = %q\n", writeSecret(t, "pw", 0o644))))}, "chmod 600"},
		{[]string{"upstream", "--state-dir", dir, "-c", writePolicy(t, upstreamPolicyText(fmt.Sprintf("password_file = %q\n", long)))}, "longer than 80 bytes"},
		{[]string{"upstream", "extra"}, "takes no arguments"},
		{[]string{"check", "-c", writePolicy(t, upstreamPolicyText("port = 0\n"))}, "policy.toml:14: upstream.neighbor[0].port: must be in 1..65535"},
	} {
		code, out, stderr := runMain(t, c.args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("synban %v: exit %d, stderr %q (stdout %q), want exit 2 and %q", c.args, code, stderr, out, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, upstream.StatusFile)); !os.IsNotExist(err) {
		t.Errorf("a refused speaker left a status file (%v)", err)
	}
}

// TestPlanUpstreamReadOnly: with [upstream] on, `plan` prints the upstream
// decision after the ruleset (an idle uplink: no announcement), in --json
// too, and writes no hand-off file; `status` says the speaker is not
// running.
func TestPlanUpstreamReadOnly(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "upe-plan")
	dir := t.TempDir()
	pol := writePolicy(t, upstreamPolicyText(""))
	out, _ := runInOK(t, ns, "plan", "-c", pol, "--state-dir", dir, "--backend", "nftables")
	if !strings.Contains(out, "# upstream (BGP): uplink ") || !strings.Contains(out, "uplink not saturated: local bans only") ||
		!strings.Contains(out, "# upstream: no announcement") {
		t.Errorf("plan does not print the upstream decision:\n%s", out)
	}
	out, _ = runInOK(t, ns, "plan", "--json", "-c", pol, "--state-dir", dir, "--backend", "nftables")
	var js struct {
		Upstream struct {
			Saturated     bool  `json:"saturated"`
			CapacityBps   int64 `json:"capacity_bps"`
			Announcements []any `json:"announcements"`
		} `json:"upstream"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || js.Upstream.Saturated || js.Upstream.CapacityBps != 1e9 || js.Upstream.Announcements == nil {
		t.Errorf("plan --json upstream %+v (%v):\n%s", js.Upstream, err, out)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("plan wrote into the state directory: %v %v", entries, err)
	}
	if out, _ := runInOK(t, ns, "status", "-c", pol, "--state-dir", dir, "--backend", "nftables"); !strings.Contains(out, "upstream: the speaker is not running") {
		t.Errorf("status without a speaker:\n%s", out)
	}
}
