package detect

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/synflood"
)

// Kernel-test helpers: a victim and an attacker namespace over a veth, a
// listener that never accepts, and a bounded SYN generator that only sends
// from addresses of the test's own prefixes to the victim's test address.

// floodLab is a victim and an attacker namespace joined by a veth pair.
type floodLab struct {
	victim, attacker *netnstest.NS
	victimAddr       netip.Addr // the victim's address on the veth
	attackerAddr     netip.Addr // the attacker's own address on the veth
	// spoofPrefix is a test prefix routed from the victim back to the
	// attacker, whose addresses the attacker forges (it owns none of them).
	spoofPrefix netip.Prefix
}

// newFloodLab builds the lab for test number n (10.<n>.0.0/24 on the veth,
// 10.<n+1>.0.0/16 as the forged prefix). The attacker drops every SYN-ACK,
// from port 80 and every packet to the forged prefix, so the victim's
// entries stay half-open (otherwise the attacker's kernel answers them with
// RST or ICMP).
func newFloodLab(t testing.TB, name string, n int) *floodLab {
	t.Helper()
	v := netnstest.New(t, name+"v")
	a := netnstest.New(t, name+"a")
	l := &floodLab{
		victim:       v,
		attacker:     a,
		victimAddr:   netip.MustParseAddr(fmt.Sprintf("10.%d.0.1", n)),
		attackerAddr: netip.MustParseAddr(fmt.Sprintf("10.%d.0.2", n)),
		spoofPrefix:  netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", n+1)),
	}
	vif, _ := netnstest.Link(t, v, a, []string{l.victimAddr.String() + "/24"}, []string{l.attackerAddr.String() + "/24"})
	// A queue on the victim's side: without one, a burst of SYN-ACK
	// retransmissions overflows the peer's backlog, the send fails, and the
	// kernel drops the half-open entry whose SYN-ACK could not be resent.
	v.MustRun("tc", "qdisc", "replace", "dev", vif, "root", "pfifo", "limit", "300000")
	v.MustRun("ip", "route", "add", l.spoofPrefix.String(), "via", l.attackerAddr.String())
	a.MustRun("nft", "add table inet lab; add chain inet lab in { type filter hook input priority 0; policy accept; }; add rule inet lab in tcp sport 80 tcp flags & (syn | ack) == syn | ack drop")
	// Replies to the forged addresses are dropped before routing: with
	// forwarding off the attacker would answer them with ICMP host
	// unreachable, which makes the victim drop the half-open entries.
	a.MustRun("nft", "add chain inet lab pre { type filter hook prerouting priority 0; policy accept; }; add rule inet lab pre ip daddr "+l.spoofPrefix.String()+" drop")
	return l
}

// listenIn opens a TCP listener on addr inside the namespace at nsPath with
// the given backlog and never accepts; it is closed when the test ends.
func listenIn(t testing.TB, nsPath string, addr netip.AddrPort, backlog int) {
	t.Helper()
	var fd int
	err := inNetNS(nsPath, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: addr.Addr().As4(), Port: int(addr.Port())}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind %s: %w", addr, err)
		}
		if err := unix.Listen(fd, backlog); err != nil {
			unix.Close(fd)
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listener in %s: %v", nsPath, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
}

// connectIn opens n TCP connections from the namespace at nsPath to dst and
// keeps them open until the test ends.
func connectIn(t testing.TB, nsPath string, dst netip.AddrPort, n int) {
	t.Helper()
	var fds []int
	err := inNetNS(nsPath, func() error {
		for i := 0; i < n; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}); err != nil {
				return fmt.Errorf("connect %s: %w", dst, err)
			}
		}
		return nil
	})
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	if err != nil {
		t.Fatalf("connections from %s: %v", nsPath, err)
	}
}

// synFlood sends perSource SYNs from each of srcs to dst, from a raw socket
// in the attacker namespace. Every source address must lie in allowed (the
// lab's own addresses), and dst must be the lab's victim: the generator
// refuses anything else. Source ports differ per SYN so each is a new
// half-open entry.
func synFlood(t testing.TB, l *floodLab, srcs []netip.Addr, dst netip.AddrPort, perSource int) {
	t.Helper()
	if dst.Addr() != l.victimAddr {
		t.Fatalf("synFlood: %s is not the lab's victim %s", dst.Addr(), l.victimAddr)
	}
	own := netip.PrefixFrom(l.attackerAddr, 32)
	for _, s := range srcs {
		if !l.spoofPrefix.Contains(s) && !own.Contains(s) {
			t.Fatalf("synFlood: source %s outside the lab's test addresses", s)
		}
	}
	err := inNetNS(l.attacker.Path(), func() error {
		snd, err := synflood.Open(dst, l.spoofPrefix, own)
		if err != nil {
			return err
		}
		defer snd.Close()
		seq := uint32(0x1000)
		for i, src := range srcs {
			for j := 0; j < perSource; j++ {
				seq += 7919
				if err := snd.SYN(src, uint16(1024+(i*perSource+j)%60000), seq); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// spoofAddrs returns n addresses of prefix p, skipping .0 and .255.
func spoofAddrs(p netip.Prefix, n int) []netip.Addr {
	var out []netip.Addr
	for a := p.Addr().Next(); p.Contains(a) && len(out) < n; a = a.Next() {
		b := a.As4()
		if b[3] == 0 || b[3] == 255 {
			continue
		}
		out = append(out, a)
	}
	return out
}

// hping runs a bounded hping3 SYN flood from the attacker's own address.
func hping(t testing.TB, l *floodLab, port uint16, count int) {
	t.Helper()
	netnstest.RequireCommand(t, "hping3")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := l.attacker.Command(ctx, "hping3", "-q", "-S", "-p", fmt.Sprint(port), "-i", "u100", "-c", fmt.Sprint(count), l.victimAddr.String())
	out, err := cmd.CombinedOutput()
	// hping3 exits 1 when no reply came back, which is the point here.
	if ctx.Err() != nil || (err != nil && !isExit(err, 1)) {
		t.Fatalf("hping3: %v: %s", err, out)
	}
}

func isExit(err error, code int) bool {
	ee, ok := err.(*exec.ExitError)
	return ok && ee.ExitCode() == code
}

// countFrom counts the sample's entries in state st from addr.
func countFrom(s Sample, addr netip.Addr, st TCPState) int {
	n := 0
	for c := range s.All() {
		if c.Remote.Addr() == addr && c.State == st {
			n++
		}
	}
	return n
}

// mustSample takes one sample or fails.
func mustSample(t testing.TB, s Sampler) Sample {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := s.Sample(ctx)
	if err != nil {
		t.Fatalf("%s sample: %v", s.Name(), err)
	}
	return out
}

// statesString is for failure messages.
func statesString(s Sample) string {
	m := map[TCPState]int{}
	for c := range s.All() {
		m[c.State]++
	}
	var b strings.Builder
	fmt.Fprint(&b, m)
	return b.String()
}
