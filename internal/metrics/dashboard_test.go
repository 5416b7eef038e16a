package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/synban/synban/internal/metrics/metricstest"
)

// dashboardPath is the Grafana dashboard shipped for these metrics.
const dashboardPath = "../../docs/grafana/synban.json"

// TestDashboardQueriesNameRealMetrics reads the Grafana dashboard in docs/
// and checks that every metric its queries name is in the textfile a
// successful run writes, and that it shows what an operator watches during
// an attack: bans by reason, drops, flood class, cookies, run duration and
// the last success.
func TestDashboardQueriesNameRealMetrics(t *testing.T) {
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}

	// A run that saw a flood and banned: every metric family is present.
	path := filepath.Join(t.TempDir(), "synban.prom")
	run := Run{Start: time.Now(), Elapsed: time.Second, Backend: "nftables", Samples: 1, Sources: 3,
		Verdicts: 1, Added: 1,
		Flood: FloodClass{Kind: "real", Kinds: []string{"none", "real", "prefix", "spoofed"},
			HalfOpenEntries: 300, HalfOpenSources: 1, CookiesSent: 10, CookiesRecv: 9},
		Bans:  []Ban{{Backend: "nftables", Reason: "syn-flood"}},
		Drops: []Counter{{Chain: "input", Rule: "ban_v4", Packets: 5, Bytes: 300}}}
	if err := Write(path, run); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fams, err := metricstest.Parse(f)
	if err != nil {
		t.Fatal(err)
	}

	name := regexp.MustCompile(`\bsynban_[a-z0-9_]+`)
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok {
			exprs = append(exprs, q)
		}
	}
	used := map[string]bool{}
	for _, e := range exprs {
		found := name.FindAllString(e, -1)
		if len(found) == 0 && e != "prometheus" {
			t.Errorf("query %q names no synban metric", e)
		}
		for _, m := range found {
			used[m] = true
			if _, ok := fams[m]; !ok {
				t.Errorf("query %q names %s, which the textfile does not contain", e, m)
			}
		}
	}
	for _, want := range []string{Bans, DropPackets, Flood, CookiesSent, CookiesRecv, Duration, LastSuccess, Success} {
		if !used[want] {
			t.Errorf("the dashboard shows nothing of %s", want)
		}
	}
	var unused []string
	for m := range fams {
		if !used[m] {
			unused = append(unused, m)
		}
	}
	slices.Sort(unused)
	t.Logf("%d of %d metric families on the dashboard; not shown: %v", len(used), len(fams), unused)
}
