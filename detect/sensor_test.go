package detect

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/policy"
)

// sensorPolicy is the default policy with a syn_rate rule at 100 SYNs/s.
func sensorPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("sensor.toml", []byte(`
[[rule]]
name = "syn-flood"
state = "syn_recv"
threshold = 50

[[rule]]
name = "syn-rate"
state = "syn_rate"
threshold = 100
ban_for = "30m"
`))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pfx(s string) netip.Prefix {
	if !strings.Contains(s, "/") {
		a := netip.MustParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen())
	}
	return netip.MustParsePrefix(s)
}

func reading(at time.Time, counts map[string]uint64) SensorReading {
	r := SensorReading{At: at, Counted: true, Counts: map[netip.Prefix]uint64{}}
	for k, v := range counts {
		r.Counts[pfx(k)] = v
	}
	return r
}

func TestNewSensorEvidenceDeltasAndRates(t *testing.T) {
	p := sensorPolicy(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := reading(t0, map[string]uint64{"198.51.100.7": 1000, "198.51.100.8": 5000, "198.51.100.9": 10})
	start := reading(t0.Add(60*time.Second), map[string]uint64{"198.51.100.7": 7000, "198.51.100.8": 50, "2001:db8:5::": 0})
	end := reading(t0.Add(62*time.Second), map[string]uint64{
		"198.51.100.7":  7010, // 6010 since the previous run, 10 in the window
		"198.51.100.8":  450,  // went down since: nothing since; 400 in the window
		"2001:db8:5::":  400,  // the /64 key, read as an address
		"198.51.100.10": 62,   // new since the previous run
	})
	ev := NewSensorEvidence(p, start, end, prev)
	if ev.Window != 2*time.Second || ev.Since != 62*time.Second || !ev.Counted {
		t.Fatalf("spans %s, %s counted %v", ev.Window, ev.Since, ev.Counted)
	}
	want := map[netip.Prefix]SensorRow{
		pfx("198.51.100.7"):    {InWindow: 10, SinceLast: 6010, Rate: 6010.0 / 62},
		pfx("198.51.100.8"):    {InWindow: 400, SinceLast: 0, Rate: 200},
		pfx("2001:db8:5::/64"): {InWindow: 400, SinceLast: 400, Rate: 200},
		pfx("198.51.100.10"):   {InWindow: 62, SinceLast: 62, Rate: 31},
	}
	if len(ev.Rows) != len(want) {
		t.Fatalf("rows %+v, want %d", ev.Rows, len(want))
	}
	for i, r := range ev.Rows {
		w, ok := want[r.Subject]
		if !ok || r.InWindow != w.InWindow || r.SinceLast != w.SinceLast || fmt.Sprintf("%.3f", r.Rate) != fmt.Sprintf("%.3f", w.Rate) {
			t.Errorf("row %+v, want %+v", r, w)
		}
		if i > 0 && ev.Rows[i-1].Rate < r.Rate {
			t.Errorf("rows not sorted by rate: %+v", ev.Rows)
		}
	}

	// A window shorter than MinSensorSpan and no previous run: no rate.
	short := NewSensorEvidence(p, start, reading(start.At.Add(100*time.Millisecond), map[string]uint64{"198.51.100.7": 7100}), SensorReading{})
	if len(short.Rows) != 1 || short.Rows[0].Rate != 0 || short.Rows[0].InWindow != 100 || short.Since != 0 {
		t.Errorf("short window: %+v", short)
	}
	// Uncounted readings carry no rate.
	un := NewSensorEvidence(p, SensorReading{}, SensorReading{At: t0, Counts: map[netip.Prefix]uint64{pfx("198.51.100.7"): 0}}, SensorReading{})
	if un.Counted || len(un.Rows) != 1 || un.Rows[0].Rate != -1 {
		t.Errorf("uncounted: %+v", un)
	}
}

func TestSensorVerdicts(t *testing.T) {
	p := sensorPolicy(t)
	g := p.Guard([]Protected{{Prefix: pfx("203.0.113.5"), Why: "host address"}})
	ev := SensorEvidence{Available: true, Counted: true, Window: 3 * time.Second, Rows: []SensorRow{
		{Subject: pfx("198.51.100.7"), Rate: 500, InWindow: 1500},
		{Subject: pfx("203.0.113.5"), Rate: 300},
		{Subject: pfx("2001:db8:5::/64"), Rate: 150},
		{Subject: pfx("192.0.2.1"), Rate: 60}, // with .2: 110 together, a prefix
		{Subject: pfx("192.0.2.2"), Rate: 50},
		{Subject: pfx("192.0.2.77"), Rate: 0},
		{Subject: pfx("198.18.0.1"), Rate: 99}, // alone in its /24, below the threshold
	}}
	vs, spared := SensorVerdicts(p, ev, g)
	got := map[string]Verdict{}
	for _, v := range vs {
		got[v.Subject.String()] = v
	}
	if len(got) != 3 {
		t.Fatalf("verdicts %+v, want 198.51.100.7, 2001:db8:5::/64 and 192.0.2.0/24", vs)
	}
	v := got["198.51.100.7/32"]
	if v.State != policy.StateSynRate || v.Rule != "syn-rate" || v.Count != 500 || v.Threshold != 100 || v.BanFor != 30*time.Minute ||
		!strings.Contains(v.Reason, "500 SYNs/s over the SYN meter") || !strings.Contains(v.Reason, "1500 in the 3s window") {
		t.Errorf("verdict %+v", v)
	}
	if v := got["192.0.2.0/24"]; v.Sources != 2 || v.Count != 110 {
		t.Errorf("prefix verdict %+v, want 2 sources at 110/s", v)
	}
	if _, ok := got["2001:db8:5::/64"]; !ok {
		t.Errorf("the IPv6 /64 key is not judged on its own: %+v", vs)
	}
	if len(spared) != 1 || spared[0].Verdict.Subject != pfx("203.0.113.5") || !strings.Contains(spared[0].Why, "host address") {
		t.Errorf("spared %+v, want the host address", spared)
	}
	if vs[0].Subject != pfx("198.51.100.7") {
		t.Errorf("worst first: %+v", vs)
	}

	// Prefix aggregation off: the /24 is not judged.
	p.Prefix.Enabled = false
	if vs, _ := SensorVerdicts(p, ev, g); len(vs) != 2 {
		t.Errorf("without prefix aggregation: %+v", vs)
	}
	// Uncounted evidence, or none: no verdict.
	ev.Counted = false
	if vs, sp := SensorVerdicts(p, ev, g); len(vs)+len(sp) != 0 {
		t.Errorf("uncounted evidence gave %+v %+v", vs, sp)
	}
}

func TestClassifyEvidence(t *testing.T) {
	p := sensorPolicy(t)
	storm := TcpExt{SyncookiesSent: 50000, SyncookiesRecv: 3}
	attacker := Verdict{Subject: pfx("198.51.100.7"), Rule: "syn-rate", State: policy.StateSynRate, Count: 900, Threshold: 100,
		Reason: "syn-rate: 198.51.100.7 sent 900 SYNs/s over the SYN meter"}
	sensed := SensorEvidence{Available: true, Counted: true, Table: "inet synban hot_v4, hot_v6",
		Rows: []SensorRow{{Subject: pfx("198.51.100.7"), Rate: 900}}}
	quietSensor := SensorEvidence{Available: true, Counted: true, Table: "inet synban hot_v4, hot_v6"}
	for _, tc := range []struct {
		name    string
		samples []Sample
		ev      Evidence
		kind    string
		why     []string
		advice  string
	}{
		{name: "cookies attributed by the sensor: one real source",
			ev:   Evidence{Window: storm, Sensor: sensed, Verdicts: []Verdict{attacker}},
			kind: KindReal, why: []string{"50000 SYN cookies sent, 3 returned", "198.51.100.7 sent 900 SYNs/s"}},
		{name: "cookies, the sensor sees every source under the meter: spoofed",
			ev:   Evidence{Window: storm, Sensor: quietSensor},
			kind: KindSpoofed, why: []string{"below 10%", "no source over the SYN meter (20/s)"}},
		{name: "cookies and no sensor: a cookie storm without attribution",
			ev:   Evidence{Window: storm},
			kind: KindCookieStorm, why: []string{"nothing attributes them"}, advice: "conntrack"},
		{name: "a storm between runs, none in the window: from the stored counters",
			ev:   Evidence{Window: TcpExt{}, SinceLast: &storm, SinceFor: time.Minute},
			kind: KindCookieStorm, why: []string{"50000 SYN cookies sent in 1m0s (833/s)"}, advice: "nftables or iptables backend"},
		{name: "a first run during a storm: the window's counters, the meter not yet in place",
			ev:   Evidence{Window: storm, WindowFor: 2 * time.Second, Sensor: SensorEvidence{Absent: true}},
			kind: KindCookieStorm, why: []string{"50000 SYN cookies sent in 2s (25000/s), 3 returned", "not in the firewall yet"},
			advice: `50000 SYN cookies sent in 2s (25000/s), 3 returned: this run installs the per-source SYN meter (20 SYNs/s, burst 40) and its sensor; the next run names the sources over it, and rule "syn-rate" bans any sending 100 SYNs/s over the meter`},
		{name: "a storm in the window that answered cookies since the previous run dilute: the window's",
			ev: Evidence{Window: TcpExt{SyncookiesSent: 3000}, WindowFor: time.Second,
				SinceLast: &TcpExt{SyncookiesSent: 9000, SyncookiesRecv: 6000}, SinceFor: time.Minute},
			kind: KindCookieStorm, why: []string{"3000 SYN cookies sent in 1s (3000/s), 0 returned"}},
		{name: "stored counters too old are not used",
			ev:   Evidence{Window: TcpExt{}, SinceLast: &storm, SinceFor: MaxCountersAge + time.Second},
			kind: KindNone},
		{name: "spread of half-open sources stays spoofed, the sensor's real source noted",
			samples: []Sample{{Conns: spread(300)}},
			ev:      Evidence{Window: storm, Sensor: sensed, Verdicts: []Verdict{attacker}},
			kind:    KindSpoofed, why: []string{"300 sources"}},
		{name: "no flood in the samples, the sensor names a source (meter drops early)",
			ev:   Evidence{Sensor: sensed, Verdicts: []Verdict{attacker}},
			kind: KindReal, why: []string{"the firewall's sensor", "900 SYNs/s"}},
		{name: "a prefix verdict the samples missed",
			ev: Evidence{Verdicts: []Verdict{{Subject: pfx("192.0.2.0/24"), State: policy.StateSynRecv, Count: 300, Threshold: 200,
				Reason: "192.0.2.0/24: 300 half-open from 150 sources"}}},
			kind: KindPrefix, why: []string{"192.0.2.0/24"}},
		{name: "returned cookies, the sensor names the source",
			ev:   Evidence{Window: TcpExt{SyncookiesSent: 1000, SyncookiesRecv: 900}, Sensor: sensed, Verdicts: []Verdict{attacker}},
			kind: KindReal, why: []string{"the firewall's sensor"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ClassifyEvidence(p, tc.samples, tc.ev)
			if c.Kind != tc.kind {
				t.Fatalf("kind %s (%s), want %s; evidence %q", c.Kind, c.Why, tc.kind, c.Evidence)
			}
			for _, w := range tc.why {
				if !strings.Contains(c.Why, w) {
					t.Errorf("why %q lacks %q", c.Why, w)
				}
			}
			if tc.advice != "" && !strings.Contains(strings.Join(c.Advice, "\n"), tc.advice) {
				t.Errorf("advice %q lacks %q", c.Advice, tc.advice)
			}
			wantFrom, wantSince := CountersWindow, tc.ev.WindowFor
			if tc.ev.SinceLast != nil && tc.ev.SinceFor <= MaxCountersAge && tc.ev.Window.SyncookiesSent == 0 {
				wantFrom, wantSince = CountersPreviousRun, tc.ev.SinceFor
			}
			if c.CountersFrom != wantFrom || c.CountersSince != wantSince {
				t.Errorf("counters from %q over %s, want %q over %s", c.CountersFrom, c.CountersSince, wantFrom, wantSince)
			}
			if tc.ev.SinceLast != nil && c.Kind != KindNone && !strings.Contains(strings.Join(c.Evidence, "\n"), "since the previous run") {
				t.Errorf("evidence %q lacks the counters since the previous run", c.Evidence)
			}
			if tc.ev.Sensor.Available && len(c.Evidence) == 0 {
				t.Errorf("no evidence listed for the sensor")
			}
			if c.Kind == KindReal && len(c.Sysctls) > 0 {
				t.Errorf("a real flood recommends sysctls %+v (the spoofed advice was left over)", c.Sysctls)
			}
		})
	}
}

// TestSynRateRuleCountsNoConnection checks that a syn_rate rule takes no
// part in counting connections: neither Analyze nor Classify treats it as
// "any".
func TestSynRateRuleCountsNoConnection(t *testing.T) {
	p := sensorPolicy(t)
	p.Rules = p.Rules[1:] // only the syn_rate rule, threshold 100
	var conns []Conn
	for i := 0; i < 500; i++ {
		conns = append(conns, Conn{Local: netip.MustParseAddrPort("203.0.113.1:80"),
			Remote: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), uint16(1000+i)), State: Established})
	}
	samples := []Sample{{Conns: conns}}
	if rep := Analyze(p, samples, nil); len(rep.Verdicts) != 0 {
		t.Errorf("Analyze judged connections by a syn_rate rule: %+v", rep.Verdicts)
	}
	if c := Classify(p, samples, TcpExt{}); c.Kind != KindNone {
		t.Errorf("Classify = %s (%s), want none", c.Kind, c.Why)
	}
	if s := StatesFor(p); s != nil {
		t.Errorf("StatesFor = %v, want nil", s)
	}
}
