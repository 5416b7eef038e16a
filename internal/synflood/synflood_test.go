package synflood

import (
	"net/netip"
	"testing"
)

// TestBuildSYNChecksums checks both checksums the way a receiver does: the
// one's-complement sum over the header (and pseudo-header) is all ones.
func TestBuildSYNChecksums(t *testing.T) {
	pkt := make([]byte, 40)
	src, dst := netip.MustParseAddr("10.64.1.2"), netip.MustParseAddrPort("10.61.0.1:80")
	BuildSYN(pkt, src, dst, 40000, 12345)
	if got := checksum(pkt[:20], 0); got != 0 {
		t.Errorf("IP header does not verify: folded sum complement %#x", got)
	}
	s4, d4 := src.As4(), dst.Addr().As4()
	var pseudo uint32
	for i := 0; i < 4; i += 2 {
		pseudo += uint32(s4[i])<<8 | uint32(s4[i+1]) + uint32(d4[i])<<8 | uint32(d4[i+1])
	}
	pseudo += 6 + 20
	if got := checksum(pkt[20:], pseudo); got != 0 {
		t.Errorf("TCP segment does not verify: %#x", got)
	}
	if pkt[33] != 0x02 || pkt[20] != 0x9c || pkt[21] != 0x40 || pkt[23] != 80 {
		t.Errorf("flags or source port wrong: % x", pkt[20:40])
	}
}

func TestSenderRefusesOutsideSources(t *testing.T) {
	s := &Sender{fd: -1, target: netip.MustParseAddrPort("10.61.0.1:80"), allowed: []netip.Prefix{netip.MustParsePrefix("10.64.0.0/16")}}
	if err := s.SYN(netip.MustParseAddr("8.8.8.8"), 1, 1); err == nil {
		t.Fatal("SYN from a source outside the lab prefix was not refused")
	}
}
