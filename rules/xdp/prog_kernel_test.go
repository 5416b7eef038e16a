package xdp

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/synban/synban/internal/netnstest"
)

// frame builds an Ethernet frame from src with the given tags (each an
// 802.1Q or 802.1ad TPID), carrying an IPv4 or IPv6 header cut to l3 bytes
// (-1: whole, plus 20 bytes of TCP).
func frame(src netip.Addr, tags []uint16, l3 int) []byte {
	b := make([]byte, 12) // MACs
	for _, tpid := range tags {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, 10) // TCI: VLAN 10
	}
	var ip []byte
	if src.Is4() {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		ip = make([]byte, 20)
		ip[0], ip[9] = 0x45, 6
		a := src.As4()
		copy(ip[12:16], a[:])
		copy(ip[16:20], []byte{192, 0, 2, 1})
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
		ip = make([]byte, 40)
		ip[0], ip[6] = 0x60, 6
		a := src.As16()
		copy(ip[8:24], a[:])
		ip[39] = 1
	}
	ip = append(ip, make([]byte, 20)...)
	if l3 >= 0 {
		ip = ip[:l3]
	}
	return append(b, ip...)
}

// TestProgramVerdicts runs the drop program on crafted frames with the
// kernel's BPF_PROG_RUN: a source inside a banned prefix is dropped and
// counted, with no tag, one 802.1Q or one 802.1ad tag, in IPv4 and IPv6;
// everything else passes: other sources, two tags, cut headers, ARP, and
// an entry whose expiry has passed.
func TestProgramVerdicts(t *testing.T) {
	netnstest.RequireRoot(t)
	m, err := createMaps(16)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := now()
	if err != nil {
		t.Fatal(err)
	}
	bans := []Ban{
		{netip.MustParsePrefix("198.51.100.7/32"), time.Now().Add(time.Hour)},
		{netip.MustParsePrefix("203.0.113.0/24"), time.Time{}},
		{netip.MustParsePrefix("2001:db8:1::/48"), time.Now().Add(time.Hour)},
		{netip.MustParsePrefix("192.0.2.128/25"), time.Now().Add(-time.Second)}, // over
	}
	if err := applyEntries(m, nil, bans, c, &Result{}); err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: program(m.v4.FD(), m.v6.FD())})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		data []byte
		want uint32
	}{
		{"banned /32", frame(a("198.51.100.7"), nil, -1), xdpDrop},
		{"inside a /24", frame(a("203.0.113.77"), nil, -1), xdpDrop},
		{"next to the /32", frame(a("198.51.100.8"), nil, -1), xdpPass},
		{"802.1Q", frame(a("198.51.100.7"), []uint16{0x8100}, -1), xdpDrop},
		{"802.1ad", frame(a("203.0.113.1"), []uint16{0x88a8}, -1), xdpDrop},
		{"two tags pass", frame(a("198.51.100.7"), []uint16{0x88a8, 0x8100}, -1), xdpPass},
		{"IPv6 inside a /48", frame(a("2001:db8:1:2::9"), nil, -1), xdpDrop},
		{"IPv6 802.1Q", frame(a("2001:db8:1::1"), []uint16{0x8100}, -1), xdpDrop},
		{"IPv6 outside", frame(a("2001:db8:2::1"), nil, -1), xdpPass},
		{"IPv4 header cut", frame(a("198.51.100.7"), nil, 15), xdpPass},
		{"IPv6 header cut", frame(a("2001:db8:1::1"), nil, 23), xdpPass},
		{"expired entry", frame(a("192.0.2.200"), nil, -1), xdpPass},
		{"ARP", append(make([]byte, 12), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1), xdpPass},
	} {
		got, err := prog.Run(&ebpf.RunOptions{Data: tc.data})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: verdict %d, want %d", tc.name, got, tc.want)
		}
	}
	want := map[string]uint64{"198.51.100.7/32": 2, "203.0.113.0/24": 2, "2001:db8:1::/48": 2, "192.0.2.128/25": 0}
	ents, err := m.entries(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Packets != want[e.Prefix.String()] {
			t.Errorf("%s counted %d drops, want %d", e.Prefix, e.Packets, want[e.Prefix.String()])
		}
	}
	if len(ents) != len(want) {
		t.Errorf("%d entries, want %d", len(ents), len(want))
	}
}

// BenchmarkProgram is the drop program's own cost per packet (BPF_PROG_RUN,
// no driver, no device) with 10,000 /32 and 1,000 /24 entries per family:
// a banned source (drop and count), and one that is not (pass).
func BenchmarkProgram(b *testing.B) {
	netnstest.RequireRoot(b)
	m, err := createMaps(65536)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	c, err := now()
	if err != nil {
		b.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	var bans []Ban
	for i := range 10000 {
		bans = append(bans, Ban{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32), exp})
		bans = append(bans, Ban{netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 8), byte(i)}), 128), exp})
	}
	for i := range 1000 {
		bans = append(bans, Ban{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2 + byte(i>>8), byte(i), 0}), 24), exp})
	}
	if err := applyEntries(m, nil, bans, c, &Result{}); err != nil {
		b.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: program(m.v4.FD(), m.v6.FD())})
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	for _, bc := range []struct {
		name string
		data []byte
		want uint32
	}{
		{"ipv4-banned", frame(netip.MustParseAddr("10.1.3.7"), nil, -1), xdpDrop},
		{"ipv4-in-prefix", frame(netip.MustParseAddr("10.3.200.9"), nil, -1), xdpDrop},
		{"ipv4-pass", frame(netip.MustParseAddr("192.0.2.1"), nil, -1), xdpPass},
		{"ipv6-banned", frame(netip.MustParseAddr("2001:db8:100::307"), nil, -1), xdpDrop},
		{"ipv6-pass", frame(netip.MustParseAddr("2001:db8:200::1"), nil, -1), xdpPass},
	} {
		b.Run(bc.name, func(b *testing.B) {
			verdict, per, err := prog.Benchmark(bc.data, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			if verdict != bc.want {
				b.Fatalf("verdict %d, want %d", verdict, bc.want)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/packet")
		})
	}
}
