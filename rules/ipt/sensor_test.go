package ipt

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules"
)

// Lines as kernel 6.18 prints them: the sensor's IPv4 bucket after 928
// SYNs over the meter, an IPv6 one (srcmask 64) after 3, a meter entry.
const hashlimitSample = `598 10.91.0.2:0->0.0.0.0:0 1024159639982215168 8676395505161793536 8246337180000000
599 2001:0db8:0091:0000:0000:0000:0000:0000:0->0000:0000:0000:0000:0000:0000:0000:0000:0 8651709819935740672 8676395505161793536 8246337180000000
58 10.91.0.3:0->0.0.0.0:0 1 274877906000000 6871947650000
`

func TestParseHashlimit(t *testing.T) {
	els, err := ParseHashlimit(strings.NewReader(hashlimitSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		src     string
		expires time.Duration
		taken   uint64
		empty   bool
	}{
		{"10.91.0.2", 598 * time.Second, 928, false},
		{"2001:db8:91::", 599 * time.Second, 3, false},
		{"10.91.0.3", 58 * time.Second, 40, true},
	}
	if len(els) != len(want) {
		t.Fatalf("parsed %+v", els)
	}
	for i, w := range want {
		n, empty := els[i].Taken()
		if els[i].Source != netip.MustParseAddr(w.src) || els[i].Expires != w.expires || n != w.taken || empty != w.empty {
			t.Errorf("entry %d = %+v (taken %d, empty %v), want %+v", i, els[i], n, empty, w)
		}
	}
	for name, tc := range map[string]struct{ text, want string }{
		"fields":  {"1 2 3\n", "line 1: 3 fields"},
		"arrow":   {"1 10.0.0.1:0 1 2 3\n", `no "->"`},
		"address": {"1 10.0.0.300:0->0.0.0.0:0 1 2 3\n", "source address"},
		"port":    {"1 10.0.0.1:x->0.0.0.0:0 1 2 3\n", "source port"},
		"credit":  {"\n1 10.0.0.1:0->0.0.0.0:0 -1 2 3\n", "line 2: credit"},
		"zone":    {"1 fe80::1%eth0:0->0.0.0.0:0 1 2 3\n", "source address"},
	} {
		if _, err := ParseHashlimit(strings.NewReader(tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
}

func FuzzParseHashlimit(f *testing.F) {
	f.Add([]byte(hashlimitSample))
	f.Add([]byte("0 ::1:0->:::0 0 0 0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		els, err := ParseHashlimit(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		for _, e := range els {
			if !e.Source.IsValid() || e.Source.Zone() != "" || e.Expires < 0 {
				t.Fatalf("accepted %+v", e)
			}
			if n, _ := e.Taken(); e.Cost > 0 && e.Credit < e.Cap && n > (e.Cap-e.Credit)/e.Cost+1 {
				t.Fatalf("taken %d beyond the gap of %+v", n, e)
			}
		}
	})
}

// TestSensorCountsOverMeter applies a ruleset with the meter (20/s, burst
// 40) in a namespace, floods it from a peer with one fast and one slow
// source, and reads the sensor: exactly the fast source, with about the
// SYNs the meter dropped, which `iptables -v -S` counts for the sensor's
// rule too.
func TestSensorCountsOverMeter(t *testing.T) {
	for _, prog := range programs {
		t.Run(prog, func(t *testing.T) {
			netnstest.RequireRoot(t)
			netnstest.RequireCommand(t, "hping3")
			victim := netnstest.New(t, "sn-ipt")
			peer := netnstest.New(t, "sn-iptpeer")
			netnstest.Link(t, victim, peer, []string{"198.51.100.1/24"}, []string{"198.51.100.7/24", "198.51.100.8/24"})
			b := newBackend(t, victim, prog, Options{})
			rs := baseRS()
			rs.Meter = &rules.Meter{Rate: 20, Burst: 40, Timeout: time.Minute, Ports: []uint16{80}, IPv6Length: 64, Size: 4096}
			mustApply(t, b, rs)
			r, err := b.SensorRead(context.Background())
			if err != nil || !r.Counted || len(r.Sources) != 0 || !r.InPlace || !strings.Contains(r.Table, "ipt_hashlimit/synhot4-") {
				t.Fatalf("SensorRead before traffic = %+v, %v; want counted, empty, the synhot4 table", r, err)
			}
			peer.MustRun("timeout", "20", "hping3", "-q", "-S", "-p", "80", "-i", "u500", "-c", "300", "-a", "198.51.100.7", "198.51.100.1")
			peer.MustRun("timeout", "20", "hping3", "-q", "-S", "-p", "80", "-i", "u500", "-c", "10", "-a", "198.51.100.8", "198.51.100.1")
			r, err = b.SensorRead(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Sources) != 1 || r.Sources[0].Prefix != netip.MustParsePrefix("198.51.100.7/32") {
				t.Fatalf("sensor sources %+v, want only 198.51.100.7", r.Sources)
			}
			got := r.Sources[0].Packets
			if got < 300-60 || got > 300 {
				t.Errorf("sensor counted %d SYNs over the meter, want 240..300", got)
			}
			// The independent count: iptables' own rule counters.
			if rule, meter := counter(t, b, "hot_v4"), counter(t, b, "meter_v4"); rule != meter || got+1 < rule || got > rule+1 {
				t.Errorf("iptables counts %d SYNs through the sensor's rule and %d dropped by the meter; the sensor says %d", rule, meter, got)
			}
			if e := r.Sources[0].Expires; e < rules.SensorTimeout-time.Minute || e > rules.SensorTimeout {
				t.Errorf("entry expires in %s, want about %s", e, rules.SensorTimeout)
			}
		})
	}
}
