package detect

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTableRoundTrip: every Conn appended to a Table comes back as it was,
// in order, whatever its families (IPv4, IPv6, IPv4-mapped, one end of
// each), and a Sample's entries are its Table's then its Conns'.
func TestTableRoundTrip(t *testing.T) {
	r := rng(3)
	var want []Conn
	var tb Table
	for range 2000 {
		s := randomSample(&r)
		for _, c := range s.Conns {
			if r.intn(5) == 0 {
				// One end of each family.
				c.Local = netip.AddrPortFrom(netip.MustParseAddr("::ffff:192.0.2.10"), c.Local.Port())
			}
			tb.Append(c)
			want = append(want, c)
		}
	}
	if tb.Len() != len(want) {
		t.Fatalf("table holds %d, want %d", tb.Len(), len(want))
	}
	for i, c := range want {
		if got := tb.At(i); got != c {
			t.Fatalf("entry %d: %v, want %v", i, got, c)
		}
	}
	extra := []Conn{gConnT("192.0.2.10:80", "203.0.113.9:1000", SynRecv)}
	s := Sample{Table: tb, Conns: extra}
	if got := slices.Collect(s.All()); !slices.Equal(got, append(slices.Clone(want), extra...)) || s.Len() != len(want)+1 || s.At(len(want)) != extra[0] {
		t.Fatalf("sample: %d entries, want %d", len(got), len(want)+1)
	}
}

func gConnT(local, remote string, st TCPState) Conn {
	return Conn{Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote), State: st}
}

// diagMsg builds a struct inet_diag_msg for c in family fam.
func diagMsg(fam uint8, c Conn) []byte {
	b := make([]byte, inetDiagMsgLen)
	b[0], b[1] = fam, byte(c.State)
	binary.BigEndian.PutUint16(b[4:], c.Local.Port())
	binary.BigEndian.PutUint16(b[6:], c.Remote.Port())
	if fam == unix.AF_INET {
		l, r := c.Local.Addr().As4(), c.Remote.Addr().As4()
		copy(b[8:], l[:])
		copy(b[24:], r[:])
	} else {
		l, r := c.Local.Addr().As16(), c.Remote.Addr().As16()
		copy(b[8:], l[:])
		copy(b[24:], r[:])
	}
	return b
}

// nlmsg frames data as one netlink message of type typ.
func nlmsg(typ uint16, data []byte) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN, nlmsgAlign(unix.NLMSG_HDRLEN+len(data)))
	binary.NativeEndian.PutUint32(b[0:], uint32(unix.NLMSG_HDRLEN+len(data)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	b = append(b, data...)
	return b[:cap(b)]
}

// TestDecodeSockDiag: a dump datagram decodes as parseInetDiagMsg decodes
// each message (IPv4-mapped stored as IPv4, NEW_SYN_RECV as SYN_RECV,
// LISTEN skipped, bad messages counted), ends at NLMSG_DONE and at an
// NLMSG_ERROR, returned as its errno (none for an acknowledgement).
func TestDecodeSockDiag(t *testing.T) {
	conns := []struct {
		fam uint8
		c   Conn
	}{
		{unix.AF_INET, gConnT("192.0.2.10:80", "203.0.113.7:4000", SynRecv)},
		{unix.AF_INET, gConnT("192.0.2.10:80", "203.0.113.7:4001", NewSynRecv)},
		{unix.AF_INET, gConnT("192.0.2.10:80", "0.0.0.0:0", Listen)},
		{unix.AF_INET6, gConnT("[::ffff:192.0.2.10]:8443", "[::ffff:203.0.113.50]:5000", Established)},
		{unix.AF_INET6, gConnT("[2001:db8::10]:443", "[2001:db8:66::6]:5001", TimeWait)},
		{unix.AF_INET6, gConnT("[2001:db8::10]:443", "[::ffff:203.0.113.51]:5002", Established)},
	}
	var dgram []byte
	var want []Conn
	for _, x := range conns {
		m := diagMsg(x.fam, x.c)
		dgram = append(dgram, nlmsg(sockDiagByFamily, m)...)
		if c, err := parseInetDiagMsg(m); err != nil {
			t.Fatal(err)
		} else if c.State != Listen {
			want = append(want, c)
		}
	}
	bad := diagMsg(unix.AF_INET, gConnT("192.0.2.10:80", "203.0.113.7:1", SynRecv))
	bad[1] = 99
	dgram = append(dgram, nlmsg(sockDiagByFamily, bad)...)
	dgram = append(dgram, nlmsg(sockDiagByFamily, bad[:20])...)
	dgram = append(dgram, nlmsg(77, nil)...)
	var s Sample
	n := 0
	done, err := decodeSockDiag(dgram, &s, &n)
	if done || err != nil {
		t.Fatalf("done %v, err %v before NLMSG_DONE", done, err)
	}
	if got := slices.Collect(s.All()); !slices.Equal(got, want) {
		t.Fatalf("decoded %v, want %v", got, want)
	}
	if s.Malformed != 3 || n != len(conns)+3 {
		t.Fatalf("%d malformed (%v), %d messages; want 3 and %d", s.Malformed, s.Errors, n, len(conns)+3)
	}
	if done, err := decodeSockDiag(nlmsg(unix.NLMSG_DONE, make([]byte, 4)), &s, &n); !done || err != nil {
		t.Fatalf("NLMSG_DONE: done %v, err %v", done, err)
	}
	e := make([]byte, 20)
	binary.NativeEndian.PutUint32(e, uint32(0xffffffff-uint32(unix.ENOENT)+1))
	if done, err := decodeSockDiag(nlmsg(unix.NLMSG_ERROR, e), &s, &n); !done || err != unix.ENOENT {
		t.Fatalf("NLMSG_ERROR: done %v, err %v, want ENOENT", done, err)
	}
	if done, err := decodeSockDiag(nlmsg(unix.NLMSG_ERROR, make([]byte, 20)), &s, &n); !done || err != nil {
		t.Fatalf("acknowledgement: done %v, err %v, want the end without error", done, err)
	}
	if _, err := decodeSockDiag(nlmsg(sockDiagByFamily, bad)[:40], &s, &n); err == nil {
		t.Fatal("a message longer than its datagram decoded")
	}
}
