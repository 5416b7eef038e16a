package metrics

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/synban/synban/internal/metrics/metricstest"
)

// TestXDPMetrics: the XDP gauges appear only with [xdp]: up, the
// interfaces the program is on, the entries, and a drop counter per entry
// for the MaxXDPDrops busiest only.
func TestXDPMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.prom")
	if err := Write(path, Run{Start: time.Now(), Elapsed: time.Second, Backend: "nftables"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := metricstest.Value(readFamilies(t, path), XDPUp, nil); ok {
		t.Fatalf("%s written without [xdp]", XDPUp)
	}
	x := &XDP{Up: true, Attached: []string{"eth0"}, Entries: MaxXDPDrops + 5}
	for i := range MaxXDPDrops + 5 {
		x.Drops = append(x.Drops, XDPDrop{Prefix: fmt.Sprintf("10.0.%d.0/24", i), Packets: uint64(i)})
	}
	if err := Write(path, Run{Start: time.Now(), Elapsed: time.Second, Backend: "nftables", XDP: x}); err != nil {
		t.Fatal(err)
	}
	fams := readFamilies(t, path)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{XDPUp, nil, 1},
		{XDPAttached, map[string]string{"interface": "eth0"}, 1},
		{XDPEntries, nil, MaxXDPDrops + 5},
		{XDPDropped, map[string]string{"prefix": "10.0.104.0/24"}, 104},
		{XDPDropped, map[string]string{"prefix": "10.0.5.0/24"}, 5},
	} {
		if v, ok := metricstest.Value(fams, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if n := len(fams[XDPDropped].GetMetric()); n != MaxXDPDrops {
		t.Errorf("%d drop samples, want the %d busiest", n, MaxXDPDrops)
	}
	if _, ok := metricstest.Value(fams, XDPDropped, map[string]string{"prefix": "10.0.4.0/24"}); ok {
		t.Error("the 5 quietest entries have samples")
	}
}
