package speaker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/internal/gobgptest"
	"github.com/synban/synban/internal/netnstest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/synban/synban/upstream"
)

// The lab: an attacker namespace A (10.98.0.2, fd00:98::2), the upstream
// router R running gobgpd (10.98.0.1 towards A, 10.99.0.1 towards V) and
// the victim V (10.99.0.2, fd00:99::2) where the speaker runs. V's uplink
// is the veth from R, shaped on R's side to labCapacityBps.
const (
	labRouterASN     = 64500
	labVictimASN     = 64512
	labCapacityBps   = 10e6
	labVictim4       = "10.99.0.2"
	labVictim6       = "fd00:99::2"
	labAttacker4     = "10.98.0.2"
	labAttacker6     = "fd00:98::2"
	labRouterToV4    = "10.99.0.1"
	labRouterToV6    = "fd00:99::1"
	labSaturationRat = 0.7
)

type lab struct {
	t          *testing.T
	a, r, v    *netnstest.NS
	router     *gobgptest.Router
	uplink     string // V's interface towards R
	dir        string // V's state directory (the hand-off file)
	speaker    *exec.Cmd
	speakerLog *netnstest.LogBuffer
}

// newLab builds the namespaces and starts gobgpd in R; maxPrefixes is its
// per-family prefix limit for the victim's session.
func newLab(t *testing.T, maxPrefixes map[string]int) *lab {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "gobgpd")
	l := &lab{t: t, dir: t.TempDir()}
	l.a = netnstest.New(t, "up-a")
	l.r = netnstest.New(t, "up-r")
	l.v = netnstest.New(t, "up-v")
	netnstest.Link(t, l.a, l.r, []string{labAttacker4 + "/24", labAttacker6 + "/64"}, []string{"10.98.0.1/24", "fd00:98::1/64"})
	rToV, vToR := netnstest.Link(t, l.r, l.v, []string{labRouterToV4 + "/24", labRouterToV6 + "/64"}, []string{labVictim4 + "/24", labVictim6 + "/64"})
	l.uplink = vToR
	l.a.MustRun("ip", "route", "add", "default", "via", "10.98.0.1")
	l.a.MustRun("ip", "-6", "route", "add", "default", "via", "fd00:98::1")
	// The victim routes only to the attacker's lab prefix: replies to
	// forged sources go nowhere.
	l.v.MustRun("ip", "route", "add", "10.98.0.0/24", "via", labRouterToV4)
	l.v.MustRun("ip", "-6", "route", "add", "fd00:98::/64", "via", labRouterToV6)
	l.r.Sysctl("net.ipv4.ip_forward", "1")
	l.r.Sysctl("net.ipv6.conf.all.forwarding", "1")
	l.r.Sysctl("net.ipv4.conf.all.rp_filter", "0")
	l.r.Sysctl("net.ipv4.conf.default.rp_filter", "0")
	for _, ifc := range []string{"all", "default", rToV} {
		l.r.Sysctl("net.ipv4.conf."+ifc+".rp_filter", "0")
	}
	// The declared uplink capacity, enforced by the "provider".
	l.r.MustRun("tc", "qdisc", "add", "dev", rToV, "root", "tbf", "rate", "10mbit", "burst", "32kb", "latency", "100ms")
	l.router = gobgptest.Start(t, l.r, gobgptest.Config{
		ASN: labRouterASN, RouterID: "10.99.0.1",
		Neighbors: []gobgptest.Neighbor{{Address: labVictim4, PeerASN: labVictimASN, Families: allFamilies, MaxPrefixes: maxPrefixes}},
	})
	return l
}

// config is the victim's speaker configuration.
func (l *lab) config() upstream.Config {
	return upstream.Config{
		LocalASN: labVictimASN, RouterID: addr(labVictim4),
		Neighbors:      []upstream.Neighbor{{Address: addr(labRouterToV4), PeerASN: labRouterASN, Families: allFamilies}},
		OwnPrefixes:    []netip.Prefix{pfx("10.99.0.0/24"), pfx("fd00:99::/64")},
		MinSourceBits4: 24, MinSourceBits6: 64,
		Protected:           []netip.Prefix{pfx(labVictim4 + "/32"), pfx(labVictim6 + "/128"), pfx(labRouterToV4 + "/32")},
		MaxRules:            10,
		MaxChangesPerMinute: 100,
		MaxAge:              time.Minute,
		RTBHNextHop4:        addr("192.0.2.1"), RTBHNextHop6: addr("100::1"),
	}
}

// startSpeaker runs the speaker as a child process (this test binary) in
// V, on l.dir; it is stopped with SIGTERM when the test ends.
func (l *lab) startSpeaker(cfg upstream.Config) *exec.Cmd {
	l.t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	path := filepath.Join(l.t.TempDir(), "speaker.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		l.t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	l.speakerLog = &netnstest.LogBuffer{}
	cmd := l.v.Command(context.Background(), self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path, childDirEnv+"="+l.dir)
	cmd.Stdout, cmd.Stderr = l.speakerLog, l.speakerLog
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("start speaker child: %v", err)
	}
	log := l.speakerLog
	l.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if l.t.Failed() {
			l.t.Logf("speaker log:\n%s", log.String())
		}
	})
	l.speaker = cmd
	return cmd
}

func (l *lab) waitSession(state string, timeout time.Duration) {
	l.t.Helper()
	var got error
	netnstest.Eventually(l.t, timeout, func() bool {
		st, err := l.router.NeighborState(labVictim4)
		got = err
		if err == nil {
			got = fmt.Errorf("%s", st)
		}
		return err == nil && st == state
	}, "router's session to %s is %v, want %q", labVictim4, &lastErr{&got}, state)
}

// rib is every route the router holds, by family.
func (l *lab) rib() map[string][]gobgptest.Route {
	l.t.Helper()
	out := map[string][]gobgptest.Route{}
	for _, f := range allFamilies {
		rs, err := l.router.RIB(f)
		if err != nil {
			l.t.Fatal(err)
		}
		if len(rs) > 0 {
			out[f] = rs
		}
	}
	return out
}

// routerHolds reports (as an error) whether the router's RIB is exactly
// want: each FlowSpec rule with its components (gobgp's text of the NLRI)
// and traffic rate, each RTBH route with its communities.
func (l *lab) routerHolds(want []upstream.Announcement) error {
	got := l.rib()
	n := 0
	for _, rs := range got {
		n += len(rs)
	}
	if n != len(want) {
		return fmt.Errorf("router holds %d routes %v, want %d", n, got, len(want))
	}
	for _, a := range want {
		nl, err := toNLRI(a)
		if err != nil {
			return err
		}
		key := nl.String()
		i := slices.IndexFunc(got[a.Family()], func(r gobgptest.Route) bool { return r.Key == key })
		if i < 0 {
			return fmt.Errorf("router lacks %s (%s) in %v", a.CLI(), key, got[a.Family()])
		}
		r := got[a.Family()][i]
		switch a.Kind {
		case upstream.FlowSpec:
			want := 0.0
			if a.Action == upstream.RateLimit {
				want = float64(a.RateBytes)
			}
			if r.Rate == nil || *r.Rate != want {
				return fmt.Errorf("%s: router has traffic-rate %v, want %v", a.CLI(), r.Rate, want)
			}
		case upstream.RTBH:
			var cs []string
			for _, c := range a.Communities {
				cs = append(cs, c.String())
			}
			if !slices.Equal(r.Communities, cs) {
				return fmt.Errorf("%s: router has communities %v, want %v", a.CLI(), r.Communities, cs)
			}
		}
	}
	return nil
}

func (l *lab) waitRouter(timeout time.Duration, want []upstream.Announcement) time.Duration {
	l.t.Helper()
	began := time.Now()
	var last error
	netnstest.Eventually(l.t, timeout, func() bool { last = l.routerHolds(want); return last == nil }, "router RIB: %v", &lastErr{&last})
	return time.Since(began)
}

// measureUplink samples V's uplink counters over window while traffic runs.
func (l *lab) measureUplink(window time.Duration) upstream.LinkRate {
	l.t.Helper()
	h, err := netns.GetFromPath(l.v.Path())
	if err != nil {
		l.t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		l.t.Fatal(err)
	}
	defer nh.Close()
	s0, err := upstream.SampleLink(nh, l.uplink, time.Now())
	if err != nil {
		l.t.Fatal(err)
	}
	time.Sleep(window) // the measurement window, not synchronisation
	s1, err := upstream.SampleLink(nh, l.uplink, time.Now())
	if err != nil {
		l.t.Fatal(err)
	}
	r, err := upstream.Rate(s0, s1)
	if err != nil {
		l.t.Fatal(err)
	}
	return r
}

// flood runs argv (bounded by count and a timeout) in A in the background
// and returns a function waiting for it.
func (l *lab) flood(argv ...string) func() {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	cmd := l.a.Command(ctx, argv...)
	if err := cmd.Start(); err != nil {
		cancel()
		l.t.Fatalf("flood %v: %v", argv, err)
	}
	return func() { _ = cmd.Wait(); cancel() }
}

// decideAndHandOff plays a run: Decide from the measured rate, then the
// hand-off file.
func (l *lab) decideAndHandOff(in upstream.DecideInput) upstream.Decision {
	l.t.Helper()
	d := upstream.Decide(in)
	if err := upstream.WriteDesired(l.dir, upstream.Confirm(in.Now, d.Announcements, d.State)); err != nil {
		l.t.Fatal(err)
	}
	return d
}

func (l *lab) decideInput(rate upstream.LinkRate, class upstream.FloodClass, sources []upstream.Source, victim string, prev upstream.DecideState) upstream.DecideInput {
	cfg := l.config()
	return upstream.DecideInput{
		Now: time.Now(), UplinkBps: rate.RxBps, CapacityBps: labCapacityBps, SaturationRatio: labSaturationRat,
		Class: class, Sources: sources, Victims: []upstream.Victim{{Addr: addr(victim), Ports: []uint16{80}}},
		RealAction: upstream.Discard, RateBytes: 12500, FlowSpecCap: cfg.MaxRules,
		MinHold: time.Hour, WithdrawAfterQuiet: time.Second, Previous: prev,
		RTBHNextHop4: cfg.RTBHNextHop4, RTBHNextHop6: cfg.RTBHNextHop6,
	}
}

// TestGobgpdFlowSpecFromFlood: Debian's gobgpd is the upstream router. A
// bounded SYN flood from A over the shaped uplink saturates it; the
// measured rate makes Decide choose a FlowSpec discard for the attacker,
// which the router holds within 2 s of the hand-off. A spoofed flood gives
// one rate-limit rule (and no per-source rule); IPv6 the same; when the
// flood ends, quiet withdraws it all. An idle uplink decides nothing.
//
// The flood class and sources are given by the test, standing in for the
// detector (wired to the engine later); the uplink rate is measured.
func TestGobgpdFlowSpecFromFlood(t *testing.T) {
	netnstest.RequireCommand(t, "hping3")
	l := newLab(t, nil)
	l.startSpeaker(l.config())
	l.waitSession("established", 30*time.Second)

	idle := l.measureUplink(300 * time.Millisecond)
	if d := upstream.Decide(l.decideInput(idle, upstream.RealFlood, nil, labVictim4, upstream.DecideState{})); len(d.Announcements) != 0 {
		t.Fatalf("idle uplink (%.0f bit/s) decided %v", idle.RxBps, clis(d.Announcements))
	}

	// Real flood: 1200-byte SYNs at 10k/s for 1.5 s (15,000 packets).
	wait := l.flood("hping3", "-q", "-S", "-p", "80", "-d", "1200", "-i", "u100", "-c", "15000", labVictim4)
	time.Sleep(300 * time.Millisecond) // let the flood fill the shaper
	rate := l.measureUplink(600 * time.Millisecond)
	wait()
	t.Logf("uplink under the real flood: %.1f Mbit/s (capacity %.0f Mbit/s)", rate.RxBps/1e6, labCapacityBps/1e6)
	in := l.decideInput(rate, upstream.RealFlood, []upstream.Source{{Prefix: pfx(labAttacker4 + "/32")}}, labVictim4, upstream.DecideState{})
	if !in.Saturated() {
		t.Fatalf("the flood did not saturate the uplink: %.1f Mbit/s", rate.RxBps/1e6)
	}
	d := l.decideAndHandOff(in)
	want := []upstream.Announcement{{Kind: upstream.FlowSpec, Destination: pfx(labVictim4 + "/32"), Source: pfx(labAttacker4 + "/32"), Ports: []uint16{80}, Action: upstream.Discard}}
	if !slices.Equal(clis(d.Announcements), clis(want)) {
		t.Fatalf("decided %v, want %v", clis(d.Announcements), clis(want))
	}
	took := l.waitRouter(2*time.Second, want)
	t.Logf("real flood: router holds the attacker's rule %s after the hand-off", took.Round(time.Millisecond))

	// Spoofed flood: random sources; one rate-limit rule replaces it.
	wait = l.flood("hping3", "-q", "-S", "-p", "80", "-d", "1200", "-i", "u100", "-c", "15000", "--rand-source", labVictim4)
	time.Sleep(300 * time.Millisecond)
	rate = l.measureUplink(600 * time.Millisecond)
	wait()
	t.Logf("uplink under the spoofed flood: %.1f Mbit/s", rate.RxBps/1e6)
	in = l.decideInput(rate, upstream.SpoofedFlood, nil, labVictim4, upstream.DecideState{})
	if !in.Saturated() {
		t.Fatalf("the spoofed flood did not saturate the uplink: %.1f Mbit/s", rate.RxBps/1e6)
	}
	d = l.decideAndHandOff(in)
	want = []upstream.Announcement{{Kind: upstream.FlowSpec, Destination: pfx(labVictim4 + "/32"), Ports: []uint16{80}, Action: upstream.RateLimit, RateBytes: 12500}}
	took = l.waitRouter(2*time.Second, want)
	t.Logf("spoofed flood: router holds one rate-limit rule %s after the hand-off", took.Round(time.Millisecond))

	// IPv6: hping3 has no IPv6, so the uplink is filled with bounded
	// 1200-byte echo requests; the decision is for a real flood from the
	// attacker's IPv6 address.
	wait = l.flood("ping", "-6", "-q", "-s", "1200", "-i", "0.0005", "-c", "3000", "-w", "5", labVictim6)
	time.Sleep(300 * time.Millisecond)
	rate = l.measureUplink(600 * time.Millisecond)
	wait()
	t.Logf("uplink under the IPv6 flood: %.1f Mbit/s", rate.RxBps/1e6)
	in = l.decideInput(rate, upstream.RealFlood, []upstream.Source{{Prefix: pfx("fd00:98::/64")}}, labVictim6, upstream.DecideState{})
	if !in.Saturated() {
		t.Fatalf("the IPv6 flood did not saturate the uplink: %.1f Mbit/s", rate.RxBps/1e6)
	}
	d = l.decideAndHandOff(in)
	want = []upstream.Announcement{{Kind: upstream.FlowSpec, Destination: pfx(labVictim6 + "/128"), Source: pfx("fd00:98::/64"), Ports: []uint16{80}, Action: upstream.Discard}}
	took = l.waitRouter(2*time.Second, want)
	t.Logf("IPv6 flood: router holds the rule %s after the hand-off", took.Round(time.Millisecond))

	// The flood is over: after withdraw_after_quiet (1 s here) the next
	// run withdraws.
	quiet := l.decideInput(l.measureUplink(200*time.Millisecond), upstream.NoFlood, nil, labVictim6, d.State)
	quiet.Now = d.State.LastFlood.Add(quiet.WithdrawAfterQuiet)
	if d = l.decideAndHandOff(quiet); len(d.Announcements) != 0 {
		t.Fatalf("quiet decided %v", clis(d.Announcements))
	}
	l.waitRouter(2*time.Second, nil)
	if st, _ := l.router.NeighborState(labVictim4); st != "established" {
		t.Fatalf("session %s after the withdrawals", st)
	}
}

// TestGobgpdPrefixLimitCap: the router allows 5 ipv4-flowspec prefixes from
// the victim. A naive sender of 8 rules crosses it and the router tears the
// session down and drops every rule (the danger); the speaker with its
// local cap of 4 sends the 4 most important, and the session stays up with
// its rules.
func TestGobgpdPrefixLimitCap(t *testing.T) {
	l := newLab(t, map[string]int{upstream.FamilyIPv4FlowSpec: 5})
	var cands []upstream.Announcement
	for i := range 8 {
		a := upstream.Announcement{Kind: upstream.FlowSpec, Destination: pfx(labVictim4 + "/32"), Source: pfx(fmt.Sprintf("10.98.%d.0/24", i)), Ports: []uint16{80}, Action: upstream.Discard, Weight: uint64(100 - i)}
		cands = append(cands, a)
	}
	if err := upstream.WriteDesired(l.dir, upstream.Confirm(time.Now(), cands, upstream.DecideState{})); err != nil {
		t.Fatal(err)
	}

	// The naive sender: its cap above the provider's limit.
	naive := l.config()
	naive.MaxRules = 100
	cmd := l.startSpeaker(naive)
	var log string
	netnstest.Eventually(t, 30*time.Second, func() bool {
		log = l.speakerLog.String()
		return strings.Contains(log, "NOTIFICATION received: code 6 subcode 1 (cease: maximum number of prefixes reached)")
	}, "the router did not drop the naive sender's session over its prefix limit")
	if err := l.routerHolds(nil); err != nil {
		t.Fatalf("after the limit tore the session down: %v", err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	// Like a provider's router, gobgpd keeps such a session shut until an
	// operator clears it.
	if err := l.router.Enable(labVictim4); err != nil {
		t.Fatal(err)
	}

	capped := l.config()
	capped.MaxRules = 4
	l.startSpeaker(capped)
	l.waitSession("established", 30*time.Second)
	want := cands[:4] // the heaviest
	took := l.waitRouter(5*time.Second, want)
	t.Logf("capped sender: router holds %d rules %s after establishment", len(want), took.Round(time.Millisecond))
	// Still up, still holding them, after a further reconcile cycle with a
	// fresh confirmation.
	if err := upstream.WriteDesired(l.dir, upstream.Confirm(time.Now(), cands, upstream.DecideState{})); err != nil {
		t.Fatal(err)
	}
	netnstest.Eventually(t, 5*time.Second, func() bool {
		return strings.Count(l.speakerLog.String(), "upstream announcement refused") >= 4
	}, "the speaker did not log the 4 rules cut by its cap")
	if st, err := l.router.NeighborState(labVictim4); err != nil || st != "established" {
		t.Fatalf("session %q %v, want established", st, err)
	}
	if err := l.routerHolds(want); err != nil {
		t.Fatal(err)
	}
}

// TestGobgpdSIGKILL: SIGKILL of the speaker takes its session down and the
// router withdraws its routes; a restarted speaker announces the same
// routes again from the hand-off file.
func TestGobgpdSIGKILL(t *testing.T) {
	l := newLab(t, nil)
	cfg := l.config()
	want := []upstream.Announcement{
		{Kind: upstream.FlowSpec, Destination: pfx(labVictim4 + "/32"), Source: pfx(labAttacker4 + "/32"), Ports: []uint16{80}, Action: upstream.Discard},
		{Kind: upstream.FlowSpec, Destination: pfx(labVictim6 + "/128"), Ports: []uint16{443}, Action: upstream.RateLimit, RateBytes: 12500},
		{Kind: upstream.RTBH, Destination: pfx(labVictim4 + "/32"), Communities: []upstream.Community{upstream.Blackhole, upstream.NoExport}, NextHop: cfg.RTBHNextHop4},
		{Kind: upstream.RTBH, Destination: pfx(labVictim6 + "/128"), Communities: []upstream.Community{upstream.Blackhole, upstream.NoExport}, NextHop: cfg.RTBHNextHop6},
	}
	if err := upstream.WriteDesired(l.dir, upstream.Confirm(time.Now(), want, upstream.DecideState{})); err != nil {
		t.Fatal(err)
	}
	cmd := l.startSpeaker(cfg)
	l.waitSession("established", 30*time.Second)
	l.waitRouter(5*time.Second, want)

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := time.Now()
	var st string
	netnstest.Eventually(t, 10*time.Second, func() bool {
		st, _ = l.router.NeighborState(labVictim4)
		return st != "established"
	}, "router session still established after SIGKILL")
	took := l.waitRouter(10*time.Second, nil)
	t.Logf("SIGKILL: session %s, routes gone %s after the kill", st, time.Since(killed).Round(time.Millisecond))
	_ = took

	restarted := time.Now()
	l.startSpeaker(cfg)
	l.waitSession("established", 30*time.Second)
	l.waitRouter(5*time.Second, want)
	t.Logf("restart: the same %d routes back %s after the restart", len(want), time.Since(restarted).Round(time.Millisecond))
}
