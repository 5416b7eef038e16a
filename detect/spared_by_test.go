package detect

import (
	"net/netip"
	"testing"

	"github.com/synban/synban/policy"
)

// TestAnalyzeSparedBy checks that a spared offender carries the guard's
// entry as data — the protected prefix and the kind of protection — for an
// address (a default gateway, an SSH client over IPv6) and for an
// aggregated prefix holding a protected address.
func TestAnalyzeSparedBy(t *testing.T) {
	var r rng
	local := netip.MustParseAddrPort("10.9.0.1:80")
	gw, ssh := mustAddr("10.9.0.254"), mustAddr("2001:db8::22")
	p := policy.Default()
	p.Prefix.Enabled = false
	g := p.Guard([]policy.Protected{
		{Prefix: netip.PrefixFrom(gw, 32), Why: "default gateway"},
		{Prefix: netip.PrefixFrom(ssh, 128), Why: "SSH client running synban"},
	})
	s := sampleOf(flood(gw, local, 120, &r), flood(ssh, netip.MustParseAddrPort("[2001:db8::1]:80"), 120, &r))
	rep := Analyze(p, []Sample{s}, g)
	if len(rep.Verdicts) != 0 || len(rep.Spared) != 2 {
		t.Fatalf("verdicts %s, spared %+v; want none and two", brief(rep.Verdicts), rep.Spared)
	}
	want := map[netip.Addr]string{gw: "default gateway", ssh: "SSH client running synban"}
	for _, sp := range rep.Spared {
		a := sp.Verdict.Subject.Addr()
		if sp.By.Why != want[a] || sp.By.Prefix != sp.Verdict.Subject || sp.Why != sp.By.Reason() {
			t.Errorf("spared %s: By %+v, Why %q; want %q", a, sp.By, sp.Why, want[a])
		}
	}

	// A /24 of many sources holding the gateway is spared as a prefix, by
	// the gateway's entry.
	p = policy.Default()
	p.Prefix.Enabled, p.Prefix.IPv4Length, p.Prefix.IPv4Threshold = true, 24, 100
	g = p.Guard([]policy.Protected{{Prefix: netip.PrefixFrom(gw, 32), Why: "default gateway"}})
	var conns [][]Conn
	for i := 10; i < 20; i++ {
		conns = append(conns, flood(netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}), local, 15, &r))
	}
	rep = Analyze(p, []Sample{sampleOf(conns...)}, g)
	if len(rep.Spared) != 1 || rep.Spared[0].Verdict.Subject != netip.MustParsePrefix("10.9.0.0/24") ||
		rep.Spared[0].By.Why != "default gateway" || rep.Spared[0].By.Prefix != netip.PrefixFrom(gw, 32) {
		t.Fatalf("prefix holding the gateway: verdicts %s, spared %+v", brief(rep.Verdicts), rep.Spared)
	}
}
