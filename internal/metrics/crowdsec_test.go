package metrics

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/synban/synban/internal/metrics/metricstest"
)

// TestCrowdSecMetrics: the CrowdSec gauges appear only with [crowdsec], up
// is 0 after a LAPI failure, and a pulled ban's origin is its reason.
func TestCrowdSecMetrics(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		cs   *CrowdSec
		want float64
	}{{nil, -1}, {&CrowdSec{Up: true, Pulled: 3, Pushed: 2}, 1}, {&CrowdSec{Pulled: 3}, 0}} {
		path := filepath.Join(dir, "m.prom")
		r := Run{Start: time.Now(), Elapsed: time.Second, Backend: "nftables", CrowdSec: c.cs,
			Bans: []Ban{{Backend: "nftables", Reason: "crowdsec:cscli"}}}
		if err := Write(path, r); err != nil {
			t.Fatal(err)
		}
		fams := readFamilies(t, path)
		up, ok := metricstest.Value(fams, CrowdSecUp, nil)
		if c.cs == nil {
			if ok {
				t.Fatalf("%s written without [crowdsec]", CrowdSecUp)
			}
			continue
		}
		if !ok || up != c.want {
			t.Fatalf("%s = %v (present %v), want %v", CrowdSecUp, up, ok, c.want)
		}
		if v, _ := metricstest.Value(fams, CrowdSecPulled, nil); v != 3 {
			t.Fatalf("%s = %v, want 3", CrowdSecPulled, v)
		}
		if v, _ := metricstest.Value(fams, Bans, map[string]string{"reason": "crowdsec:cscli"}); v != 1 {
			t.Fatalf("%s{reason=crowdsec:cscli} = %v, want 1", Bans, v)
		}
	}
}

func readFamilies(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fams, err := metricstest.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}
