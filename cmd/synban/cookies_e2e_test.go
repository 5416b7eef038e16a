package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/ipt"
)

// The cookie lab's IPv6 addresses: the attacker sits in a /64 of its own
// (the meter's IPv6 key), reached over the same link as 10.61.0.0/24.
const (
	victimAddr6   = "fd00:61::1"
	attackerAddr6 = "fd00:66::2"
	attackerNet6  = "fd00:66::/64"
	victimAddrC6  = "fd00:62::1"
	clientAddr6   = "fd00:62::2"
)

// newCookieLab is the lab of issue 22: a victim with tcp_syncookies=2 (no
// half-open entry, ever), a dual-stack listener on port 80, an attacker
// that drops the SYN-ACKs it gets (so no cookie comes back), a client, and
// the default policy (an empty policy file).
func newCookieLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{t: t,
		victim:   netnstest.New(t, "victim"),
		attacker: netnstest.New(t, "attacker"),
		client:   netnstest.New(t, "client"),
		stateDir: t.TempDir(),
	}
	vA, aV := netnstest.Link(t, l.victim, l.attacker, []string{victimAddr + "/24", victimAddr6 + "/64"}, []string{attackerAddr + "/24", attackerAddr6 + "/64"})
	l.victim.MustRun("ip", "-6", "route", "add", attackerNet6, "dev", vA)
	l.attacker.MustRun("ip", "-6", "route", "add", "fd00:61::/64", "dev", aV)
	netnstest.Link(t, l.victim, l.client, []string{victimAddrC + "/24", victimAddrC6 + "/64"}, []string{clientAddr + "/24", clientAddr6 + "/64"})
	l.attacker.MustRun("nft", "add table inet att; add chain inet att in { type filter hook input priority 0; }; add rule inet att in tcp flags & (syn | ack) == syn | ack drop")
	l.victim.Sysctl("net.ipv4.tcp_syncookies", "2")
	l.policy = writePolicy(t, "# the default policy\n")
	listenIn(t, l.victim, "[::]:80")
	return l
}

// cookieRunJSON is what these tests read of `run --json`.
type cookieRunJSON struct {
	Verdicts       []jsondoc.Verdict      `json:"verdicts"`
	Classification jsondoc.Classification `json:"classification"`
}

func (l *lab) runCookies(backend string) cookieRunJSON {
	l.t.Helper()
	out, err := l.synban("run", "--json", "--backend", backend)
	if err != nil {
		l.t.Fatalf("synban run: %v\n%s", err, out)
	}
	var r cookieRunJSON
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); err != nil {
		l.t.Fatalf("run --json: %v\n%s", err, out)
	}
	return r
}

// banSetHolds reports whether the kernel's ban set for subject (synban's
// nftables set, or its ipset) holds it, read with nft or ipset.
func (l *lab) banSetHolds(backend string, subject netip.Prefix) bool {
	l.t.Helper()
	var out string
	if backend == "iptables" {
		set := map[string]string{rules.SetBan4: ipt.IPSetBan4, rules.SetBan6: ipt.IPSetBan6, rules.SetBanNet4: ipt.IPSetBanNet4, rules.SetBanNet6: ipt.IPSetBanNet6}[rules.BanSet(subject)]
		out = l.victim.MustRun("ipset", "list", set)
	} else {
		out = l.victim.MustRun("nft", "list", "set", "inet", "synban", rules.BanSet(subject))
	}
	want := subject.String()
	if subject.IsSingleIP() {
		want = subject.Addr().String()
	}
	return regexp.MustCompile(`(^|[\s{,])` + regexp.QuoteMeta(want) + `([\s,}]|$)`).MatchString(out)
}

// cookieSeries polls the victim's SyncookiesSent every few milliseconds,
// read by this test from /proc/net/netstat inside the victim namespace,
// independently of synban.
type cookieSeries struct {
	mu     sync.Mutex
	at     []time.Time
	sent   []int64
	cancel context.CancelFunc
	done   chan struct{}
}

func watchCookies(t *testing.T, ns *netnstest.NS) *cookieSeries {
	ctx, cancel := context.WithCancel(context.Background())
	s := &cookieSeries{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			c, err := detect.ReadNetstat(ns.Path())
			if err == nil {
				s.mu.Lock()
				s.at, s.sent = append(s.at, time.Now()), append(s.sent, c.SyncookiesSent)
				s.mu.Unlock()
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *cookieSeries) stop() {
	s.cancel()
	<-s.done
}

// over returns the fewest and the most cookies sent over any span of
// length w inside [from, to], and the rate over [from, to].
func (s *cookieSeries) over(from, to time.Time, w time.Duration) (lo, hi int64, rate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var at []time.Time
	var sent []int64
	for i := range s.at {
		if !s.at[i].Before(from) && !s.at[i].After(to) {
			at, sent = append(at, s.at[i]), append(sent, s.sent[i])
		}
	}
	if len(at) < 2 {
		return 0, 0, 0
	}
	lo = -1
	j := 0
	for i := range at {
		for j < len(at) && at[j].Sub(at[i]) < w {
			j++
		}
		if j == len(at) {
			break
		}
		d := sent[j] - sent[i]
		if lo < 0 || d < lo {
			lo = d
		}
		hi = max(hi, d)
	}
	rate = float64(sent[len(sent)-1]-sent[0]) / at[len(at)-1].Sub(at[0]).Seconds()
	return lo, hi, rate
}

// clientProbe dials the victim from the client every 250 ms until stopped,
// counting the dials that failed.
func (l *lab) clientProbe(addr string) (stop func() (ok, failed int, first error)) {
	ctx, cancel := context.WithCancel(context.Background())
	var ok, failed int
	var firstErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := l.dialFrom(l.client, addr); err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
			} else {
				ok++
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return func() (int, int, error) {
		cancel()
		<-done
		return ok, failed, firstErr
	}
}

// connectFlood opens TCP connections from ns to dst through the kernel's
// own stack, perSecond of them a second for d or until ctx is done
// (bounded: perSecond*d connects), each a real handshake attempt from ns's address. With keep the
// sockets stay open to the end (the kernel completes the handshakes and
// retransmits SYNs the meter drops), and established counts those
// connected then; without, each is closed once its SYN is out (a SYN
// flood from one real source, for IPv6 where hping3 has no mode).
func connectFlood(ctx context.Context, ns *netnstest.NS, dst netip.AddrPort, perSecond int, d time.Duration, keep bool) (sent, established int, err error) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if dst.Addr().Is6() {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	}
	err = nsenter.Do(ns.Path(), func() error {
		var fds []int
		defer func() {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}()
		start := time.Now()
		total := int(float64(perSecond) * d.Seconds())
		for sent < total && ctx.Err() == nil {
			due := int(float64(perSecond) * time.Since(start).Seconds())
			for ; sent < min(due, total); sent++ {
				fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return fmt.Errorf("socket: %w", err)
				}
				if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
					unix.Close(fd)
					return fmt.Errorf("connect: %w", err)
				}
				if keep {
					fds = append(fds, fd)
				} else {
					unix.Close(fd)
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		if keep {
			time.Sleep(time.Second) // the last handshakes complete
			for _, fd := range fds {
				if _, err := unix.Getpeername(fd); err == nil {
					established++
				}
			}
		}
		return nil
	})
	return sent, established, err
}

// TestCookiesDefaultPolicyBansSource: issue 22's flood. One real source
// sends at least 1,000 SYNs/s to a victim with tcp_syncookies=2, and
// synban runs with the default policy, twice during the flood as cron
// would. The first run (no meter yet, no stored counters) reports the
// storm its window saw, within ±10% of the victim's own counters over a
// span of its window's length, as a cookie_storm whose advice names the
// numbers; it installs the meter. The second bans the source through the
// default syn-rate rule: in ban_v4, or for IPv6 its /64 (the meter's key)
// in the IPv6 prefix set. With a run before the flood (which installs the
// meter), the first run during it bans. A client connects throughout.
func TestCookiesDefaultPolicyBansSource(t *testing.T) {
	requireFloodTools(t)
	netnstest.RequireCommand(t, "ipset")
	type variant struct {
		backend string
		v6      bool
		before  bool // one run before the flood, one during it
	}
	var variants []variant
	for _, backend := range sensorBackends {
		variants = append(variants, variant{backend, false, false}, variant{backend, true, false}, variant{backend, false, true})
	}
	for _, vt := range variants {
		backend, v6 := vt.backend, vt.v6
		name := backend + "/ipv4"
		if v6 {
			name = backend + "/ipv6"
		}
		if vt.before {
			name += "/run-before-flood"
		}
		t.Run(name, func(t *testing.T) {
			l := newCookieLab(t)
			subject, clientDst := netip.MustParsePrefix(attackerAddr+"/32"), victimAddrC+":80"
			if v6 {
				subject, clientDst = netip.MustParsePrefix(attackerNet6), "["+victimAddrC6+"]:80"
			}
			if vt.before {
				if r := l.runCookies(backend); len(r.Verdicts) != 0 || r.Classification.Kind != "none" {
					t.Fatalf("quiet run before the flood: %+v", r)
				}
			}
			series := watchCookies(t, l.victim)
			stopProbe := l.clientProbe(clientDst)
			floodCtx, stopFlood := context.WithTimeout(context.Background(), 30*time.Second)
			defer stopFlood()
			floodDone := make(chan error, 1)
			if v6 {
				go func() {
					_, _, err := connectFlood(floodCtx, l.attacker, netip.MustParseAddrPort("["+victimAddr6+"]:80"), 2000, 10*time.Second, false)
					floodDone <- err
				}()
			} else {
				// Up to 10,000/s and 150,000 SYNs, for 30 s at most;
				// stopped after the second run.
				cmd := l.attacker.Command(floodCtx, "hping3", "-q", "-S", "-p", "80", "-i", "u100", "-c", "150000", victimAddr)
				if err := cmd.Start(); err != nil {
					t.Fatalf("start hping3: %v", err)
				}
				go func() { _ = cmd.Wait(); floodDone <- nil }()
			}
			if vt.before {
				netnstest.Eventually(t, 5*time.Second, func() bool { return len(l.sensorSources(backend)) > 0 },
					"the flood never went over the meter")
			} else {
				netnstest.Eventually(t, 5*time.Second, func() bool {
					c, err := detect.ReadNetstat(l.victim.Path())
					return err == nil && c.SyncookiesSent > 500
				}, "the flood sends no cookies")
			}

			t0 := time.Now()
			r1 := l.runCookies(backend)
			t1 := time.Now()
			r2 := l.runCookies(backend)
			stopFlood()
			if err := <-floodDone; err != nil {
				t.Fatalf("flood: %v", err)
			}
			series.stop()
			ok, failed, firstErr := stopProbe()

			c := r1.Classification
			if vt.before {
				// r1 is the run that finds the meter in place.
				if !l.banSetHolds(backend, subject) || r1.Classification.Kind != "real" {
					t.Fatalf("the first run during the flood did not ban %s: %+v %+v", subject, r1.Classification, r1.Verdicts)
				}
				if failed > 0 || ok == 0 {
					t.Errorf("the client connected %d times and failed %d (first: %v)", ok, failed, firstErr)
				}
				t.Logf("first run during the flood: %s", c.Why)
				return
			}
			w := time.Duration(c.CountersSince * float64(time.Second))
			lo, hi, rate := series.over(t0, t1, w)
			t.Logf("first run: %s over %.3fs (%s); the victim's counters: %d..%d over any %.3fs of the run's %.3fs, %.0f cookies/s",
				c.Kind, c.CountersSince, c.CountersFrom, lo, hi, c.CountersSince, t1.Sub(t0).Seconds(), rate)
			if rate < 1000 {
				t.Fatalf("the source sent %.0f SYNs/s during the first run, want >= 1000", rate)
			}
			if c.Kind != "cookie_storm" || c.CountersFrom != "window" {
				t.Errorf("first run: classification %+v, want a cookie_storm from the window", c)
			}
			if float64(c.CookiesSent) < 0.9*float64(lo) || float64(c.CookiesSent) > 1.1*float64(hi) {
				t.Errorf("first run: cookies_sent %d, the victim's counters say %d..%d over %.3fs (±10%%)", c.CookiesSent, lo, hi, c.CountersSince)
			}
			if adv := strings.Join(c.Advice, "\n"); !strings.Contains(adv, strconv.FormatInt(c.CookiesSent, 10)+" SYN cookies sent") ||
				!strings.Contains(adv, `rule "syn-rate"`) {
				t.Errorf("first run: advice %q does not name the numbers", c.Advice)
			}

			if !l.banSetHolds(backend, subject) {
				t.Fatalf("after the second run %s is not banned; classification %+v, verdicts %+v", subject, r2.Classification, r2.Verdicts)
			}
			if len(r2.Verdicts) != 1 || r2.Verdicts[0].Subject != subject.String() || r2.Classification.Kind != "real" {
				t.Errorf("second run: verdicts %+v, classification %+v; want %s through syn-rate, real", r2.Verdicts, r2.Classification, subject)
			}
			if failed > 0 || ok == 0 {
				t.Errorf("the client connected %d times and failed %d (first: %v)", ok, failed, firstErr)
			}
			t.Logf("second run: %s; client dials ok %d", r2.Classification.Why, ok)
		})
	}
}

// TestCookiesBusyNATMetered: a client behind which many users open
// connections at the meter's rate plus 50% (30 a second, each completing
// the handshake) for 30 s, with runs every 10 s under the default policy:
// the meter limits it (the sensor holds it, over the meter) and no run
// bans it.
func TestCookiesBusyNATMetered(t *testing.T) {
	requireFloodTools(t)
	l := newCookieLab(t)
	if r := l.runCookies("nftables"); len(r.Verdicts) != 0 { // installs the meter
		t.Fatalf("quiet first run: %+v", r)
	}
	type result struct {
		sent, established int
		err               error
	}
	done := make(chan result, 1)
	go func() {
		s, e, err := connectFlood(context.Background(), l.client, netip.MustParseAddrPort(victimAddrC+":80"), 30, 30*time.Second, true)
		done <- result{s, e, err}
	}()
	worst := regexp.MustCompile(`worst \S+ at (\d+) SYNs/s`)
	for i := 0; i < 3; i++ {
		time.Sleep(10 * time.Second)
		r := l.runCookies("nftables")
		if len(r.Verdicts) != 0 {
			t.Fatalf("run %d banned the busy client: %+v (%s)", i+2, r.Verdicts, r.Classification.Evidence)
		}
		t.Logf("run %d: %s; %q", i+2, r.Classification.Kind, r.Classification.Evidence)
		for _, ev := range r.Classification.Evidence {
			if m := worst.FindStringSubmatch(ev); m != nil {
				t.Logf("run %d: the client at %s SYNs/s over the meter (syn-rate threshold 200)", i+2, m[1])
			}
		}
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	t.Logf("client: %d connections opened, %d established", res.sent, res.established)
	if hot := l.sensorSources("nftables"); len(hot) != 1 || hot[0] != clientAddr {
		t.Errorf("the sensor holds %v, want the client %s: metered", hot, clientAddr)
	}
	if st := l.status("nftables"); len(st.Bans) != 0 {
		t.Errorf("bans %+v, want none", st.Bans)
	}
	if res.established < res.sent/2 {
		t.Errorf("only %d of %d connections completed", res.established, res.sent)
	}
}
