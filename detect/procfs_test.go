package detect

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const testHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

func mustParse(t testing.TB, input string) ([]Conn, ParseStats) {
	t.Helper()
	conns, st, err := ParseProcNet(strings.NewReader(input), nil)
	if err != nil {
		t.Fatalf("ParseProcNet: %v", err)
	}
	checkStats(t, st, len(conns))
	return conns, st
}

// checkStats asserts the ParseStats invariants.
func checkStats(t testing.TB, st ParseStats, appended int) {
	t.Helper()
	if st.Lines != st.Conns+st.Listen+st.Malformed {
		t.Errorf("Lines %d != Conns %d + Listen %d + Malformed %d", st.Lines, st.Conns, st.Listen, st.Malformed)
	}
	if st.Conns != appended {
		t.Errorf("Conns = %d, but %d entries were appended", st.Conns, appended)
	}
	if want := min(st.Malformed, maxParseErrors); len(st.Errors) != want {
		t.Errorf("%d error messages for %d malformed lines, want %d", len(st.Errors), st.Malformed, want)
	}
}

func conn(local, remote string, s TCPState) Conn {
	return Conn{Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote), State: s}
}

func TestParseProcNetByteOrder(t *testing.T) {
	// Lines rendered in this machine's byte order, as its kernel would.
	var r rng
	for _, c := range []Conn{
		conn("10.1.2.3:80", "203.0.113.7:40000", Established),
		conn("192.0.2.10:443", "198.51.100.254:65535", SynRecv),
		conn("[2001:db8:0:1::10]:443", "[2001:db8:abcd:12::fe]:1024", SynRecv),
		conn("[fe80::1]:22", "[fe80::abcd:ef01:2345:6789]:50000", Established),
	} {
		line := formatProcLine(7, c, c.Local.Addr().Is6(), binary.NativeEndian, &r)
		got, _ := mustParse(t, line)
		if len(got) != 1 || got[0] != c {
			t.Errorf("parse %q = %v, want %v", line, got, c)
		}
	}

	// Literal lines as a little-endian kernel prints them.
	t.Run("little-endian literals", func(t *testing.T) {
		needLittleEndian(t)
		input := testHeader +
			"   0: 0100007F:0050 0A02000C:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 0 10 -1\n" +
			"   1: B80D0120000000000000000001000000:01BB B80D0120000000000000000002000000:D431 03 00000000:00000000 01:00000063 00000000     0        0 0 0 0000000000000000\n" +
			"   2: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000A00000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 0 10 -1\n"
		got, _ := mustParse(t, input)
		want := []Conn{
			conn("127.0.0.1:80", "12.0.2.10:40000", Established),
			conn("[2001:db8::1]:443", "[2001:db8::2]:54321", SynRecv),
			conn("127.0.0.1:80", "10.0.0.10:50000", Established),
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got  %v\nwant %v", got, want)
		}
		for _, c := range got {
			if c.Local.Addr().Is4In6() || c.Remote.Addr().Is4In6() {
				t.Errorf("%v: IPv4-mapped address not unmapped", c)
			}
		}
	})
}

func TestParseProcNetStates(t *testing.T) {
	var b strings.Builder
	b.WriteString(testHeader)
	var r rng
	for s := Established; s <= NewSynRecv; s++ {
		b.WriteString(formatProcLine(int(s), conn("10.0.0.1:80", fmt.Sprintf("10.0.0.2:%d", 1000+int(s)), s), false, binary.NativeEndian, &r))
	}
	got, st := mustParse(t, b.String())
	if st.Listen != 1 || st.Malformed != 0 || st.Conns != 11 {
		t.Fatalf("stats %+v, want 11 conns, 1 listen, 0 malformed", st)
	}
	for _, c := range got {
		if c.State == Listen {
			t.Errorf("LISTEN entry returned: %v", c)
		}
		if want := TCPState(c.Remote.Port() - 1000); c.State != want {
			t.Errorf("%v: state %d, want %d", c, c.State, want)
		}
	}
	// Lower-case hex is accepted; state 0 and 13+ are not states.
	line := "   0: 0100007F:0050 0A02000C:9c40 0b 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 0 10 -1\n"
	if got, _ := mustParse(t, line); len(got) != 1 || got[0].State != Closing || got[0].Remote.Port() != 0x9c40 {
		t.Errorf("lower-case line: %v", got)
	}
	for _, s := range []string{"00", "0D", "FF", "1", "001"} {
		line := "   0: 0100007F:0050 0A02000C:9C40 " + s + " 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 0 10 -1\n"
		if _, st := mustParse(t, line); st.Malformed != 1 || !strings.Contains(st.Errors[0], "bad state") {
			t.Errorf("state %q: stats %+v, want one bad-state line", s, st)
		}
	}
}

func TestParseProcNetHeaderAndWhitespace(t *testing.T) {
	body := "   0: 0100007F:0050 0A02000C:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 0 10 -1"
	for name, input := range map[string]string{
		"header":                     testHeader + body + "\n",
		"no header":                  body + "\n",
		"no final newline":           testHeader + body,
		"CRLF":                       strings.ReplaceAll(testHeader+body+"\n", "\n", "\r\n"),
		"trailing spaces":            testHeader + body + strings.Repeat(" ", 40) + "\n",
		"tabs":                       testHeader + strings.ReplaceAll(body, " ", "\t") + "\n",
		"blank lines":                testHeader + "\n   \n" + body + "\n\r\n\n",
		"padded header, leading ws":  "   " + testHeader + "\t" + body + "\n",
		"CR only ending after line ": testHeader + body + "\r",
	} {
		got, st := mustParse(t, input)
		if len(got) != 1 || st.Lines != 1 || st.Malformed != 0 {
			t.Errorf("%s: got %v, stats %+v; want one conn", name, got, st)
		}
	}
	// A header is only a header on the first line.
	_, st := mustParse(t, body+"\n"+testHeader)
	if st.Malformed != 1 || !strings.HasPrefix(st.Errors[0], "line 2: ") {
		t.Errorf("header on line 2: stats %+v, want it malformed", st)
	}
}

func TestParseProcNetEmpty(t *testing.T) {
	for _, input := range []string{"", testHeader, "\n\n", testHeader + "   \n"} {
		prev := []Conn{conn("10.0.0.1:1", "10.0.0.2:2", Established)}
		got, st, err := ParseProcNet(strings.NewReader(input), prev)
		if err != nil || len(got) != 1 || got[0] != prev[0] || st.Lines != 0 || st.Malformed != 0 {
			t.Errorf("%q: got %v, %+v, %v; want dst unchanged, nothing counted", input, got, st, err)
		}
	}
}

func TestParseProcNetAppends(t *testing.T) {
	input := testHeader + "   0: 0100007F:0050 0A02000C:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 0 10 -1\n"
	dst := []Conn{conn("10.9.9.9:9", "10.8.8.8:8", SynRecv)}
	got, _, err := ParseProcNet(strings.NewReader(input), dst)
	if err != nil || len(got) != 2 || got[0] != dst[0] || got[1].State != Established {
		t.Fatalf("got %v, %v; want the old entry then the new one", got, err)
	}
}

// TestParseProcNetMalformedFixture checks every bad line of the "malformed"
// fixture is counted, with its line number and reason, and every good line
// parsed.
func TestParseProcNetMalformedFixture(t *testing.T) {
	needLittleEndian(t)
	data, err := os.ReadFile(filepath.Join(fixtureRoot, "malformed/net/tcp"))
	if err != nil {
		t.Fatal(err)
	}
	got, st := mustParse(t, string(data))
	bads := malformedLines()
	if st.Malformed != len(bads) {
		t.Errorf("Malformed = %d, want %d: %q", st.Malformed, len(bads), st.Errors)
	}
	lines := strings.Split(string(data), "\n")
	for i, bad := range bads[:min(len(bads), maxParseErrors)] {
		n := slicesIndex(lines, bad.line) + 1
		if n == 0 {
			t.Fatalf("bad line %d not in the fixture", i)
		}
		if i >= len(st.Errors) {
			break
		}
		if e := st.Errors[i]; !strings.HasPrefix(e, fmt.Sprintf("line %d: ", n)) || !strings.Contains(e, bad.why) {
			t.Errorf("error %d = %q, want line %d: ...%s...", i, e, n, bad.why)
		}
	}
	// Every other non-blank data line is a good one.
	good, listen := 0, 0
	for _, l := range lines[1:] {
		l = strings.TrimSpace(l)
		if l == "" || slicesIndexFunc(bads, func(b struct{ line, why string }) bool { return strings.TrimSpace(b.line) == l }) >= 0 {
			continue
		}
		if strings.Fields(l)[3] == "0A" {
			listen++
		} else {
			good++
		}
	}
	if len(got) != good || st.Listen != listen {
		t.Errorf("parsed %d conns and %d listeners, want %d and %d", len(got), st.Listen, good, listen)
	}
	if !bytes.Contains(data, []byte("\r\n")) || !bytes.Contains(data, []byte("\n   \n")) {
		t.Error("the fixture lost its CRLF line or its blank line")
	}
}

func slicesIndex(s []string, v string) int {
	return slicesIndexFunc(s, func(x string) bool { return x == v })
}

func slicesIndexFunc[T any](s []T, f func(T) bool) int {
	for i, x := range s {
		if f(x) {
			return i
		}
	}
	return -1
}

func TestParseProcNetLongLines(t *testing.T) {
	good := "   0: 0100007F:0050 0A02000C:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 0 10 -1\n"
	for _, n := range []int{MaxProcNetLine + 1, 70 << 10, 300 << 10} {
		input := testHeader + good + strings.Repeat("7", n) + "\n" + good + strings.Repeat("x", n)
		got, st := mustParse(t, input)
		if len(got) != 2 || st.Malformed != 2 {
			t.Errorf("%d-byte lines: %d conns, stats %+v; want 2 conns, 2 malformed", n, len(got), st)
			continue
		}
		if !strings.HasPrefix(st.Errors[0], "line 3: longer than") || !strings.HasPrefix(st.Errors[1], "line 5: longer than") {
			t.Errorf("%d-byte lines: errors %q", n, st.Errors)
		}
	}
	// A line of exactly MaxProcNetLine bytes, newline included, is accepted.
	exact := strings.TrimSuffix(good, "\n")
	exact += strings.Repeat(" ", MaxProcNetLine-len(exact)-1) + "\n"
	if got, st := mustParse(t, exact); len(got) != 1 {
		t.Errorf("a %d-byte line: stats %+v", len(exact), st)
	}
}

func TestParseProcNetErrorsCapped(t *testing.T) {
	input := strings.Repeat("garbage\n", 25)
	_, st := mustParse(t, input)
	if st.Malformed != 25 || len(st.Errors) != maxParseErrors || !strings.HasPrefix(st.Errors[9], "line 10: ") {
		t.Errorf("stats %+v", st)
	}
}

// errReader returns data, then err.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestParseProcNetReadError(t *testing.T) {
	boom := errors.New("boom")
	good := "   0: 0100007F:0050 0A02000C:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 0 10 -1\n"
	got, _, err := ParseProcNet(&errReader{data: []byte(testHeader + good + good), err: boom}, nil)
	if !errors.Is(err, boom) || len(got) != 2 {
		t.Errorf("got %d conns, err %v; want 2 conns and the read error", len(got), err)
	}
	got, st, err := ParseProcNet(&errReader{data: []byte(strings.Repeat("y", 100<<10)), err: boom}, nil)
	if !errors.Is(err, boom) || len(got) != 0 || st.Malformed != 1 {
		t.Errorf("error inside a long line: %d conns, %+v, err %v", len(got), st, err)
	}
}

// TestParseProcNetNoPerLineAllocs checks the parser's allocations do not
// grow with the number of lines.
func TestParseProcNetNoPerLineAllocs(t *testing.T) {
	small := genProcNet(10, false)
	big := genProcNet(5000, false)
	dst := make([]Conn, 0, 5000)
	allocs := func(input []byte) float64 {
		rd := bytes.NewReader(input)
		return testing.AllocsPerRun(20, func() {
			rd.Reset(input)
			var err error
			if dst, _, err = ParseProcNet(rd, dst[:0]); err != nil {
				t.Fatal(err)
			}
		})
	}
	if s, b := allocs(small), allocs(big); b > s {
		t.Errorf("%v allocations for 10 lines, %v for 5000: the parser allocates per line", s, b)
	}
}

// TestParseLiveProcNet parses this namespace's real tables, with a
// connection of our own in them, and finds that connection.
func TestParseLiveProcNet(t *testing.T) {
	type pair struct{ server, client netip.AddrPort }
	var want []pair
	connect := func(network, listen, dial string) {
		ln, err := net.Listen(network, listen)
		if err != nil {
			t.Logf("no %s listener on %s: %v", network, listen, err)
			return
		}
		t.Cleanup(func() { ln.Close() })
		port := ln.Addr().(*net.TCPAddr).Port
		c, err := net.Dial(network, net.JoinHostPort(dial, fmt.Sprint(port)))
		if err != nil {
			t.Fatalf("dial %s port %d: %v", dial, port, err)
		}
		t.Cleanup(func() { c.Close() })
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		server := s.LocalAddr().(*net.TCPAddr).AddrPort()
		client := c.LocalAddr().(*net.TCPAddr).AddrPort()
		want = append(want, pair{
			netip.AddrPortFrom(server.Addr().Unmap(), server.Port()),
			netip.AddrPortFrom(client.Addr().Unmap(), client.Port()),
		})
	}
	connect("tcp4", "127.0.0.1:0", "127.0.0.1")
	connect("tcp6", "[::1]:0", "::1")
	connect("tcp", "[::]:0", "127.0.0.1") // dual stack: appears in tcp6 as ::ffff:127.0.0.1

	var all []Conn
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) && name == "/proc/net/tcp6" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var st ParseStats
		all, st, err = ParseProcNet(f, all)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Malformed != 0 {
			t.Errorf("%s: %d malformed lines: %q", name, st.Malformed, st.Errors)
		}
		if st.Listen == 0 {
			t.Errorf("%s: no LISTEN entries, but the test listens", name)
		}
	}
	for _, w := range want {
		found := 0
		for _, c := range all {
			if c.Local == w.server && c.Remote == w.client && c.State == Established {
				found++
			}
			if c.Local == w.client && c.Remote == w.server && c.State == Established {
				found++
			}
		}
		if found != 2 {
			t.Errorf("connection %v <-> %v found %d times in both directions, want 2", w.server, w.client, found)
		}
	}
	if len(want) == 0 || want[0].server.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("the IPv4 loopback connection was not made: %v", want)
	}
}

// fixtureConns parses one fixture file directly.
func fixtureConns(t *testing.T, name string) []Conn {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtureRoot, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, st, err := ParseProcNet(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkStats(t, st, len(c))
	return c
}

func TestProcFSSample(t *testing.T) {
	needLittleEndian(t)
	ctx := context.Background()
	before := time.Now()
	s, err := ProcFS{Root: filepath.Join(fixtureRoot, "single-flood")}.Sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := append(fixtureConns(t, "single-flood/net/tcp"), fixtureConns(t, "single-flood/net/tcp6")...)
	if len(s.Conns) != len(want) || fmt.Sprint(s.Conns) != fmt.Sprint(want) {
		t.Errorf("Sample read %d conns, want %d (tcp then tcp6)", len(s.Conns), len(want))
	}
	if s.Source != "procfs" || s.Malformed != 0 || s.Time.Before(before) || s.Time.After(time.Now()) {
		t.Errorf("Sample = source %q, malformed %d, time %v", s.Source, s.Malformed, s.Time)
	}
	// The tcp6 file's IPv4 clients come out as IPv4.
	mapped := 0
	for _, c := range s.Conns {
		if c.Local.Port() == 8443 && c.Remote.Addr().Is4() {
			mapped++
		}
	}
	if mapped != 10 {
		t.Errorf("%d IPv4 clients of the dual-stack listener, want 10", mapped)
	}

	// No tcp6 (IPv6 disabled) is fine; malformed lines are reported with
	// the file they are in.
	s, err = ProcFS{Root: filepath.Join(fixtureRoot, "malformed")}.Sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Malformed != len(malformedLines()) || len(s.Errors) != maxParseErrors ||
		!strings.HasPrefix(s.Errors[0], filepath.Join(fixtureRoot, "malformed/net/tcp")+" line ") {
		t.Errorf("malformed fixture: %d malformed, errors %q", s.Malformed, s.Errors)
	}

	// No tcp at all is an error.
	if _, err := (ProcFS{Root: t.TempDir()}).Sample(ctx); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("empty root: err %v, want not-exist", err)
	}
	// Neither is a cancelled context a sample.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := (ProcFS{Root: filepath.Join(fixtureRoot, "quiet")}).Sample(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err %v", err)
	}
}

func TestProcFSDefaultRoot(t *testing.T) {
	var p Sampler = ProcFS{}
	if p.Name() != "procfs" {
		t.Errorf("Name() = %q", p.Name())
	}
	s, err := p.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Malformed != 0 {
		t.Errorf("/proc: %d malformed: %q", s.Malformed, s.Errors)
	}
}

// genProcNet renders n /proc/net/tcp (or tcp6) lines in this machine's byte
// order: 70% SYN_RECV from many sources, the rest full sockets, a few
// listeners.
func genProcNet(n int, v6 bool) []byte {
	var b bytes.Buffer
	b.Grow(n * 160)
	if v6 {
		b.WriteString(header6)
	} else {
		b.WriteString(header4)
	}
	r := rng(n)
	server := netip.MustParseAddr("10.0.0.1")
	if v6 {
		server = netip.MustParseAddr("fd00::1")
	}
	for i := 0; i < n; i++ {
		x := r.next()
		var remote netip.Addr
		if v6 {
			remote = netip.AddrFrom16([16]byte{0xfd, 0, 1, 2, 3, 4, 5, byte(x >> 8), 12: byte(x >> 16), 13: byte(x >> 24), 14: byte(x >> 32), 15: byte(x)})
		} else {
			remote = netip.AddrFrom4([4]byte{10, byte(x >> 8), byte(x >> 16), byte(x)})
		}
		c := Conn{Local: ap(server, 443), Remote: ap(remote, 1024+int(x>>40)%60000), State: SynRecv}
		switch x % 10 {
		case 0, 1:
			c.State = Established
		case 2:
			c.State = TimeWait
		}
		if i%1000 == 0 {
			c.State = Listen
		}
		b.WriteString(formatProcLine(i, c, v6, binary.NativeEndian, &r))
	}
	return b.Bytes()
}

func BenchmarkParseProcNet1M(b *testing.B) {
	for _, tc := range []struct {
		name string
		n    int
		v6   bool
	}{
		{"tcp-10k", 10_000, false},
		{"tcp-100k", 100_000, false},
		{"tcp-1M", 1_000_000, false},
		{"tcp6-100k", 100_000, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			input := genProcNet(tc.n, tc.v6)
			rd := bytes.NewReader(input)
			dst := make([]Conn, 0, tc.n)
			b.SetBytes(int64(len(input)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rd.Reset(input)
				var st ParseStats
				var err error
				dst, st, err = ParseProcNet(rd, dst[:0])
				if err != nil || st.Malformed != 0 || st.Lines != tc.n {
					b.Fatalf("err %v, stats %+v", err, st)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(tc.n), "ns/line")
		})
	}
}

func FuzzParseProcNet(f *testing.F) {
	f.Add([]byte(testHeader + "   0: 0100007F:0050 0A02000C:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 0 10 -1\n"))
	f.Add(genProcNet(3, false))
	f.Add(genProcNet(3, true))
	for _, bad := range malformedLines() {
		f.Add([]byte(bad.line + "\n"))
	}
	f.Add([]byte("\r\n\n \t\r"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		prefix := []Conn{conn("10.9.9.9:9", "10.8.8.8:8", SynRecv)}
		got, st, err := ParseProcNet(bytes.NewReader(data), prefix)
		if err != nil {
			t.Fatalf("error from a bytes.Reader: %v", err)
		}
		if len(got) < 1 || got[0] != prefix[0] {
			t.Fatal("dst's existing entries changed")
		}
		checkStats(t, st, len(got)-1)
		if st.Lines > bytes.Count(data, []byte("\n"))+1 {
			t.Errorf("%d lines counted in %d newlines", st.Lines, bytes.Count(data, []byte("\n")))
		}
		var r rng
		var again bytes.Buffer
		for _, c := range got[1:] {
			if c.State < Established || c.State > NewSynRecv || c.State == Listen {
				t.Errorf("%v: state %d", c, c.State)
			}
			l, rm := c.Local.Addr(), c.Remote.Addr()
			if !l.IsValid() || !rm.IsValid() || l.Is4In6() || rm.Is4In6() || l.Zone() != "" {
				t.Errorf("%v: bad addresses", c)
			}
			// Render the entry again (a mapped pair as IPv6).
			again.WriteString(formatProcLine(0, c, l.Is6() || rm.Is6(), binary.NativeEndian, &r))
		}
		// Parsing the rendering gives the same entries back.
		back, st2, _ := ParseProcNet(&again, nil)
		if st2.Malformed != 0 || !slices.Equal(back, got[1:]) {
			t.Errorf("rendered again, %d entries parse as %d (%q)", len(got)-1, len(back), st2.Errors)
		}
	})
}
