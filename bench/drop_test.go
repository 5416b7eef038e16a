package main

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

func TestSplice(t *testing.T) {
	dropBegin, dropEnd := sectionMarkers("drop")
	if dropBegin != "<!-- bench -drop: begin -->" || dropEnd != "<!-- bench -drop: end -->" {
		t.Fatalf("drop markers %q %q changed: BENCHMARKS.md carries them", dropBegin, dropEnd)
	}
	sec := "## Drop cost\n\nrows\n"
	// Appended to a file without the section, kept apart by a blank line.
	got := splice("# synban benchmarks\n\ntables\n", "drop", sec)
	want := "# synban benchmarks\n\ntables\n\n" + dropBegin + "\n" + sec + dropEnd + "\n"
	if got != want {
		t.Fatalf("append:\n%q\nwant\n%q", got, want)
	}
	if markedSection(got, "drop") != sec {
		t.Errorf("markedSection = %q, want %q", markedSection(got, "drop"), sec)
	}
	// Replaced in place, the rest kept.
	again := splice(got+"\n## After\n", "drop", "## Drop cost\n\nnew rows\n")
	if !strings.Contains(again, "new rows") || strings.Contains(again, "\nrows\n") || !strings.HasSuffix(again, "## After\n") ||
		!strings.HasPrefix(again, "# synban benchmarks\n\ntables\n") || strings.Count(again, dropBegin) != 1 {
		t.Errorf("replace:\n%s", again)
	}
	// Another scenario's section goes between its own markers and leaves
	// the drop section alone; replacing it twice keeps one copy.
	pass := splice(again, "pass", "## One pass\n\nold\n")
	pass = splice(pass, "pass", "## One pass\n\nnew\n")
	if markedSection(pass, "drop") != "## Drop cost\n\nnew rows\n" || markedSection(pass, "pass") != "## One pass\n\nnew\n" ||
		strings.Contains(pass, "old") || !strings.Contains(pass, "## After\n") {
		t.Errorf("two sections:\n%s", pass)
	}
	if markedSection("no markers", "drop") != "" {
		t.Error("markedSection of a file without markers is not empty")
	}
}

func TestTrafgenConf(t *testing.T) {
	for c, want := range map[int][]string{
		caseOne:     {"saddr=10.100.0.1,"},
		caseMany:    {"saddr[2]=drnd(0, 38)", "saddr[1]=drnd(160, 163)"},
		caseSpoofed: {"saddr=10.202.0.0, saddr[2:2]=drnd()"},
	} {
		conf := trafgenConf(c, "02:00:00:00:00:01")
		for _, w := range want {
			if !strings.Contains(conf, w) || !strings.Contains(conf, "da=02:00:00:00:00:01") || !strings.Contains(conf, "dp=80") {
				t.Errorf("case %d: %q lacks %q", c, conf, w)
			}
		}
	}
	// The flood of case (b) stays inside its bans: /32s up to 10.100.38.255
	// (banAddr 0..9983) and the /24s 10.160-163.0-249.
	bans := caseBans(caseMany)
	if len(bans) != 11000 || bans[38*256+255].String() != "10.100.38.255/32" || bans[10999].String() != "10.163.249.0/24" {
		t.Errorf("case (b) bans: %d, [9983] %v, last %v", len(bans), bans[38*256+255], bans[len(bans)-1])
	}
}

func TestSynFrame(t *testing.T) {
	src, dst := net.HardwareAddr{2, 0, 0, 0, 0, 2}, net.HardwareAddr{2, 0, 0, 0, 0, 1}
	f := synFrame(src, dst)
	if len(f) != frameLen || !bytes.Equal(f[0:6], dst) || !bytes.Equal(f[6:12], src) {
		t.Fatalf("frame % x", f)
	}
	checkSYN(t, f)
	if got := netip.AddrFrom4([4]byte(f[offSaddr : offSaddr+4])); got != netip.MustParseAddr("10.100.0.1") {
		t.Errorf("template source %v", got)
	}
	// A checksum that could be wrong: flip a bit and it must fail.
	f[offSeq] ^= 1
	if inetChecksum(f[frameTCP:], pseudoSum(f[frameIP:frameTCP])) == 0 {
		t.Error("the TCP checksum does not cover the sequence number")
	}
}

// checkSYN fails t unless f is a SYN to the victim's port with valid
// IPv4 and TCP checksums.
func checkSYN(t *testing.T, f []byte) {
	t.Helper()
	ip, tcp := f[frameIP:frameTCP], f[frameTCP:]
	if inetChecksum(ip, 0) != 0 {
		t.Errorf("IPv4 checksum of % x is wrong", ip)
	}
	if inetChecksum(tcp, pseudoSum(ip)) != 0 {
		t.Errorf("TCP checksum of % x is wrong", f)
	}
	if binary.BigEndian.Uint16(tcp[2:]) != dropPort || tcp[13] != 0x02 || netip.AddrFrom4([4]byte(ip[16:20])) != dropVictimAddr {
		t.Errorf("not a SYN to the victim's port: % x", f)
	}
}

// TestSenderProgram runs the xdp sender's program on the template (not in
// live-frame mode: the frame comes back) and checks that every frame it
// makes has valid checksums, a source inside the case's bans ((c): inside
// 10.202.0.0/16) and varying ports and sources.
func TestSenderProgram(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading a BPF program needs root")
	}
	frame := synFrame(net.HardwareAddr{2, 0, 0, 0, 0, 2}, net.HardwareAddr{2, 0, 0, 0, 0, 1})
	for c := range numCases {
		for _, ifindex := range []int{7, 0} {
			prog, err := loadSender(c, ifindex)
			if err != nil {
				t.Fatal(err)
			}
			var within []netip.Prefix
			if c == caseSpoofed {
				within = []netip.Prefix{netip.MustParsePrefix("10.202.0.0/16")}
			} else {
				within = caseBans(c)
			}
			sources, ports := map[netip.Addr]bool{}, map[uint16]bool{}
			for range 400 {
				out := make([]byte, len(frame))
				ret, err := prog.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
				if err != nil {
					t.Fatal(err)
				}
				if want := map[bool]uint32{true: xdpActRedirect, false: xdpActDrop}[ifindex != 0]; ret != want {
					t.Fatalf("case %d, ifindex %d: action %d, want %d", c, ifindex, ret, want)
				}
				checkSYN(t, out)
				src := netip.AddrFrom4([4]byte(out[offSaddr : offSaddr+4]))
				if !slices.ContainsFunc(within, func(p netip.Prefix) bool { return p.Contains(src) }) {
					t.Fatalf("case %d: source %v outside the case's range", c, src)
				}
				sources[src] = true
				ports[binary.BigEndian.Uint16(out[offSport:])] = true
			}
			prog.Close()
			if wantMany := c != caseOne; wantMany != (len(sources) > 100) || len(ports) < 300 {
				t.Errorf("case %d: %d sources, %d ports in 400 frames", c, len(sources), len(ports))
			}
		}
	}
}

func TestParseSenders(t *testing.T) {
	got, err := parseSenders("xdp, trafgen")
	if err != nil || !slices.Equal(got, []string{senderXDP, senderTrafgen}) {
		t.Errorf("parseSenders(xdp, trafgen) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "xdp,xdp", "pktgen", "xdp,"} {
		if got, err := parseSenders(bad); err == nil {
			t.Errorf("parseSenders(%q) = %v, want an error", bad, got)
		}
	}
}

func TestRoundOrder(t *testing.T) {
	even, odd := roundOrder(0, 2), roundOrder(1, 2)
	if len(even) != 2*numPaths {
		t.Fatalf("%d pairs, want %d", len(even), 2*numPaths)
	}
	// Every pair once per round; senders alternate path by path; the next
	// round runs backwards.
	seen := map[[2]int]bool{}
	for i, sp := range even {
		if seen[sp] || sp[0] != i%2 || sp[1] != i/2 {
			t.Fatalf("round 0, position %d: %v", i, sp)
		}
		seen[sp] = true
		if odd[len(odd)-1-i] != sp {
			t.Fatalf("round 1 is not round 0 backwards at %d: %v", i, odd)
		}
	}
	if !slices.Equal(roundOrder(2, 2), even) {
		t.Error("round 2 differs from round 0")
	}
}

func TestTarget(t *testing.T) {
	for _, c := range []struct {
		x, base, limit float64
		want           string
	}{
		{40, 100, 0.4, "0.40× (met)"},
		{41, 100, 0.4, "0.41× (not met)"},
		{95, 760, 0.5, "0.12× (met)"},
		{0, 100, 0.4, "not measured"},
		{50, 0, 0.4, "not measured"},
	} {
		if got := target(c.x, c.base, c.limit); got != c.want {
			t.Errorf("target(%v, %v, %v) = %q, want %q", c.x, c.base, c.limit, got, c.want)
		}
	}
}
