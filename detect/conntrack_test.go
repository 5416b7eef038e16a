package detect

import (
	"net/netip"
	"testing"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

func TestFlowConn(t *testing.T) {
	local := map[netip.Addr]bool{netip.MustParseAddr("192.0.2.1"): true}
	flow := func(proto uint8, state uint8, src, dst string) *conntrack.Flow {
		f := &conntrack.Flow{}
		f.TupleOrig.IP.SourceAddress = netip.MustParseAddr(src)
		f.TupleOrig.IP.DestinationAddress = netip.MustParseAddr(dst)
		f.TupleOrig.Proto = conntrack.ProtoTuple{Protocol: proto, SourcePort: 40000, DestinationPort: 80}
		if proto == unix.IPPROTO_TCP {
			f.ProtoInfo.TCP = &conntrack.ProtoInfoTCP{State: state}
		}
		return f
	}
	in := Conn{Local: netip.MustParseAddrPort("192.0.2.1:80"), Remote: netip.MustParseAddrPort("198.51.100.7:40000")}
	for _, tc := range []struct {
		name string
		f    *conntrack.Flow
		ok   bool
		st   TCPState
		bad  bool
	}{
		{"syn_sent (unanswered SYN)", flow(6, ctTCPSynSent, "198.51.100.7", "192.0.2.1"), true, SynRecv, false},
		{"syn_recv (SYN-ACK or cookie sent)", flow(6, ctTCPSynRecv, "198.51.100.7", "192.0.2.1"), true, SynRecv, false},
		{"established", flow(6, ctTCPEstablished, "198.51.100.7", "192.0.2.1"), true, Established, false},
		{"time_wait skipped", flow(6, 7, "198.51.100.7", "192.0.2.1"), false, 0, false},
		{"udp skipped", flow(17, 0, "198.51.100.7", "192.0.2.1"), false, 0, false},
		{"outgoing skipped", flow(6, ctTCPSynSent, "192.0.2.1", "198.51.100.7"), false, 0, false},
		{"tcp without protoinfo", func() *conntrack.Flow { f := flow(6, 1, "198.51.100.7", "192.0.2.1"); f.ProtoInfo.TCP = nil; return f }(), false, 0, true},
	} {
		c, ok, why := flowConn(tc.f, local)
		if ok != tc.ok || (why != "") != tc.bad {
			t.Errorf("%s: ok %v why %q", tc.name, ok, why)
			continue
		}
		if ok {
			want := in
			want.State = tc.st
			if c != want {
				t.Errorf("%s: %v, want %v", tc.name, c, want)
			}
		}
	}
	// Forwarded flows (neither end local) are kept, as a router sees them.
	if _, ok, _ := flowConn(flow(6, ctTCPSynRecv, "198.51.100.7", "203.0.113.80"), local); !ok {
		t.Error("forwarded flow dropped")
	}
}
