package detect

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseNetstatCaptured(t *testing.T) {
	for _, tc := range []struct {
		file                string
		sent, doCookies     int64
		recv, drop, overflw int64
	}{
		{"idle-6.18.txt", 0, 0, 0, 0, 0},
		{"cookies-6.18.txt", 300, 300, 0, 0, 0},
	} {
		f, err := os.Open(filepath.Join("..", "testdata", "netstat", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseNetstat(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if got.SyncookiesSent != tc.sent || got.TCPReqQFullDoCookies != tc.doCookies || got.SyncookiesRecv != tc.recv ||
			got.TCPReqQFullDrop != tc.drop || got.ListenOverflows != tc.overflw {
			t.Errorf("%s: %+v", tc.file, got)
		}
		// Every TcpExt key of the header is kept.
		b, _ := os.ReadFile(filepath.Join("..", "testdata", "netstat", tc.file))
		names := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:]
		if len(got.All) != len(names) {
			t.Errorf("%s: %d counters, header names %d", tc.file, len(got.All), len(names))
		}
		for _, n := range names {
			if _, ok := got.All[n]; !ok {
				t.Errorf("%s: counter %s missing", tc.file, n)
			}
		}
	}
}

func TestParseNetstatValues(t *testing.T) {
	in := "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed ListenOverflows ListenDrops TCPReqQFullDoCookies TCPReqQFullDrop Other\n" +
		"TcpExt: 11 2 3 4 5 6 7 8\n" +
		"IpExt: InNoRoutes InOctets\n" +
		"IpExt: 0 99999999999\n"
	got, err := ParseNetstat(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := TcpExt{SyncookiesSent: 11, SyncookiesRecv: 2, SyncookiesFailed: 3, ListenOverflows: 4, ListenDrops: 5, TCPReqQFullDoCookies: 6, TCPReqQFullDrop: 7}
	if got.All["Other"] != 8 {
		t.Errorf("Other = %d, want 8", got.All["Other"])
	}
	got.All = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseNetstatErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                           "no TcpExt",
		"IpExt: A B\nIpExt: 1 2\n":   "no TcpExt",
		"TcpExt: A B\nTcpExt: 1\n":   "1 values for 2 names",
		"TcpExt: A B\nIpExt: 1 2\n":  "prefix",
		"TcpExt: A B\n":              "header without a value line",
		"TcpExt: A B\nTcpExt: 1 x\n": "TcpExt B",
		"TcpExt: A\nTcpExt: -1\n":    "TcpExt A",
		"garbage line\nTcpExt: 1\n":  "line 1",
		"TcpExt: A\nTcpExt: 1\nTcpExt: A\nTcpExt: 2\n": "second TcpExt",
	} {
		_, err := ParseNetstat(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseNetstat(%q) err = %v, want one containing %q", in, err, want)
		}
	}
}

func TestDelta(t *testing.T) {
	a := TcpExt{All: map[string]int64{"SyncookiesSent": 100, "SyncookiesRecv": 5, "ListenDrops": 50}}
	b := TcpExt{All: map[string]int64{"SyncookiesSent": 1100, "SyncookiesRecv": 5, "ListenDrops": 7, "TCPReqQFullDrop": 3}}
	a.fill()
	b.fill()
	d := Delta(a, b)
	if d.SyncookiesSent != 1000 || d.SyncookiesRecv != 0 || d.TCPReqQFullDrop != 3 {
		t.Errorf("Delta = %+v", d)
	}
	// A counter that went down restarted (namespace recreated): count from zero.
	if d.ListenDrops != 7 || d.All["ListenDrops"] != 7 {
		t.Errorf("Delta of a restarted counter = %d, want 7", d.ListenDrops)
	}
	// Hand-built values without All.
	h := Delta(TcpExt{SyncookiesSent: 3}, TcpExt{SyncookiesSent: 10, SyncookiesRecv: 1})
	if h.SyncookiesSent != 7 || h.SyncookiesRecv != 1 {
		t.Errorf("Delta of named fields = %+v", h)
	}
}

func TestReadNetstatSelf(t *testing.T) {
	got, err := ReadNetstat("")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.All["SyncookiesSent"]; !ok || len(got.All) < 50 {
		t.Errorf("ReadNetstat: %d counters, SyncookiesSent present %v", len(got.All), ok)
	}
}
