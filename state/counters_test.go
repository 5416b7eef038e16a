package state

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCountersRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if c, err := LoadCounters(dir); c != nil || err != nil {
		t.Fatalf("LoadCounters of an empty dir = %+v, %v; want nil, nil", c, err)
	}
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	want := &Counters{
		At:         at,
		TcpExt:     map[string]int64{"SyncookiesSent": 5000, "SyncookiesRecv": 3},
		Interfaces: map[string]IfCounters{"eth0": {RxPackets: 10, RxDropped: 1}},
		Sensor: &SensorCounts{At: at, Counted: true, Sources: map[netip.Prefix]uint64{
			netip.MustParsePrefix("198.51.100.7/32"): 900, netip.MustParsePrefix("2001:db8:5::/64"): 12,
		}},
	}
	if err := SaveCounters(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadCounters(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LoadCounters = %+v, want %+v", got, want)
	}
	fi, err := os.Lstat(CountersPath(dir))
	if err != nil || fi.Mode() != 0o600 {
		t.Errorf("counters file mode %v (%v), want 0600", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("dir holds %v, want only %s (no temporary file left)", ents, CountersName)
	}
}

func TestCountersBadDocuments(t *testing.T) {
	for name, tc := range map[string]struct {
		doc  string
		want string // "" means ignored: (nil, nil)
	}{
		"empty":          {"", "empty file"},
		"not json":       {"{", "unexpected end of JSON input"},
		"unknown field":  {`{"version":1,"at":"2026-01-01T00:00:00Z","tcpext":{},"bogus":1}`, "unknown field"},
		"no time":        {`{"version":1,"tcpext":{}}`, "no time"},
		"bad source":     {`{"version":1,"at":"2026-01-01T00:00:00Z","tcpext":{},"sensor":{"at":"2026-01-01T00:00:00Z","counted":true,"sources":{"300.1.1.1/32":1}}}`, "300.1.1.1"},
		"trailing":       {`{"version":1,"at":"2026-01-01T00:00:00Z","tcpext":{}} {}`, "invalid character"},
		"other version":  {`{"version":7,"whatever":true}`, ""},
		"future version": {`{"version":7}`, ""},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(CountersPath(dir), []byte(tc.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := LoadCounters(dir)
			if tc.want == "" {
				if c != nil || err != nil {
					t.Fatalf("= %+v, %v; want ignored", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), CountersPath(dir)) {
				t.Errorf("error %v, want one naming %s and %q", err, CountersPath(dir), tc.want)
			}
		})
	}
}

// TestCountersLinkRefused: a link planted as the counters file is neither
// read nor written through.
func TestCountersLinkRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte(`{"version":1,"at":"2026-01-01T00:00:00Z","tcpext":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, CountersPath(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCounters(dir); err == nil {
		t.Error("LoadCounters read through a symbolic link")
	}
	if err := SaveCounters(dir, &Counters{At: time.Now()}); err != nil {
		t.Fatal(err) // the rename replaces the link itself
	}
	if data, _ := os.ReadFile(target); !strings.Contains(string(data), "2026-01-01") {
		t.Errorf("the link's target was written: %s", data)
	}
	if fi, err := os.Lstat(CountersPath(dir)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("counters file after save: %v %v, want a regular file", fi, err)
	}
}

func FuzzDecodeCounters(f *testing.F) {
	f.Add([]byte(`{"version":1,"at":"2026-01-01T00:00:00Z","tcpext":{"SyncookiesSent":1},"sensor":{"at":"2026-01-01T00:00:00Z","counted":true,"sources":{"192.0.2.1/32":5}}}`))
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCounters(data)
		if err != nil || c.Version != CountersVersion {
			return
		}
		if c.At.IsZero() {
			t.Fatal("accepted a document without a time")
		}
		if c.Sensor != nil {
			for p := range c.Sensor.Sources {
				if !p.IsValid() {
					t.Fatalf("accepted invalid prefix %v", p)
				}
			}
		}
	})
}
