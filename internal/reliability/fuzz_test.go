package reliability

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/policy"
)

// Fuzz targets for the parsers whose packages have none of their own
// (detect.ParseProcNet, policy.Parse, rules.CommentSafe and the state
// store's decoders, state.FuzzStateLoad, are fuzzed in their packages).
// .ci/fuzz runs every Fuzz function for a fixed number of executions.

// FuzzParseNetstat checks that detect.ParseNetstat never panics on any
// input and that what it accepts keeps TcpExt's counters.
func FuzzParseNetstat(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "netstat", "cookies-6.18.txt")); err == nil {
		f.Add(data)
	}
	f.Add([]byte("TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 1 2\n"))
	f.Add([]byte("TcpExt: SyncookiesSent\nTcpExt: 18446744073709551616\n"))
	f.Add([]byte("IpExt: A\nIpExt: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := detect.ParseNetstat(bytes.NewReader(data))
		if err != nil {
			return
		}
		again, err := detect.ParseNetstat(bytes.NewReader(data))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("second parse of accepted input differs: %v, %+v vs %+v", err, again, got)
		}
	})
}

// FuzzParseAllow checks policy.ParseAllow: no panic, and an accepted entry
// is a masked prefix that parses back to itself.
func FuzzParseAllow(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "2001:db8::/32", "::ffff:10.0.0.0/104", "10.0.0.1/8", "fe80::1%eth0", "", "0.0.0.0/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := policy.ParseAllow(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p.Masked() != p {
			t.Fatalf("ParseAllow(%q) = %v, not a valid masked prefix", s, p)
		}
		if q, err := policy.ParseAllow(p.String()); err != nil || q != p {
			t.Fatalf("ParseAllow(%q) = %v, which parses back as %v, %v", s, p, q, err)
		}
	})
}
