package detect

// This file generates the /proc/net/tcp fixtures under testdata/proc and
// checks that the checked-in files are what it generates. After changing the
// generator, rewrite the files with
//
//	SYNBAN_UPDATE_GOLDEN=1 go test ./detect/ -run TestFixturesUpToDate
//
// The fixtures are captures as a little-endian machine (x86-64, arm64)
// prints them; tests reading them skip on big-endian machines.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/synban/synban/internal/golden"
)

const fixtureRoot = "../testdata/proc"

// The fixture host's addresses (documentation ranges only, like every
// address in the fixtures).
const (
	fxServer4Str = "192.0.2.10"
	fxServer6Str = "2001:db8:0:1::10"
)

// rng is a tiny deterministic generator (splitmix64), so the fixtures do not
// depend on math/rand's algorithms.
type rng uint64

func (r *rng) next() uint64 {
	*r += 0x9e3779b97f4a7c15
	z := uint64(*r)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

func (r *rng) shuffle(c []Conn) {
	for i := len(c) - 1; i > 0; i-- {
		j := r.intn(i + 1)
		c[i], c[j] = c[j], c[i]
	}
}

// hexWords renders addr as the kernel prints it: each 32-bit word as the
// hex number it is in the given byte order. v6 renders IPv4 as ::ffff:a.b.c.d.
func hexWords(addr netip.Addr, v6 bool, order binary.ByteOrder) string {
	if !v6 {
		b := addr.As4()
		return fmt.Sprintf("%08X", order.Uint32(b[:]))
	}
	b := addr.As16()
	var s strings.Builder
	for i := 0; i < 16; i += 4 {
		fmt.Fprintf(&s, "%08X", order.Uint32(b[i:]))
	}
	return s.String()
}

// formatProcLine renders one entry the way the kernel's tcp4_seq_show and
// tcp6_seq_show do: request sockets (SYN_RECV) and TIME_WAIT sockets print
// 12 fields, full sockets 17; IPv4 lines are padded to 149 columns.
func formatProcLine(sl int, c Conn, v6 bool, order binary.ByteOrder, r *rng) string {
	var s strings.Builder
	fmt.Fprintf(&s, "%4d: %s:%04X %s:%04X %02X ", sl,
		hexWords(c.Local.Addr(), v6, order), c.Local.Port(),
		hexWords(c.Remote.Addr(), v6, order), c.Remote.Port(), uint8(c.State))
	ptr := r.next() & 0xffffffff // %pK prints a 32-bit hash
	switch c.State {
	case SynRecv, NewSynRecv:
		fmt.Fprintf(&s, "00000000:00000000 01:%08X %08X %5d %8d %d %d %016x",
			50+r.intn(400), r.intn(3), 0, 0, 0, 0, ptr)
	case TimeWait:
		fmt.Fprintf(&s, "00000000:00000000 03:%08X 00000000 %5d %8d %d %d %016x",
			r.intn(6000), 0, 0, 0, 3, ptr)
	case Listen:
		fmt.Fprintf(&s, "00000000:00000000 00:00000000 00000000 %5d %8d %d 1 %016x 100 0 0 10 0",
			0, 0, 10000+r.intn(90000), ptr)
	default:
		tx, tr, when := 0, 0, 0
		if r.intn(4) == 0 {
			tx, tr, when = r.intn(3000), 1, 10+r.intn(40)
		}
		fmt.Fprintf(&s, "%08X:%08X %02X:%08X 00000000 %5d %8d %d 1 %016x 20 4 %d 10 -1",
			tx, 0, tr, when, 33, 0, 10000+r.intn(90000), ptr, r.intn(31))
	}
	line := s.String()
	if !v6 {
		line = fmt.Sprintf("%-149s", line)
	}
	return line + "\n"
}

const (
	header4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     \n"
	header6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
)

// renderProcFile renders entries as a /proc/net/tcp (or tcp6) file.
func renderProcFile(entries []Conn, v6 bool, order binary.ByteOrder, r *rng) []byte {
	var b bytes.Buffer
	if v6 {
		b.WriteString(header6)
	} else {
		b.WriteString(header4)
	}
	for i, c := range entries {
		b.WriteString(formatProcLine(i, c, v6, order, r))
	}
	return b.Bytes()
}

func ap(addr netip.Addr, port int) netip.AddrPort { return netip.AddrPortFrom(addr, uint16(port)) }

func addr4(a, b, c, d int) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a), byte(b), byte(c), byte(d)})
}

// listeners returns the LISTEN sockets of the fixture host.
func listeners(v6 bool) []Conn {
	any := netip.IPv4Unspecified()
	if v6 {
		any = netip.IPv6Unspecified()
	}
	out := []Conn{}
	for _, port := range []int{22, 80, 443} {
		out = append(out, Conn{Local: ap(any, port), Remote: ap(any, 0), State: Listen})
	}
	if !v6 {
		lo := netip.MustParseAddr("127.0.0.1")
		out = append(out, Conn{Local: ap(lo, 5432), Remote: ap(netip.IPv4Unspecified(), 0), State: Listen})
	} else {
		out = append(out, Conn{Local: ap(any, 8443), Remote: ap(any, 0), State: Listen})
	}
	return out
}

// normalClients returns the everyday traffic of n clients, each in its own
// /24 or /48, holding 1 to 4 connections in ordinary states; every fifth
// client also has one connection half open. Clients are 198.18.i.x (IPv4)
// or 2001:db8:1000+i::x (IPv6).
func normalClients(n int, v6 bool, r *rng) []Conn {
	states := []TCPState{Established, Established, Established, TimeWait, FinWait2, CloseWait, LastAck}
	var out []Conn
	for i := 0; i < n; i++ {
		client := addr4(198, 18, i+1, 2+r.intn(250))
		server := netip.MustParseAddr(fxServer4Str)
		if v6 {
			client = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte((0x1000 + i) >> 8), byte(0x1000 + i), 14: byte(r.intn(256)), 15: byte(1 + r.intn(250))})
			server = netip.MustParseAddr(fxServer6Str)
		}
		for k := 1 + r.intn(4); k > 0; k-- {
			out = append(out, Conn{
				Local:  ap(server, []int{22, 80, 443, 443}[r.intn(4)]),
				Remote: ap(client, 32768+r.intn(28000)),
				State:  states[r.intn(len(states))],
			})
		}
		if i%5 == 0 {
			out = append(out, Conn{Local: ap(server, 443), Remote: ap(client, 32768+r.intn(28000)), State: SynRecv})
		}
	}
	// The host's own outgoing connection and a loopback pair.
	if !v6 {
		lo := netip.MustParseAddr("127.0.0.1")
		out = append(out,
			Conn{Local: ap(netip.MustParseAddr(fxServer4Str), 41000), Remote: ap(addr4(198, 19, 255, 1), 443), State: Established},
			Conn{Local: ap(lo, 5432), Remote: ap(lo, 51000), State: Established},
			Conn{Local: ap(lo, 51000), Remote: ap(lo, 5432), State: Established},
		)
	}
	return out
}

// mappedClients returns n IPv4 clients of 198.18.200+i.x connected to the
// dual-stack listener [::]:8443, as a tcp6 file shows them.
func mappedClients(n int, r *rng) []Conn {
	var out []Conn
	for i := 0; i < n; i++ {
		client := addr4(198, 18, 200+i, 2+r.intn(250))
		out = append(out, Conn{Local: ap(netip.MustParseAddr(fxServer4Str), 8443), Remote: ap(client, 32768+r.intn(28000)), State: Established})
	}
	return out
}

// flood returns count SYN_RECV entries from src to local.
func flood(src netip.Addr, local netip.AddrPort, count int, r *rng) []Conn {
	out := make([]Conn, count)
	for i := range out {
		out[i] = Conn{Local: local, Remote: ap(src, 1024+r.intn(64000)), State: SynRecv}
	}
	return out
}

// malformedLines are the bad lines of the "malformed" fixture, each with
// what ParseProcNet should say about it.
func malformedLines() []struct{ line, why string } {
	return []struct{ line, why string }{
		{"  90: 0A02000C:0050 0700", "fields"},
		{"  91: 0A0G000C:0050 0701A8C0:9C40 01 00000000:00000000 00:00000000 00000000    33        0 1234 1 0000000000000000 20 4 0 10 -1", "bad local address"},
		{"  92: 0A02000C:0050 701A8C0:9C40 01 00000000:00000000 00:00000000 00000000    33        0 1234 1 0000000000000000 20 4 0 10 -1", "bad remote address"},
		{"  93: 0A02000C:0050 0701A8C0:9C40 0D 00000000:00000000 00:00000000 00000000    33        0 1234 1 0000000000000000 20 4 0 10 -1", "bad state"},
		{"  94: 0A02000C:0050 0701A8C0:9C40 00 00000000:00000000 00:00000000 00000000    33        0 1234 1 0000000000000000 20 4 0 10 -1", "bad state"},
		{"hello world, this is not a socket", "fields"},
		{"  96: 0A02000C:0050 00000000000000000000FFFF0701A8C0:9C40 01 00000000:00000000 00:00000000 00000000    33        0 1234 1 0000000000000000 20 4 0 10 -1", "different families"},
		{"  97: 0A02000C_0050 0701A8C0:9C40 01 00000000:00000000 00:00000000 00000000    33        0 1234 1 0000000000000000 20 4 0 10 -1", "bad local address"},
		{"  xx: 0A02000C:0050 0701A8C0:9C40 01 00000000:00000000 00:00000000 00000000    33        0 1234 1 0000000000000000 20 4 0 10 -1", "bad slot"},
		{"  99: 0A02000C:0050 0701A8C0:9C40 01 00000000:00000000 00:00000000 00000000    33        0 1234 1 0000000000000000 20 4 0 10 -1  100: 0A02000C:0050 0701A8C0:9C41 01 00000000:00000000 00:00000000 00000000    33        0 1235 1 0000000000000000 20 4 0 10 -1", "fields"},
		{" 101: 0A02000C:0050 0701A8C0:9C40 01 00000000:00000000 00:00000000 00000000    33        0 1234 1 0000000000000000 20 4 0 10 -1" + strings.Repeat(" 0", 2500), "longer than"},
		{" 102: 0A02000C:00500 0701A8C0:9C40 01 00000000:00000000 00:00000000 00000000    33        0 1234 1 0000000000000000 20 4 0 10 -1", "bad local address"},
	}
}

// malformedAt gives the 0-based data line index at which each bad line is
// inserted in the "malformed" fixture.
func malformedAt(i int) int { return 3 + 7*i }

// buildFixtures returns every fixture file by its path under fixtureRoot.
func buildFixtures() map[string][]byte {
	fxServer4 := netip.MustParseAddr(fxServer4Str)
	fxServer6 := netip.MustParseAddr(fxServer6Str)
	bads := malformedLines()
	le := binary.LittleEndian
	files := map[string][]byte{}
	r := rng(20240601)

	// single-flood: one IPv4 source, 120 SYN_RECV to port 80, among normal
	// traffic; tcp6 holds normal IPv6 traffic and IPv4 clients of a
	// dual-stack listener.
	{
		c := append(listeners(false), normalClients(40, false, &r)...)
		c = append(c, flood(netip.MustParseAddr("203.0.113.7"), ap(fxServer4, 80), 120, &r)...)
		r.shuffle(c[4:])
		files["single-flood/net/tcp"] = renderProcFile(c, false, le, &r)
		c6 := append(listeners(true), normalClients(25, true, &r)...)
		c6 = append(c6, mappedClients(10, &r)...)
		r.shuffle(c6[4:])
		files["single-flood/net/tcp6"] = renderProcFile(c6, true, le, &r)
	}
	// prefix-flood: 200 sources of 198.51.100.0/24 with 2 SYN_RECV each.
	{
		c := append(listeners(false), normalClients(30, false, &r)...)
		for i := 1; i <= 200; i++ {
			c = append(c, flood(addr4(198, 51, 100, i), ap(fxServer4, 443), 2, &r)...)
		}
		r.shuffle(c[4:])
		files["prefix-flood/net/tcp"] = renderProcFile(c, false, le, &r)
	}
	// mixed: IPv6 sources and IPv4-mapped ones; see TestAnalyzeMixed.
	{
		c6 := append(listeners(true), normalClients(20, true, &r)...)
		c6 = append(c6, flood(netip.MustParseAddr("2001:db8:66::6"), ap(fxServer6, 80), 75, &r)...)
		for i := 1; i <= 150; i++ {
			src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, 0, 1, 14: byte(i >> 8), 15: byte(i)})
			c6 = append(c6, flood(src, ap(fxServer6, 443), 2, &r)...)
		}
		// IPv4 clients of the dual-stack listener: ::ffff:203.0.113.50 with
		// 40 half-open, and 198.51.100.1-120 with one each.
		c6 = append(c6, flood(netip.MustParseAddr("203.0.113.50"), ap(fxServer4, 8443), 40, &r)...)
		for i := 1; i <= 120; i++ {
			c6 = append(c6, flood(addr4(198, 51, 100, i), ap(fxServer4, 8443), 1, &r)...)
		}
		c6 = append(c6, mappedClients(8, &r)...)
		r.shuffle(c6[4:])
		files["mixed/net/tcp6"] = renderProcFile(c6, true, le, &r)

		// The same IPv4 sources reach IPv4-only listeners too:
		// 203.0.113.50 with 30 more, 198.51.100.121-220 with one each.
		c := append(listeners(false), normalClients(15, false, &r)...)
		c = append(c, flood(netip.MustParseAddr("203.0.113.50"), ap(fxServer4, 22), 30, &r)...)
		for i := 121; i <= 220; i++ {
			c = append(c, flood(addr4(198, 51, 100, i), ap(fxServer4, 80), 1, &r)...)
		}
		r.shuffle(c[4:])
		files["mixed/net/tcp"] = renderProcFile(c, false, le, &r)
	}
	// quiet: normal traffic only.
	{
		c := append(listeners(false), normalClients(60, false, &r)...)
		r.shuffle(c[4:])
		files["quiet/net/tcp"] = renderProcFile(c, false, le, &r)
		c6 := append(listeners(true), normalClients(30, true, &r)...)
		c6 = append(c6, mappedClients(12, &r)...)
		r.shuffle(c6[4:])
		files["quiet/net/tcp6"] = renderProcFile(c6, true, le, &r)
	}
	// malformed: normal traffic with bad lines, a blank line and a CRLF line
	// mixed in (no tcp6: IPv6 disabled).
	{
		c := append(listeners(false), normalClients(40, false, &r)...)
		r.shuffle(c[4:])
		good := strings.SplitAfter(string(renderProcFile(c, false, le, &r)), "\n")
		good = good[:len(good)-1] // after the final newline
		lines := []string{good[0]}
		data := good[1:]
		bad := 0
		for i := 0; i < len(data); i++ {
			if bad < len(bads) && i == malformedAt(bad) {
				lines = append(lines, bads[bad].line+"\n")
				bad++
			}
			lines = append(lines, data[i])
		}
		lines[5] = strings.TrimSuffix(lines[5], "\n") + "\r\n"
		lines = append(lines[:9], append([]string{"   \n"}, lines[9:]...)...)
		if bad != len(bads) {
			panic("the malformed fixture is too short for its bad lines")
		}
		files["malformed/net/tcp"] = []byte(strings.Join(lines, ""))
	}
	return files
}

func TestFixturesUpToDate(t *testing.T) {
	files := buildFixtures()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	update := golden.Update()
	for _, name := range names {
		path := filepath.Join(fixtureRoot, name)
		if update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, files[name], 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (regenerate with SYNBAN_UPDATE_GOLDEN=1)", err)
		}
		if !bytes.Equal(got, files[name]) {
			t.Errorf("%s differs from what the generator makes (regenerate with SYNBAN_UPDATE_GOLDEN=1)", path)
		}
	}
}

// needLittleEndian skips tests that read the checked-in fixtures, which
// hold addresses as a little-endian kernel prints them.
func needLittleEndian(t *testing.T) {
	t.Helper()
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], 1)
	if b[0] != 1 {
		t.Skip("the fixtures are little-endian captures; this machine is big-endian")
	}
}
