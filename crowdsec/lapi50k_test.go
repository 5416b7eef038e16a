package crowdsec_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/synban/synban/crowdsec"
)

// bans50k returns 50,000 distinct bans: 40,000 IPv4 addresses, 9,000 IPv6
// addresses and 1,000 IPv4 /24 ranges.
func bans50k() []crowdsec.Ban {
	out := make([]crowdsec.Ban, 0, 50000)
	for i := range 50000 {
		var p netip.Prefix
		switch {
		case i < 40000:
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		case i < 49000:
			p = netip.MustParsePrefix(fmt.Sprintf("2001:db8::%x/128", i))
		default:
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte((i-49000)>>8), byte(i - 49000), 0}), 24)
		}
		out = append(out, crowdsec.Ban{Prefix: p, Duration: time.Hour + time.Duration(i%600)*time.Second,
			Scenario: "synban/syn-flood", Message: "bulk", Events: 1})
	}
	return out
}

// 50,000 decisions pushed in batches, then pulled in one startup stream and
// reduced to 50,000 desired bans. Timings and the pull's allocation are
// logged (go test -v) for BENCHMARKS.md.
func TestLAPI50kPushAndPull(t *testing.T) {
	const perAlert, perPost = 1000, 5
	e := setup(t, false)
	c := e.client(t, crowdsec.Config{BatchSize: perPost, Timeout: 5 * time.Minute})
	bans := bans50k()
	// One alert per ban (as synban pushes a run's few bans) makes 50,000
	// alerts, which crowdsec 1.4.6 on sqlite stores slowly and, in big
	// POSTs, fails with "database is locked". A bulk load carries many
	// decisions per alert instead.
	var alerts []crowdsec.Alert
	for i, b := range bans {
		a, err := c.NewAlert(b)
		if err != nil {
			t.Fatal(err)
		}
		if i%perAlert == 0 {
			alerts = append(alerts, a)
		} else {
			last := &alerts[len(alerts)-1]
			last.Decisions = append(last.Decisions, a.Decisions...)
		}
	}
	start := time.Now()
	ids, err := c.PushAlerts(ctx(t), alerts)
	if err != nil {
		t.Fatal(err)
	}
	push := time.Since(start)
	if len(ids) != len(alerts) {
		t.Fatalf("pushed %d alerts, LAPI created %d", len(alerts), len(ids))
	}

	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start = time.Now()
	s, err := c.Stream(ctx(t), crowdsec.StreamOptions{Startup: true})
	if err != nil {
		t.Fatal(err)
	}
	want, st := crowdsec.Desired(s)
	pull := time.Since(start)
	runtime.ReadMemStats(&m1)
	if s.Skipped != 0 || len(want) != len(bans) || st != (crowdsec.DesiredStats{}) {
		t.Fatalf("pulled %d, skipped %d, desired %d (%+v); want 50000 desired", len(s.New), s.Skipped, len(want), st)
	}
	got := make(map[netip.Prefix]time.Duration, len(want))
	for _, w := range want {
		got[w.Prefix] = w.Remaining
	}
	for _, b := range bans {
		if r, ok := got[b.Prefix]; !ok || r > b.Duration || r < b.Duration-5*time.Minute {
			t.Fatalf("%s: remaining %s (present %v), pushed for %s", b.Prefix, r, ok, b.Duration)
		}
	}
	t.Logf("50,000 decisions: push %s (%d decisions per alert, %d alerts per POST), pull+decode+Desired %s, %.1f MB allocated by the pull",
		push.Round(time.Millisecond), perAlert, perPost, pull.Round(time.Millisecond), float64(m1.TotalAlloc-m0.TotalAlloc)/1e6)
}
