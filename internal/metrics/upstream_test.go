package metrics

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/synban/synban/internal/metrics/metricstest"
)

// TestUpstreamMetrics: the upstream gauges appear only with [upstream],
// written as a textfile Prometheus' own parser reads back: up, the
// announcements by kind (0 included), refusals, established sessions and
// the uplink's rate.
func TestUpstreamMetrics(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.prom")
	if err := Write(path, Run{Start: time.Now(), Elapsed: time.Second, Backend: "nftables"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := metricstest.Value(readFamilies(t, path), UpstreamUp, nil); ok {
		t.Fatalf("%s written without [upstream]", UpstreamUp)
	}
	up := &Upstream{Up: false, Announcements: map[string]int{"flowspec": 3, "rtbh": 0}, Refused: 2, Established: 1, UplinkBps: 9.5e6}
	if err := Write(path, Run{Start: time.Now(), Elapsed: time.Second, Backend: "nftables", Upstream: up}); err != nil {
		t.Fatal(err)
	}
	fams := readFamilies(t, path)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{UpstreamUp, nil, 0},
		{UpstreamAnnouncements, map[string]string{"kind": "flowspec"}, 3},
		{UpstreamAnnouncements, map[string]string{"kind": "rtbh"}, 0},
		{UpstreamRefused, nil, 2},
		{UpstreamEstablished, nil, 1},
		{UpstreamUplinkBps, nil, 9.5e6},
	} {
		if v, ok := metricstest.Value(fams, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
}
