package detect

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readNetstatFile parses a captured /proc/net/netstat under testdata/netstat.
func readNetstatFile(t *testing.T, name string) TcpExt {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "netstat", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := ParseNetstat(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

// TestNetstatWindowPairs: /proc/net/netstat read in a victim namespace at a
// window's start and end, one second apart, while one source sent about
// 1,500 SYNs a second to a listener: with tcp_syncookies=2 (every SYN gets
// a cookie) and with tcp_syncookies=1 behind a 16-entry SYN queue (cookies
// once it is full). The window's delta is the storm; a first run (no
// stored counters, the meter's sensor not in place yet) classifies it as a
// cookie storm naming those numbers.
func TestNetstatWindowPairs(t *testing.T) {
	p := sensorPolicy(t)
	for _, tc := range []struct {
		pair            string
		sent, doCookies int64
	}{
		{"window-cookies2", 12764 - 11201, 12764 - 11201},
		{"window-cookies1", 16382 - 15279, 16382 - 15279},
	} {
		t.Run(tc.pair, func(t *testing.T) {
			start := readNetstatFile(t, tc.pair+"-start-6.18.txt")
			end := readNetstatFile(t, tc.pair+"-end-6.18.txt")
			d := Delta(start, end)
			if d.SyncookiesSent != tc.sent || d.TCPReqQFullDoCookies != tc.doCookies || d.SyncookiesRecv != 0 ||
				d.TCPReqQFullDrop != 0 || d.ListenOverflows != 0 {
				t.Fatalf("delta %+v, want %d cookies sent (%d through a full queue), none returned", d, tc.sent, tc.doCookies)
			}
			if !Stormy(d) {
				t.Errorf("Stormy(%+v) = false", d)
			}
			c := ClassifyEvidence(p, nil, Evidence{Window: d, WindowFor: time.Second, Sensor: SensorEvidence{Absent: true}})
			if c.Kind != KindCookieStorm || c.CookiesSent != tc.sent || c.CountersFrom != CountersWindow || c.CountersSince != time.Second {
				t.Fatalf("first run: %+v, want a cookie storm of %d cookies over the 1 s window", c, tc.sent)
			}
			if adv := strings.Join(c.Advice, "\n"); !strings.Contains(adv, "this run installs the per-source SYN meter") ||
				!strings.Contains(c.Why, " in 1s (") {
				t.Errorf("why %q, advice %q: want the numbers and the meter this run installs", c.Why, c.Advice)
			}
			// The same counters read as since a previous run a minute back:
			// chosen (they hold the window), the storm still shown.
			c = ClassifyEvidence(p, nil, Evidence{Window: d, WindowFor: time.Second, SinceLast: &d, SinceFor: time.Minute})
			if c.CountersFrom != CountersPreviousRun || c.CookiesSent != tc.sent {
				t.Errorf("with stored counters: %+v", c)
			}
		})
	}
	idle := readNetstatFile(t, "idle-6.18.txt")
	if d := Delta(idle, idle); Stormy(d) {
		t.Errorf("an idle pair is stormy: %+v", d)
	}
}

// TestStretchCounters: a window shorter than the span is read again at
// the span's end; a long enough one, or one without counters, is left.
func TestStretchCounters(t *testing.T) {
	reads := 0
	counters := func() (TcpExt, error) {
		reads++
		return TcpExt{SyncookiesSent: int64(100 * reads), All: map[string]int64{"SyncookiesSent": int64(100 * reads)}}, nil
	}
	calls := 0
	res, err := Window(context.Background(), []Sampler{fakeSampler{name: "fake", reads: []Sample{{}}, calls: &calls}}, 1, 0, counters)
	if err != nil {
		t.Fatal(err)
	}
	if res.Delta.SyncookiesSent != 100 || res.Elapsed >= 50*time.Millisecond {
		t.Fatalf("window %+v", res)
	}
	if err := StretchCounters(context.Background(), &res, 50*time.Millisecond, counters); err != nil {
		t.Fatal(err)
	}
	if reads != 3 || res.Delta.SyncookiesSent != 200 || res.End.SyncookiesSent != 300 || res.Elapsed < 50*time.Millisecond ||
		res.Samples[0].Counters != res.End {
		t.Errorf("stretched: reads %d, %+v", reads, res)
	}
	if err := StretchCounters(context.Background(), &res, 50*time.Millisecond, counters); err != nil || reads != 3 {
		t.Errorf("a long enough window was read again (%d reads, %v)", reads, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	short := WindowResult{Start: &TcpExt{}, Began: time.Now()}
	if err := StretchCounters(ctx, &short, time.Hour, counters); err == nil {
		t.Errorf("a cancelled stretch returned no error")
	}
}
