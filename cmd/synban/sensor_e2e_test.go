package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
	"github.com/synban/synban/internal/netnstest"
)

// sensorPolicy is the policy of the sensor tests: the half-open rule, a
// syn_rate rule at 50 SYNs/s over the meter (20/s, burst 40), no prefix
// aggregation. extra is appended (a [sample] or [nftables] section).
func sensorPolicy(extra string) string {
	return `
[[rule]]
name = "syn-flood"
state = "syn_recv"
threshold = 50

[[rule]]
name = "syn-rate"
state = "syn_rate"
threshold = 50

[prefix]
enabled = false
` + extra
}

// sensorRunJSON is what the sensor tests read of `run --json`.
type sensorRunJSON struct {
	Verdicts       []jsondoc.Verdict `json:"verdicts"`
	Classification struct {
		Kind          string   `json:"kind"`
		Why           string   `json:"why"`
		CookiesSent   int64    `json:"cookies_sent"`
		Evidence      []string `json:"evidence"`
		CountersSince float64  `json:"counters_since_seconds"`
		SensorSources int      `json:"sensor_sources"`
		Advice        []string `json:"advice"`
	} `json:"classification"`
}

// runJSON runs `synban run --json` in the victim with backend and decodes it.
func (l *lab) runSensor(backend string) sensorRunJSON {
	l.t.Helper()
	out, err := l.synban("run", "--json", "--backend", backend)
	if err != nil {
		l.t.Fatalf("synban run: %v\n%s", err, out)
	}
	var r sensorRunJSON
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); err != nil {
		l.t.Fatalf("run --json: %v\n%s", err, out)
	}
	return r
}

// sensorSources lists the IPv4 sources in the sensor's table, read
// without synban: with nft for nftables (the set hot_v4), from the kernel's
// hashlimit table for iptables (synhot4-*).
func (l *lab) sensorSources(backend string) []string {
	l.t.Helper()
	if backend == "iptables" {
		out := l.victim.MustRun("sh", "-c", "cat /proc/net/ipt_hashlimit/synhot4-*")
		var srcs []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) == 5 {
				srcs = append(srcs, f[1][:strings.LastIndex(f[1][:strings.Index(f[1], "->")], ":")])
			}
		}
		return srcs
	}
	out := l.victim.MustRun("nft", "-j", "list", "set", "inet", "synban", "hot_v4")
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		l.t.Fatalf("nft -j list set hot_v4: %v\n%s", err, out)
	}
	var srcs []string
	for _, obj := range doc.Nftables {
		raw, ok := obj["set"]
		if !ok {
			continue
		}
		var s struct {
			Elem []struct {
				Elem struct {
					Val string `json:"val"`
				} `json:"elem"`
			} `json:"elem"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			l.t.Fatalf("hot_v4 elements: %v\n%s", err, raw)
		}
		for _, e := range s.Elem {
			srcs = append(srcs, e.Elem.Val)
		}
	}
	return srcs
}

// sensorBackends are the backends with a sensor.
var sensorBackends = []string{"nftables", "iptables"}

// hpingBackground starts a bounded hping3 SYN flood (count SYNs, one every
// gap microseconds, to victimAddr:80) from the attacker and returns a wait
// function that reports how many it sent.
func (l *lab) hpingBackground(count, gapMicros int) func() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cmd := l.attacker.Command(ctx, "hping3", "-q", "-S", "-p", "80", "-i", "u"+strconv.Itoa(gapMicros), "-c", strconv.Itoa(count), victimAddr)
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		cancel()
		l.t.Fatalf("start hping3: %v", err)
	}
	return func() string {
		_ = cmd.Wait() // exits 1 when nothing answered: judged by its output
		cancel()
		return buf.String()
	}
}

// TestSensorCookiesAlwaysRealSource: with tcp_syncookies=2 and no conntrack
// rule the socket table has no half-open entry, yet one real source
// flooding during the run is banned through the sensor, classified as a
// real flood, and a legitimate client still connects.
func TestSensorCookiesAlwaysRealSource(t *testing.T) {
	requireFloodTools(t)
	for _, backend := range sensorBackends {
		t.Run(backend, func(t *testing.T) {
			l := newLabWith(t, sensorPolicy(`
[sample]
count = 3
interval = "1s"
`), map[string]string{"net.ipv4.tcp_syncookies": "2"})
			if r := l.runSensor(backend); len(r.Verdicts) != 0 { // the first run builds the rules: the sensor
				t.Fatalf("quiet first run: %+v", r)
			}
			wait := l.hpingBackground(5000, 1000) // about 5 s at up to 1000 SYNs/s
			netnstest.Eventually(t, 5*time.Second, func() bool { return len(l.sensorSources(backend)) > 0 },
				"the flood never went over the meter")
			r := l.runSensor(backend)
			sent := wait()
			if !strings.Contains(sent, "5000 packets transmitted") {
				t.Fatalf("hping3 did not send its 5000 SYNs: %s", sent)
			}
			if n := l.halfOpen(attackerAddr); n != 0 {
				t.Errorf("the socket table holds %d half-open entries of the attacker with tcp_syncookies=2, want 0", n)
			}
			if r.Classification.Kind != "real" || !strings.Contains(r.Classification.Why, "sensor") {
				t.Errorf("classification %+v, want real, through the sensor", r.Classification)
			}
			st := l.status(backend)
			if !st.banned(attackerAddr+"/32") || len(st.Bans) != 1 {
				t.Fatalf("bans %+v, want exactly the attacker %s", st.Bans, attackerAddr)
			}
			if !strings.Contains(st.Bans[0].Reason, "syn-rate") {
				t.Errorf("ban reason %q, want the syn-rate rule", st.Bans[0].Reason)
			}
			if err := l.dialFrom(l.client, victimAddrC+":80"); err != nil {
				t.Fatalf("legitimate client could not connect: %v", err)
			}
			t.Logf("classification: %s; evidence %q", r.Classification.Why, r.Classification.Evidence)
		})
	}
}

// TestSensorMeterDropsEarlyTwoRuns: the meter drops the source's SYNs
// (nftables: in prerouting) and the attacker's kernel answers the
// SYN-ACKs of what passes with RSTs, so no half-open entry stays: the
// socket table never shows the flood. The flood comes between two runs;
// the second run, with a one-sample window (a fraction of a second), bans
// the source from the sensor's count since the first. plan and sample show
// the sensor's table in between and write nothing.
func TestSensorMeterDropsEarlyTwoRuns(t *testing.T) {
	requireFloodTools(t)
	for _, backend := range sensorBackends {
		t.Run(backend, func(t *testing.T) {
			extra := ""
			if backend == "nftables" {
				extra = "\n[nftables]\nhooks = [\"prerouting\", \"input\"]\n"
			}
			l := newLab(t, sensorPolicy(extra))
			l.attacker.MustRun("nft", "delete", "table", "inet", "att") // RSTs back: no half-open entry survives
			if r := l.runSensor(backend); len(r.Verdicts) != 0 {
				t.Fatalf("quiet first run: %+v", r)
			}
			if backend == "nftables" {
				if out := l.victim.MustRun("nft", "list", "chain", "inet", "synban", "prerouting"); !strings.Contains(out, "update @hot_v4 { ip saddr counter }") {
					t.Fatalf("the sensor is not in the prerouting chain:\n%s", out)
				}
			}
			l.flood(2000)
			netnstest.Eventually(t, 5*time.Second, func() bool { return l.halfOpen(attackerAddr) == 0 },
				"half-open entries of the attacker stay")
			if hot := l.sensorSources(backend); len(hot) != 1 || hot[0] != attackerAddr {
				t.Fatalf("sensor holds %v, want the attacker %s", hot, attackerAddr)
			}

			stored := l.victim.MustRun("cat", filepath.Join(l.stateDir, "counters.json"))
			plan, err := l.synban("plan", "--backend", backend)
			if err != nil {
				t.Fatalf("plan: %v\n%s", err, plan)
			}
			if !regexp.MustCompile(`(?m)^# sensor .+: 1 source\(s\) over the SYN meter`).MatchString(plan) ||
				!regexp.MustCompile(`(?m)^#\s+`+regexp.QuoteMeta(attackerAddr)+`/32\s+\d+`).MatchString(plan) ||
				!strings.Contains(plan, "#   ban "+attackerAddr+"/32") {
				t.Errorf("plan lacks the sensor table or the ban:\n%s", plan)
			}
			sample, err := l.synban("sample", "--backend", backend)
			if err != nil {
				t.Fatalf("sample: %v\n%s", err, sample)
			}
			if !strings.Contains(sample, "SENSOR SOURCE") || !strings.Contains(sample, attackerAddr+"/32") {
				t.Errorf("sample lacks the sensor table:\n%s", sample)
			}
			// explain names the sensor's count for the attacker: the only
			// evidence against it (no half-open entry exists).
			explain, err := l.synban("explain", "--backend", backend, attackerAddr)
			if err != nil {
				t.Fatalf("explain: %v\n%s", err, explain)
			}
			if !regexp.MustCompile(`(?m)^sensor: ` + regexp.QuoteMeta(attackerAddr) + `/32 over the SYN meter: \d+ SYNs in the window, [1-9]\d* since the previous run`).MatchString(explain) {
				t.Errorf("explain lacks the sensor's count for the attacker:\n%s", explain)
			}
			if now := l.victim.MustRun("cat", filepath.Join(l.stateDir, "counters.json")); now != stored {
				t.Errorf("plan, sample or explain rewrote the stored counters")
			}

			r := l.runSensor(backend)
			st := l.status(backend)
			if !st.banned(attackerAddr+"/32") || len(st.Bans) != 1 {
				t.Fatalf("bans after the second run %+v (classification %+v), want exactly the attacker", st.Bans, r.Classification)
			}
			if r.Classification.Kind != "real" || r.Classification.CountersSince <= 0 {
				t.Errorf("classification %+v, want real with counters since the previous run", r.Classification)
			}
			// The ban drops before the meter: the SYNs now count there.
			before := st.packets("ban_v4")
			l.flood(100)
			if got := l.status(backend).packets("ban_v4"); got < before+100 {
				t.Errorf("ban_v4 dropped %d more, want the 100 SYNs", got-before)
			}
		})
	}
}

// sensorSpoofLab is a lab whose victim routes the forged test prefix back
// into the attacker (which drops it there), with cookies as given and, with
// conntrack, a rule that makes conntrack follow the flows.
func sensorSpoofLab(t *testing.T, policyText, cookies string, conntrack bool) *lab {
	l := newLabWith(t, policyText, map[string]string{"net.core.somaxconn": "64", "net.ipv4.tcp_syncookies": cookies})
	l.victim.MustRun("ip", "route", "add", spoofPrefix.String(), "via", attackerAddr)
	if conntrack {
		l.victim.MustRun("nft", "add table inet conn; add chain inet conn pre { type filter hook prerouting priority 0; }; add rule inet conn pre ct state new counter")
	}
	l.attacker.MustRun("nft", "add chain inet att pre { type filter hook prerouting priority -300; }; add rule inet att pre ip daddr "+spoofPrefix.String()+" drop")
	return l
}

// TestSensorSpoofedFloodNoBans: thousands of forged sources at one SYN
// each never go over the meter: the sensor holds none of them, the class
// stays spoofed and nothing is banned through the sensor.
func TestSensorSpoofedFloodNoBans(t *testing.T) {
	requireFloodTools(t)
	for _, backend := range sensorBackends {
		t.Run(backend, func(t *testing.T) {
			l := sensorSpoofLab(t, sensorPolicy(`
[sample]
count = 3
interval = "1s"

[spoof]
min_sources = 256
`), "1", true)
			if r := l.runSensor(backend); len(r.Verdicts) != 0 {
				t.Fatalf("quiet first run: %+v", r)
			}
			done := make(chan error, 1)
			go func() { done <- l.spoofFlood(spoofedSources(3000), 3*time.Second) }()
			time.Sleep(200 * time.Millisecond) // the flood is under way before the window opens
			r := l.runSensor(backend)
			if err := <-done; err != nil {
				t.Fatalf("flood: %v", err)
			}
			if r.Classification.Kind != "spoofed" {
				t.Fatalf("classification %+v, want spoofed", r.Classification)
			}
			if hot := l.sensorSources(backend); len(hot) != 0 {
				t.Errorf("the sensor holds %d forged sources (%v...), want none: one SYN each never exceeds the meter", len(hot), hot[:min(5, len(hot))])
			}
			if st := l.status(backend); len(st.Bans) > 3 {
				t.Fatalf("a spoofed flood filled the ban set with %d entries", len(st.Bans))
			}
		})
	}
}

// TestSensorCookieStormBetweenRuns: a cookie storm from forged sources
// (tcp_syncookies=2, no conntrack rule: nothing in any table) runs between
// two cron-style runs and is over before the second run's window opens.
// The second run classifies it from the counters the first stored: as
// spoofed when the sensor sees every source under the meter, and as a
// cookie storm with advice when there is no meter to ask.
func TestSensorCookieStormBetweenRuns(t *testing.T) {
	requireFloodTools(t)
	for _, backend := range sensorBackends {
		for _, tc := range []struct {
			name, policy, kind, advice string
		}{
			{"sensor", sensorPolicy(""), "spoofed", ""},
			{"no sensor", `
[[rule]]
name = "syn-flood"
state = "syn_recv"
threshold = 50

[meter]
enabled = false
`, "cookie_storm", "conntrack"},
		} {
			t.Run(backend+"/"+tc.name, func(t *testing.T) {
				l := sensorSpoofLab(t, tc.policy+"\n[spoof]\nmin_sources = 256\n", "2", false)
				if r := l.runSensor(backend); r.Classification.Kind != "none" {
					t.Fatalf("quiet first run: %+v", r.Classification)
				}
				if err := l.spoofFlood(spoofedSources(2000), time.Second); err != nil {
					t.Fatalf("flood: %v", err)
				}
				r := l.runSensor(backend)
				c := r.Classification
				if c.Kind != tc.kind || c.CountersSince <= 0 || c.CookiesSent < 1000 {
					t.Fatalf("second run: classification %+v, want %s from the stored counters (>= 1000 cookies)", c, tc.kind)
				}
				if ev := strings.Join(c.Evidence, "\n"); !strings.Contains(ev, "since the previous run") || !strings.Contains(ev, "window alone: 0 sent") {
					t.Errorf("evidence %q, want the counters since the previous run and none in the window", c.Evidence)
				}
				if tc.advice != "" && !strings.Contains(strings.Join(c.Advice, "\n"), tc.advice) {
					t.Errorf("advice %q lacks %q", c.Advice, tc.advice)
				}
				if st := l.status(backend); len(st.Bans) != 0 {
					t.Errorf("bans %+v after a storm from forged sources", st.Bans)
				}
			})
		}
	}
}
