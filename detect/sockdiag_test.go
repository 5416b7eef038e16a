package detect

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/policy"
)

func TestStateMask(t *testing.T) {
	if got, want := StateMask([]TCPState{SynRecv}), uint32(1<<3|1<<12); got != want {
		t.Errorf("StateMask(SynRecv) = %#x, want %#x", got, want)
	}
	if got, want := StateMask([]TCPState{Established}), uint32(1<<1); got != want {
		t.Errorf("StateMask(Established) = %#x, want %#x", got, want)
	}
	all := StateMask(nil)
	if all&(1<<Listen) != 0 {
		t.Errorf("StateMask(nil) = %#x includes LISTEN", all)
	}
	for st := Established; st <= NewSynRecv; st++ {
		if st != Listen && all&(1<<st) == 0 {
			t.Errorf("StateMask(nil) = %#x misses state %d", all, st)
		}
	}
}

func TestStatesFor(t *testing.T) {
	p := policy.Default()
	p.Rules = []policy.Rule{{State: policy.StateEstablished}, {State: policy.StateSynRecv}, {State: policy.StateSynRecv}}
	got := StatesFor(p)
	if len(got) != 2 || got[0] != Established || got[1] != SynRecv {
		t.Errorf("StatesFor = %v, want [1 3]", got)
	}
	p.Rules = append(p.Rules, policy.Rule{State: policy.StateAny})
	if got := StatesFor(p); got != nil {
		t.Errorf("StatesFor with an any rule = %v, want nil (all states)", got)
	}
}

// inetDiagMsg builds a struct inet_diag_msg.
func inetDiagMsg(family, state uint8, src, dst netip.AddrPort) []byte {
	b := make([]byte, inetDiagMsgLen)
	b[0], b[1] = family, state
	binary.BigEndian.PutUint16(b[4:], src.Port())
	binary.BigEndian.PutUint16(b[6:], dst.Port())
	if family == unix.AF_INET {
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
	} else {
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
	}
	return b
}

func TestParseInetDiagMsg(t *testing.T) {
	l4, r4 := netip.MustParseAddrPort("192.0.2.1:80"), netip.MustParseAddrPort("198.51.100.7:40001")
	l6, r6 := netip.MustParseAddrPort("[2001:db8::1]:443"), netip.MustParseAddrPort("[2001:db8:9::5]:50000")
	mapped := netip.AddrPortFrom(netip.AddrFrom16(netip.MustParseAddr("203.0.113.9").As16()), 1234)
	for _, tc := range []struct {
		name  string
		msg   []byte
		want  Conn
		error string
	}{
		{"v4 syn_recv", inetDiagMsg(unix.AF_INET, 3, l4, r4), Conn{l4, r4, SynRecv}, ""},
		{"v4 new_syn_recv", inetDiagMsg(unix.AF_INET, 12, l4, r4), Conn{l4, r4, SynRecv}, ""},
		{"v6 established", inetDiagMsg(unix.AF_INET6, 1, l6, r6), Conn{l6, r6, Established}, ""},
		{"v6 mapped", inetDiagMsg(unix.AF_INET6, 1, l6, mapped), Conn{l6, netip.MustParseAddrPort("203.0.113.9:1234"), Established}, ""},
		{"short", inetDiagMsg(unix.AF_INET, 3, l4, r4)[:40], Conn{}, "bytes"},
		{"bad family", inetDiagMsg(7, 3, l4, r4), Conn{}, "family"},
		{"bad state", inetDiagMsg(unix.AF_INET, 13, l4, r4), Conn{}, "state"},
	} {
		got, err := parseInetDiagMsg(tc.msg)
		if tc.error != "" {
			if err == nil || !strings.Contains(err.Error(), tc.error) {
				t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.error)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

func TestSockDiagRequest(t *testing.T) {
	b := sockDiagRequest(unix.AF_INET6, 1<<3)
	if len(b) != 56 || b[0] != unix.AF_INET6 || b[1] != unix.IPPROTO_TCP || binary.NativeEndian.Uint32(b[4:]) != 1<<3 {
		t.Errorf("request = %x", b)
	}
}

func TestNewSamplerUnknownSource(t *testing.T) {
	if _, _, err := NewSampler(context.Background(), "netstat", "", nil); err == nil || !strings.Contains(err.Error(), "netstat") {
		t.Errorf("NewSampler(netstat) err = %v, want unknown source", err)
	}
}

// TestKernelRealFlood floods a victim namespace from one real address with
// hping3 and checks what every sampler sees: sock_diag and procfs agree on
// the half-open set, the kernel state filter leaves established
// connections out, conntrack sees the flows, and Classify calls it real.
func TestKernelRealFlood(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	netnstest.RequireCommand(t, "hping3")
	l := newFloodLab(t, "real", 61)
	v := l.victim
	v.Sysctl("net.core.somaxconn", "65535")
	v.Sysctl("net.ipv4.tcp_max_syn_backlog", "65536")
	v.Sysctl("net.ipv4.tcp_syncookies", "1")
	// Any ct expression makes conntrack track flows in the namespace.
	v.MustRun("nft", "add table inet lab; add chain inet lab in { type filter hook input priority 0; policy accept; }; add rule inet lab in ct state new counter")
	listenIn(t, v.Path(), netip.AddrPortFrom(l.victimAddr, 80), 65535)
	listenIn(t, v.Path(), netip.AddrPortFrom(l.victimAddr, 81), 128)
	// Ten finished handshakes to port 81 (SYN-ACKs from 81 are not dropped).
	connectIn(t, l.attacker.Path(), netip.AddrPortFrom(l.victimAddr, 81), 10)

	before, err := ReadNetstat(v.Path())
	if err != nil {
		t.Fatal(err)
	}
	const syns = 1500
	hping(t, l, 80, syns)

	sd := SockDiag{NetNS: v.Name, States: []TCPState{SynRecv}}
	var s Sample
	netnstest.Eventually(t, 10*time.Second, func() bool {
		s = mustSample(t, sd)
		return countFrom(s, l.attackerAddr, SynRecv) >= syns*95/100
	}, "sockdiag sees %d half-open from %s, want >= %d", countFrom(s, l.attackerAddr, SynRecv), l.attackerAddr, syns*95/100)

	t.Run("state filter", func(t *testing.T) {
		if n := countFrom(s, l.attackerAddr, Established); n != 0 {
			t.Errorf("asked for syn_recv, got %d established", n)
		}
		for c := range s.All() {
			if c.State != SynRecv {
				t.Fatalf("asked for syn_recv, got %v", c)
			}
		}
		est := mustSample(t, SockDiag{NetNS: v.Path(), States: []TCPState{Established}})
		if n := countFrom(est, l.attackerAddr, Established); n != 10 {
			t.Errorf("established from %s = %d, want 10 (%s)", l.attackerAddr, n, statesString(est))
		}
		if n := countFrom(est, l.attackerAddr, SynRecv); n != 0 {
			t.Errorf("asked for established, got %d syn_recv", n)
		}
	})

	t.Run("procfs agrees", func(t *testing.T) {
		ps, why, err := NewSampler(context.Background(), "procfs", v.Name, []TCPState{SynRecv})
		if err != nil {
			t.Fatal(err)
		}
		if ps.Name() != "procfs" || !strings.Contains(why, "procfs") {
			t.Errorf("procfs sampler %s: %s", ps.Name(), why)
		}
		t0 := time.Now()
		p := mustSample(t, ps)
		tp := time.Since(t0)
		again := mustSample(t, sd)
		np, nd := countFrom(p, l.attackerAddr, SynRecv), countFrom(again, l.attackerAddr, SynRecv)
		t.Logf("half-open from %s: procfs %d (%s), sockdiag %d", l.attackerAddr, np, tp, nd)
		if diff := np - nd; diff > nd/50 || -diff > nd/50 || nd == 0 {
			t.Errorf("procfs sees %d half-open from %s, sockdiag %d: differ by more than 2%%", np, l.attackerAddr, nd)
		}
		if n := countFrom(p, l.attackerAddr, Established); n != 0 {
			t.Errorf("procfs asked for syn_recv returned %d established", n)
		}
	})

	t.Run("auto picks sockdiag", func(t *testing.T) {
		sm, why, err := NewSampler(context.Background(), "auto", v.Path(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if sm.Name() != "sockdiag" || !strings.Contains(why, "NETLINK_SOCK_DIAG") {
			t.Errorf("auto chose %s: %s", sm.Name(), why)
		}
		all := mustSample(t, sm)
		if countFrom(all, l.attackerAddr, Established) != 10 || countFrom(all, l.attackerAddr, SynRecv) < syns*95/100 {
			t.Errorf("all states: %s", statesString(all))
		}
	})

	t.Run("conntrack", func(t *testing.T) {
		ct := mustSample(t, Conntrack{NetNS: v.Path()})
		t.Logf("conntrack: %s from %d flows kept", statesString(ct), len(ct.Conns))
		if n := countFrom(ct, l.attackerAddr, SynRecv); n < syns*95/100 {
			t.Errorf("conntrack sees %d half-open from %s, want >= %d (%s)", n, l.attackerAddr, syns*95/100, statesString(ct))
		}
		if n := countFrom(ct, l.attackerAddr, Established); n != 10 {
			t.Errorf("conntrack sees %d established from %s, want 10", n, l.attackerAddr)
		}
		for _, c := range ct.Conns {
			if c.Local.Addr() != l.victimAddr {
				t.Fatalf("conntrack flow %v: local is not the victim", c)
			}
		}
		// Merged with the socket sample, every flow counts once.
		m := MergeSamples(s, ct)
		if got, want := countFrom(m, l.attackerAddr, SynRecv), countFrom(ct, l.attackerAddr, SynRecv); got < want || got > want+want/50 {
			t.Errorf("merged half-open = %d, want about %d (sockdiag %d, conntrack %d)", got, want, countFrom(s, l.attackerAddr, SynRecv), want)
		}
	})

	t.Run("classify real", func(t *testing.T) {
		after, err := ReadNetstat(v.Path())
		if err != nil {
			t.Fatal(err)
		}
		p := policy.Default()
		c := Classify(p, []Sample{s}, Delta(before, after))
		t.Logf("classification: %+v", c)
		if c.Kind != KindReal {
			t.Errorf("Classify = %s (%s), want real", c.Kind, c.Why)
		}
		rep := Analyze(p, []Sample{s}, policy.NewGuard())
		got := FilterSpoofed(rep, c)
		if len(got.Verdicts) != len(rep.Verdicts) || len(got.Verdicts) == 0 {
			t.Errorf("FilterSpoofed changed a real flood's verdicts: %d -> %d", len(rep.Verdicts), len(got.Verdicts))
		}
	})
}
