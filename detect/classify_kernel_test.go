package detect

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/policy"
)

// TestKernelSpoofedFlood sends one SYN from each of 1500 forged addresses of
// the lab's test prefix, plus 100 from the attacker's real address, to a
// victim whose listener has a small backlog with tcp_syncookies=1: the SYN
// queue fills, the rest is answered with cookies that never come back. The
// window (sock_diag + conntrack, counters at both ends) must classify the
// flood as spoofed, and FilterSpoofed must keep only the real host.
func TestKernelSpoofedFlood(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	l := newFloodLab(t, "spoof", 63)
	v := l.victim
	v.Sysctl("net.ipv4.tcp_syncookies", "1")
	v.MustRun("nft", "add table inet lab; add chain inet lab in { type filter hook input priority 0; policy accept; }; add rule inet lab in ct state new counter")
	dst := netip.AddrPortFrom(l.victimAddr, 80)
	listenIn(t, v.Path(), dst, 64)

	start, err := ReadNetstat(v.Path())
	if err != nil {
		t.Fatal(err)
	}
	forged := spoofAddrs(l.spoofPrefix, 1500)
	synFlood(t, l, forged, dst, 1)
	synFlood(t, l, []netip.Addr{l.attackerAddr}, dst, 100)
	netnstest.Eventually(t, 10*time.Second, func() bool {
		n, err := ReadNetstat(v.Path())
		return err == nil && n.SyncookiesSent-start.SyncookiesSent >= 1000
	}, "victim sent fewer than 1000 SYN cookies")

	samplers := []Sampler{
		SockDiag{NetNS: v.Path(), States: []TCPState{SynRecv}},
		Conntrack{NetNS: v.Path()},
	}
	w, err := Window(context.Background(), samplers, 1, 0, func() (TcpExt, error) { return ReadNetstat(v.Path()) })
	if err != nil {
		t.Fatal(err)
	}
	w.Delta = Delta(start, *w.End) // count the flood from before it began
	p := policy.Default()
	c := Classify(p, w.Samples, w.Delta)
	t.Logf("window: %d conns (%s); classification: %+v", w.Samples[0].Len(), w.Samples[0].Source, c)
	if c.Kind != KindSpoofed {
		t.Fatalf("Classify = %s (%s), want spoofed", c.Kind, c.Why)
	}
	if c.HalfOpenSources < 1400 || c.CookiesSent < 1000 || c.CookiesRecv != 0 {
		t.Errorf("sources %d, cookies sent %d, received %d: want >= 1400, >= 1000, 0", c.HalfOpenSources, c.CookiesSent, c.CookiesRecv)
	}
	if !hasAdvice(c, "upstream") || !hasAdvice(c, "tcp_synack_retries") {
		t.Errorf("advice %q lacks upstream filtering or tcp_synack_retries", c.Advice)
	}

	rep := Analyze(p, w.Samples, policy.NewGuard())
	got := FilterSpoofed(rep, c)
	t.Logf("verdicts before %d, after %d, spared %d", len(rep.Verdicts), len(got.Verdicts), len(got.Spared))
	if len(rep.Verdicts) < 2 {
		t.Fatalf("Analyze gave %d verdicts; the test needs prefix verdicts for the forged /24s too: %+v", len(rep.Verdicts), rep.Verdicts)
	}
	if len(got.Verdicts) != 1 || got.Verdicts[0].Subject != netip.PrefixFrom(l.attackerAddr, 32) {
		t.Errorf("after FilterSpoofed: %+v, want only %s", got.Verdicts, l.attackerAddr)
	}
	if len(got.Spared) != len(rep.Spared)+len(rep.Verdicts)-len(got.Verdicts) {
		t.Errorf("filtered verdicts not moved to Spared: %d spared", len(got.Spared))
	}
}

func hasAdvice(c Classification, word string) bool {
	for _, a := range c.Advice {
		if contains(a, word) {
			return true
		}
	}
	return false
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestKernelCookiesAlways sets tcp_syncookies=2 in the victim, so every SYN
// is answered with a cookie and no half-open entry is kept: the socket table
// shows (almost) nothing, while conntrack and the SyncookiesSent counter
// reveal the flood.
func TestKernelCookiesAlways(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	netnstest.RequireCommand(t, "hping3")
	l := newFloodLab(t, "cookie", 65)
	v := l.victim
	v.Sysctl("net.ipv4.tcp_syncookies", "2")
	v.MustRun("nft", "add table inet lab; add chain inet lab in { type filter hook input priority 0; policy accept; }; add rule inet lab in ct state new counter")
	listenIn(t, v.Path(), netip.AddrPortFrom(l.victimAddr, 80), 65535)

	start, err := ReadNetstat(v.Path())
	if err != nil {
		t.Fatal(err)
	}
	const syns = 800
	hping(t, l, 80, syns)
	ct := Conntrack{NetNS: v.Path()}
	var cs Sample
	netnstest.Eventually(t, 10*time.Second, func() bool {
		cs = mustSample(t, ct)
		return countFrom(cs, l.attackerAddr, SynRecv) >= syns*95/100
	}, "conntrack sees %d half-open flows from %s, want >= %d", countFrom(cs, l.attackerAddr, SynRecv), l.attackerAddr, syns*95/100)
	end, err := ReadNetstat(v.Path())
	if err != nil {
		t.Fatal(err)
	}
	d := Delta(start, end)
	sd := mustSample(t, SockDiag{NetNS: v.Path(), States: []TCPState{SynRecv}})
	t.Logf("sockdiag half-open %d, conntrack %d, SyncookiesSent +%d", sd.Len(), countFrom(cs, l.attackerAddr, SynRecv), d.SyncookiesSent)
	if n := sd.Len(); n > syns/20 {
		t.Errorf("socket table holds %d half-open entries with tcp_syncookies=2, want ~0", n)
	}
	if d.SyncookiesSent < syns*95/100 {
		t.Errorf("SyncookiesSent rose by %d, want >= %d", d.SyncookiesSent, syns*95/100)
	}
	c := Classify(policy.Default(), []Sample{MergeSamples(sd, cs)}, d)
	if c.Kind == KindNone {
		t.Errorf("Classify = none (%s) with %d cookies sent", c.Why, d.SyncookiesSent)
	}
}
