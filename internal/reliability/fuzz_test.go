package reliability

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/state"
)

// Fuzz targets for the parsers whose packages have none of their own
// (detect.ParseProcNet, policy.Parse and rules.CommentSafe are fuzzed in
// their packages). .ci/fuzz runs every Fuzz function for a fixed time.

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

// FuzzStateLoad checks that a state document of any content either loads
// or gives an error naming the file, never panics, and that what loads
// saves and loads back the same.
func FuzzStateLoad(f *testing.F) {
	f.Add([]byte(`{"version":1,"bans":[{"prefix":"192.0.2.7/32","since":"2025-01-01T00:00:00Z","until":"2025-01-01T01:00:00Z","reason":"r","backend":"nftables"}],"history":[]}`))
	f.Add([]byte(`{"version":1,"bans":null,"history":[{"prefix":"2001:db8::/64","bans":3,"last_ban":"2025-01-01T00:00:00Z","last_for_ns":600000000000}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"bans":[{"prefix":"::ffff:10.0.0.1/128"}]}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, state.FileName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := state.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.Load()
		if err != nil {
			if !strings.Contains(err.Error(), state.FileName) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := s.Update(func(*state.State) error { return nil }); err != nil {
			t.Fatalf("a state that loads does not save: %v", err)
		}
		back, err := s.Load()
		if err != nil {
			t.Fatalf("saved state does not load: %v", err)
		}
		a, _ := json.Marshal(st.Active(time.Time{}))
		b, _ := json.Marshal(back.Active(time.Time{}))
		if len(st.Bans) != len(back.Bans) || len(st.History) != len(back.History) || !bytes.Equal(a, b) {
			t.Fatalf("state changed across a save: %s vs %s", a, b)
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
