package nft

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/rules"
)

// connectSYNs sends n SYNs to dst from inside the namespace at path: n
// non-blocking connects, each socket closed after it sent its SYN.
func connectSYNs(t *testing.T, path string, dst netip.AddrPort, n int) {
	t.Helper()
	err := nsenter.Do(path, func() error {
		for i := 0; i < n; i++ {
			fam, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()})
			if dst.Addr().Is4() {
				fam, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
			}
			fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
				unix.Close(fd)
				return err
			}
			unix.Close(fd)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send SYNs to %s: %v", dst, err)
	}
}

// TestSensorCountsOverMeter sends SYNs from two IPv4 and two IPv6 sources
// through the meter (20/s, burst 40): the fast ones exceed it, the slow
// ones do not. SensorRead lists exactly the fast sources (the IPv6 one
// under its /64 key, as the meter keys it), each with the SYNs the meter
// dropped, and agrees with `nft -j list set`.
func TestSensorCountsOverMeter(t *testing.T) {
	ns, b := setup(t, "sn-nft")
	peer := netnstest.New(t, "sn-peer")
	netnstest.Link(t, ns, peer,
		[]string{"198.51.100.1/24", "2001:db8:51::1/64"},
		[]string{"198.51.100.7/24", "198.51.100.8/24", "2001:db8:51::7/64"})
	// No table yet (before the first run): empty, not in place, and the
	// name without a trailing space.
	if r, err := b.SensorRead(context.Background()); err != nil || r.InPlace || len(r.Sources) != 0 || r.Table != "inet synban" {
		t.Fatalf("SensorRead without the table = %+v, %v; want empty, not in place, table \"inet synban\"", r, err)
	}
	rs := fullRuleset()
	rs.Meter.Ports = []uint16{80}
	apply(t, b, rs)

	// Empty at first: nothing went over the meter, but the sensor is in place.
	r, err := b.SensorRead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Counted || len(r.Sources) != 0 || !r.InPlace || r.Table != "inet synban hot_v4, hot_v6" {
		t.Fatalf("SensorRead before any traffic = %+v, want counted, empty, in place", r)
	}

	const fast = 300
	peer.MustRun("hping3", "-q", "-S", "-p", "80", "-i", "u500", "-c", "300", "-a", "198.51.100.7", "198.51.100.1")
	peer.MustRun("hping3", "-q", "-S", "-p", "80", "-i", "u500", "-c", "10", "-a", "198.51.100.8", "198.51.100.1")
	connectSYNs(t, peer.Path(), netip.MustParseAddrPort("[2001:db8:51::1]:80"), fast)

	r, err = b.SensorRead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[netip.Prefix]uint64{}
	for _, s := range r.Sources {
		got[s.Prefix] = s.Packets
		if s.Expires <= 0 || s.Expires > rules.SensorTimeout {
			t.Errorf("source %s expires in %s, want within %s", s.Prefix, s.Expires, rules.SensorTimeout)
		}
	}
	v4 := netip.MustParsePrefix("198.51.100.7/32")
	v6 := netip.MustParsePrefix("2001:db8:51::/128") // the /64 key, read as an address
	if len(got) != 2 {
		t.Fatalf("SensorRead = %v (%s), want exactly %s and %s", got, r.Table, v4, v6)
	}
	// 300 SYNs in about 0.15 s: at most the burst plus a few refills pass.
	for _, p := range []netip.Prefix{v4, v6} {
		if n := got[p]; n < fast-60 || n > fast {
			t.Errorf("source %s counted %d SYNs over the meter, want %d..%d", p, n, fast-60, fast)
		}
	}
	// The independent reading: nft's own JSON.
	for set, p := range map[string]netip.Prefix{rules.SetHot4: v4, rules.SetHot6: v6} {
		_, els := listSetJSON(t, ns.MustRun, "inet", "synban", set)
		if len(els) != 1 || els[0].Counter == nil || els[0].Counter.Packets != got[p] {
			t.Errorf("nft lists %s as %+v, SensorRead says %s: %d", set, els, p, got[p])
		}
	}
	// The meter's rule dropped what the sensor counted.
	var meterDrops uint64
	cs, err := b.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Chain == "input" && (c.Rule == rules.SetMeter4 || c.Rule == rules.SetMeter6) {
			meterDrops += c.Packets
		}
	}
	if meterDrops != got[v4]+got[v6] {
		t.Errorf("meter rules dropped %d, sensor counted %d", meterDrops, got[v4]+got[v6])
	}

	// A second burst adds to the same elements: deltas between readings are
	// the SYNs over the meter in between (the bucket refilled meanwhile, up
	// to its burst of 40, and refills at 20/s during the 50 ms burst).
	peer.MustRun("hping3", "-q", "-S", "-p", "80", "-i", "u500", "-c", "100", "-a", "198.51.100.7", "198.51.100.1")
	r2, err := b.SensorRead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range r2.Sources {
		if s.Prefix == v4 && (s.Packets < got[v4]+55 || s.Packets > got[v4]+100) {
			t.Errorf("after 100 more SYNs %s counts %d, want %d..%d", v4, s.Packets, got[v4]+55, got[v4]+100)
		}
	}
}
