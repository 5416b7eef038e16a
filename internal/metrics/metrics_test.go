package metrics

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/metrics/metricstest"
)

func readBack(t *testing.T, path string) map[string]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fams, err := metricstest.Parse(f)
	if err != nil {
		t.Fatalf("Prometheus' parser rejects %s: %v", path, err)
	}
	out := map[string]float64{}
	for name, mf := range fams {
		for _, m := range mf.GetMetric() {
			key := name
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			lm := map[string]string{}
			for _, lp := range m.GetLabel() {
				lm[lp.GetName()] = lp.GetValue()
			}
			v, ok := metricstest.Value(fams, name, lm)
			if !ok {
				t.Fatalf("Value(%s, %v) found nothing", name, lm)
			}
			out[key] = v
		}
	}
	return out
}

func TestWriteSuccessThenFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "synban.prom")
	start := time.Unix(1_700_000_000, 0)
	run := Run{
		Start: start, Elapsed: 1500 * time.Millisecond, Backend: "nftables",
		Samples: 3, Sources: 42, Verdicts: 2, Added: 2, Expired: 1,
		Flood: FloodClass{Kind: detect.KindReal, Kinds: detect.FloodKinds(), HalfOpenEntries: 180, HalfOpenSources: 2, CookiesSent: 7, CookiesRecv: 5},
		Bans:  []Ban{{"nftables", "syn-flood", 2}, {"nftables", "manual", 0}, {"nftables", "", 1}},
		Drops: []Counter{{Chain: "input", Rule: "ban_v4", Packets: 1234, Bytes: 74040},
			{Chain: "input", Rule: "meter_v4", Packets: 9, Bytes: 540}},
		SysctlChanges: 1,
	}
	if err := Write(path, run); err != nil {
		t.Fatal(err)
	}
	got := readBack(t, path)
	want := map[string]float64{
		Success: 1, Duration: 1.5, LastRun: 1_700_000_001.5, LastSuccess: 1_700_000_001.5,
		Samples: 3, Sources: 42, Verdicts: 2, BansAdded: 2, BansExpired: 1, HalfOpen: 180, HalfOpenSrc: 2,
		CookiesSent: 7, CookiesRecv: 5, SysctlSet: 1,
		Flood + "{kind=real}": 1, Flood + "{kind=none}": 0, Flood + "{kind=spoofed}": 0,
		Bans + "{backend=nftables,reason=syn-flood}":                 2,
		Bans + "{backend=nftables,reason=manual}":                    1,
		Bans + "{backend=nftables,reason=restored}":                  1,
		DropPackets + "{backend=nftables,chain=input,rule=ban_v4}":   1234,
		DropBytes + "{backend=nftables,chain=input,rule=ban_v4}":     74040,
		DropPackets + "{backend=nftables,chain=input,rule=meter_v4}": 9,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm()&0o044 != 0o044 {
		t.Errorf("metrics file mode %v: node_exporter (another user) cannot read it", info.Mode())
	}

	// A failed run keeps the last success time and drops the per-run values.
	fail := Run{Start: start.Add(time.Minute), Elapsed: time.Second, Err: errors.New("kernel said no")}
	if err := Write(path, fail); err != nil {
		t.Fatal(err)
	}
	got = readBack(t, path)
	if got[Success] != 0 || got[LastRun] != 1_700_000_061 || got[LastSuccess] != 1_700_000_001.5 {
		t.Errorf("after a failure: success %v, last run %v, last success %v", got[Success], got[LastRun], got[LastSuccess])
	}
	if _, ok := got[Sources]; ok {
		t.Errorf("a failed run still reports %s", Sources)
	}
	// No temporary file is left behind next to it.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want only the metrics file", len(entries))
	}
}

func TestFailureWithoutPreviousFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "synban.prom")
	if err := Write(path, Run{Start: time.Unix(1_700_000_000, 0), Err: errors.New("x")}); err != nil {
		t.Fatal(err)
	}
	got := readBack(t, path)
	if _, ok := got[LastSuccess]; ok || got[Success] != 0 {
		t.Errorf("no success ever, yet: %v", got)
	}
}

func TestWriteIntoMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "synban.prom")
	if err := Write(path, Run{Start: time.Now()}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Write into a missing directory: %v, want an error naming %s", err, path)
	}
}

// TestPlantedFileDoesNotHang plants a FIFO, then a symbolic link, where the
// metrics file goes: reading the previous success time must neither block on
// the FIFO nor read through the link, and the write replaces the planted
// entry with a regular file, leaving the link's target untouched.
func TestPlantedFileDoesNotHang(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "synban.prom")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Write(path, Run{Start: time.Now(), Err: errors.New("x")}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Write blocked on a FIFO planted as the metrics file")
	}
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("metrics file after Write: %v %v, want a regular file", fi, err)
	}

	target := filepath.Join(dir, "target.prom")
	old := "synban_last_success_timestamp_seconds 1.7e+09\n"
	if err := os.WriteFile(target, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, Run{Start: time.Now(), Err: errors.New("x")}); err != nil {
		t.Fatal(err)
	}
	if _, ok := readBack(t, path)[LastSuccess]; ok {
		t.Error("the last success time was read through a planted symbolic link")
	}
	if data, err := os.ReadFile(target); err != nil || string(data) != old {
		t.Errorf("the link's target changed: %q, %v", data, err)
	}
}
