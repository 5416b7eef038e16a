package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/golden"
	"github.com/synban/synban/internal/metrics/metricstest"
)

// goldenStart is the fixed start time of the golden runs.
var goldenStart = time.Unix(1_700_000_000, 0)

// fullRun is a successful run with every optional part set: several flood
// kinds, bans by backend and reason (one pair twice, one reason empty, one
// with characters the format escapes), drops on two rules (one counted
// twice) with values past 2^53, CrowdSec, upstream and an XDP fast path with
// more drop entries than MaxXDPDrops, ties included.
func fullRun() Run {
	x := &XDP{Up: false, Attached: []string{"eth1", "eth0"}, Entries: MaxXDPDrops + 7}
	for i := range MaxXDPDrops + 7 {
		x.Drops = append(x.Drops, XDPDrop{Prefix: fmt.Sprintf("198.51.%d.0/24", i), Packets: uint64(i % 50 * 1000)})
	}
	return Run{
		Start: goldenStart, Elapsed: 1234567 * time.Microsecond, Backend: "nftables",
		Samples: 5, Sources: 1_234_567, Verdicts: 3, Added: 2, Expired: 1,
		Flood: FloodClass{Kind: detect.KindPrefix, Kinds: detect.FloodKinds(), HalfOpenEntries: 65_536,
			HalfOpenSources: 12, CookiesSent: 123_456_789_012, CookiesRecv: 0},
		Bans: []Ban{{"nftables", "syn-flood", 2}, {"nftables", "manual", 0}, {"nftables", "", 1},
			{"route", "syn-flood", 3}, {"nftables", "syn-flood", 1}, {"iptables", `odd "rule"\name` + "\nline", 1},
			{"nftables", "crowdsec:cscli", 40}},
		Drops: []Counter{{Chain: "input", Rule: "ban_v4", Packets: 1234, Bytes: 74040},
			{Chain: "input", Rule: "meter_v4", Packets: 9, Bytes: 540},
			{Chain: "forward", Rule: "ban_v6", Packets: 1 << 60, Bytes: 18_446_744_073_709_551_615},
			{Chain: "input", Rule: "ban_v4", Packets: 6, Bytes: 360}},
		SysctlChanges: 2,
		CrowdSec:      &CrowdSec{Up: true, Pulled: 40, Pushed: 3},
		Upstream:      &Upstream{Up: true, Announcements: map[string]int{"rtbh": 0, "flowspec": 3}, Refused: 1, Established: 2, UplinkBps: 9.5e6},
		XDP:           x,
	}
}

// goldenCases are the runs whose textfiles are checked byte for byte
// against testdata/<name>.prom. prev, when set, is written first, so the
// case's run replaces its file.
var goldenCases = []struct {
	name      string
	prev, run *Run
}{
	{name: "success-full", run: ptr(fullRun())},
	{name: "success-minimal", run: &Run{Start: goldenStart, Elapsed: 250 * time.Millisecond, Backend: "iptables"}},
	{name: "success-edge-values", run: &Run{Start: time.Unix(1_700_000_000, 999_999_999), Elapsed: -time.Second, Backend: "nftables",
		Flood:    FloodClass{Kind: "none", Kinds: []string{"none"}, CookiesSent: -1, CookiesRecv: 1 << 62},
		Upstream: &Upstream{Announcements: map[string]int{}, UplinkBps: 1e21}}},
	{name: "success-nan", run: &Run{Start: goldenStart, Backend: "nftables", Upstream: &Upstream{UplinkBps: nanValue()}}},
	{name: "success-inf", run: &Run{Start: goldenStart, Backend: "nftables", Upstream: &Upstream{UplinkBps: infValue(1)}}},
	{name: "success-neg-inf", run: &Run{Start: goldenStart, Backend: "nftables", Upstream: &Upstream{UplinkBps: infValue(-1)}}},
	{name: "failed-without-previous", run: &Run{Start: goldenStart, Elapsed: 3 * time.Second, Backend: "nftables", Err: errors.New("kernel said no")}},
	{name: "failed-after-success", prev: ptr(fullRun()),
		run: &Run{Start: goldenStart.Add(time.Minute), Elapsed: 20 * time.Millisecond, Backend: "nftables", Err: errors.New("kernel said no"),
			Bans: []Ban{{"nftables", "syn-flood", 1}}}},
}

func ptr[T any](v T) *T { return &v }

func nanValue() float64 {
	zero := 0.0
	return zero / zero
}

func infValue(sign float64) float64 {
	zero := 0.0
	return sign / zero
}

// TestGoldenTextfiles writes each golden case's textfile and compares it
// byte for byte with testdata/<name>.prom (SYNBAN_UPDATE_GOLDEN=1
// rewrites them; see internal/golden). The goldens were first written by
// client_golang's registry and expfmt, so they pin that output: families
// sorted by name, samples by label values, floats and escapes as expfmt
// writes them.
func TestGoldenTextfiles(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "synban.prom")
			if c.prev != nil {
				if err := Write(path, *c.prev); err != nil {
					t.Fatal(err)
				}
			}
			if err := Write(path, *c.run); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			checkWithExpfmt(t, got)
			want := filepath.Join("testdata", c.name+".prom")
			if golden.Update() {
				if err := os.WriteFile(want, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("read golden (run %s=1 go test ./internal/metrics/ to create it): %v", golden.Env, err)
			}
			if !bytes.Equal(got, exp) {
				t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", path, want, got, exp)
			}
		})
	}
}

// checkWithExpfmt reads text with Prometheus' parser and writes what it
// read back with expfmt, families sorted by name: the result must be text
// again, byte for byte (escapes, float formatting, label order, types).
// Families named *_total must be counters, the others gauges.
func checkWithExpfmt(t *testing.T, text []byte) {
	t.Helper()
	fams, err := metricstest.Parse(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus' parser rejects the textfile: %v\n%s", err, text)
	}
	var again bytes.Buffer
	for _, name := range slices.Sorted(maps.Keys(fams)) {
		mf := fams[name]
		want := dto.MetricType_GAUGE
		if strings.HasSuffix(name, "_total") {
			want = dto.MetricType_COUNTER
		}
		if mf.GetType() != want {
			t.Errorf("%s is a %v, want a %v", name, mf.GetType(), want)
		}
		if _, err := expfmt.MetricFamilyToText(&again, mf); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(again.Bytes(), text) {
		t.Errorf("expfmt writes what its parser read differently:\n--- expfmt\n%s\n--- ours\n%s", again.Bytes(), text)
	}
}
