package detect

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/synban/synban/policy"
)

// spread returns one half-open entry from each of n addresses of 10.77.0.0/16.
func spread(n int) []Conn {
	var out []Conn
	for i := 0; i < n; i++ {
		out = append(out, halfOpen(fmt.Sprintf("10.77.%d.%d", i/250, 1+i%250), 1, 4000)...)
	}
	return out
}

func TestClassify(t *testing.T) {
	flood := halfOpen("198.51.100.9", 80, 1000)
	for _, tc := range []struct {
		name     string
		disabled bool
		samples  []Sample
		delta    TcpExt
		kind     string
		why      string
	}{
		{"empty", false, nil, TcpExt{}, KindNone, "no source"},
		{"quiet", false, []Sample{{Conns: halfOpen("198.51.100.9", 3, 1000)}}, TcpExt{}, KindNone, "no source"},
		{"one real host", false, []Sample{{Conns: flood}}, TcpExt{}, KindReal, "198.51.100.9 holds 80"},
		{"spread", false, []Sample{{Conns: spread(300)}}, TcpExt{}, KindSpoofed, "300 sources"},
		// 200 sources of one /24 at one entry each: too few to be spoofed,
		// but their /24 crosses the prefix threshold (200): a prefix flood.
		{"spread below min_sources", false, []Sample{{Conns: spread(200)}}, TcpExt{}, KindPrefix, "10.77.0.0/24 holds 200 connections in state syn_recv from 200 sources"},
		{"spread below the prefix threshold", false, []Sample{{Conns: spread(150)}}, TcpExt{}, KindNone, ""},
		{"spread with a real host", false, []Sample{{Conns: append(spread(300), flood...)}}, TcpExt{}, KindSpoofed, "300 of them"},
		{"spread disabled", true, []Sample{{Conns: spread(300)}}, TcpExt{}, KindPrefix, "disabled"},
		{"cookies unanswered", false, []Sample{{}}, TcpExt{SyncookiesSent: 5000, SyncookiesRecv: 10}, KindSpoofed, "5000 SYN cookies sent, 10 returned"},
		{"cookies answered", false, []Sample{{}}, TcpExt{SyncookiesSent: 5000, SyncookiesRecv: 4000}, KindReal, "peers complete"},
		{"few cookies", false, []Sample{{}}, TcpExt{SyncookiesSent: 20}, KindNone, ""},
		{"peak sample counts", false, []Sample{{Conns: spread(10)}, {Conns: spread(400)}, {}}, TcpExt{}, KindSpoofed, "400 sources"},
	} {
		p := policy.Default()
		p.Spoof.Enabled = !tc.disabled
		c := Classify(p, tc.samples, tc.delta)
		if c.Kind != tc.kind || !strings.Contains(c.Why, tc.why) {
			t.Errorf("%s: %s (%s), want %s mentioning %q", tc.name, c.Kind, c.Why, tc.kind, tc.why)
		}
		if c.Kind == KindSpoofed && !hasAdvice(c, "bans cannot help against spoofed sources or a saturated link") {
			t.Errorf("%s: advice %q lacks upstream filtering", tc.name, c.Advice)
		}
		if c.Kind != KindSpoofed && len(c.Sysctls) != 0 {
			t.Errorf("%s: sysctls %v advised without a spoofed flood or dropped SYNs", tc.name, c.Sysctls)
		}
	}
}

func TestClassifyCookiesOff(t *testing.T) {
	p := policy.Default()
	p.Meter.Enabled = false
	c := Classify(p, []Sample{{Conns: spread(300)}}, TcpExt{TCPReqQFullDrop: 42})
	if c.Kind != KindSpoofed || len(c.Sysctls) == 0 || c.Sysctls[0].Key != "net.ipv4.tcp_syncookies" || !strings.Contains(c.Sysctls[0].Why, "42 SYNs were dropped") {
		t.Fatalf("classification %+v: want tcp_syncookies=1 first, naming the 42 drops", c)
	}
	if !hasAdvice(c, "turn the per-source SYN meter on") {
		t.Errorf("meter off: advice %q does not ask to turn it on", c.Advice)
	}
	keys := map[string]string{}
	for _, s := range c.Sysctls {
		keys[s.Key] = s.Value
	}
	if keys["net.ipv4.tcp_synack_retries"] != "2" || keys["net.ipv4.tcp_max_syn_backlog"] == "" {
		t.Errorf("sysctls %v", c.Sysctls)
	}
}

func TestFilterSpoofed(t *testing.T) {
	v := func(subject string, state policy.State, count, sources int) Verdict {
		return Verdict{Subject: netip.MustParsePrefix(subject), State: state, Count: count, Sources: sources, Rule: "r", Threshold: 1}
	}
	rep := Report{Samples: 3, Verdicts: []Verdict{
		v("10.77.0.0/24", policy.StateSynRecv, 250, 240),  // sparse prefix: forged
		v("10.88.0.0/24", policy.StateSynRecv, 500, 5),    // dense prefix: real hosts
		v("198.51.100.9/32", policy.StateSynRecv, 100, 1), // real host among noise
		v("10.77.0.7/32", policy.StateSynRecv, 6, 1),      // 2 per sample over 3 samples
		v("10.77.0.8/32", policy.StateSynRecv, 7, 1),      // more than that: kept
		v("10.77.0.9/32", policy.StateEstablished, 1, 1),  // handshakes are not forged
		v("2001:db8::1/128", policy.StateSynRecv, 2, 1),   // IPv6 single
	}, Spared: []Spared{{Verdict: v("192.0.2.1/32", policy.StateSynRecv, 99, 1), Why: "host address"}}}

	spoofed := Classification{Kind: KindSpoofed, MaxPerSource: 2}
	got := FilterSpoofed(rep, spoofed)
	var kept, spared []string
	for _, x := range got.Verdicts {
		kept = append(kept, x.Subject.String())
	}
	for _, x := range got.Spared {
		spared = append(spared, x.Verdict.Subject.String())
		if x.Verdict.Subject.Addr().Is4() && x.Verdict.Subject.Addr().As4()[0] == 10 && !strings.HasPrefix(x.Why, "spoofed flood") {
			t.Errorf("spared %s: why %q", x.Verdict.Subject, x.Why)
		}
	}
	if want := "[10.88.0.0/24 198.51.100.9/32 10.77.0.8/32 10.77.0.9/32]"; fmt.Sprint(kept) != want {
		t.Errorf("kept %v, want %s", kept, want)
	}
	if want := "[192.0.2.1/32 10.77.0.0/24 10.77.0.7/32 2001:db8::1/128]"; fmt.Sprint(spared) != want {
		t.Errorf("spared %v, want %s", spared, want)
	}
	if len(rep.Verdicts) != 7 || len(rep.Spared) != 1 {
		t.Errorf("FilterSpoofed modified its input")
	}
	for _, kind := range []string{KindReal, KindNone} {
		if g := FilterSpoofed(rep, Classification{Kind: kind, MaxPerSource: 2}); len(g.Verdicts) != 7 || len(g.Spared) != 1 {
			t.Errorf("kind %s: verdicts changed to %d", kind, len(g.Verdicts))
		}
	}
}
