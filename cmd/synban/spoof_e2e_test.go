package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/internal/synflood"
)

// spoofPrefix is the test prefix forged sources come from; the victim routes
// it back into the attacker namespace, which drops what comes back.
var spoofPrefix = netip.MustParsePrefix("10.64.0.0/16")

// spoofedSources returns n addresses spread thinly over spoofPrefix (8 per
// /24), so no /24 comes near the prefix threshold on its own.
func spoofedSources(n int) []netip.Addr {
	out := make([]netip.Addr, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, netip.AddrFrom4([4]byte{10, 64, byte(i / 8), byte(1 + i%8)}))
	}
	return out
}

// spoofLab is a lab whose victim answers a full SYN queue with cookies.
func spoofLab(t *testing.T, cookies string) *lab {
	l := newLabWith(t, `
[sample]
count = 3
interval = "1s"

[spoof]
min_sources = 256
`, map[string]string{"net.core.somaxconn": "64", "net.ipv4.tcp_syncookies": cookies})
	l.victim.MustRun("ip", "route", "add", spoofPrefix.String(), "via", attackerAddr)
	// Conntrack follows flows only once a rule uses it.
	l.victim.MustRun("nft", "add table inet conn; add chain inet conn pre { type filter hook prerouting priority 0; }; add rule inet conn pre ct state new counter")
	l.attacker.MustRun("nft", "add chain inet att pre { type filter hook prerouting priority -300; }; add rule inet att pre ip daddr "+spoofPrefix.String()+" drop")
	return l
}

// spoofFlood sends one SYN from each source, paced over about d, from the
// attacker namespace; it returns when done.
func (l *lab) spoofFlood(srcs []netip.Addr, d time.Duration) error {
	dst := netip.AddrPortFrom(netip.MustParseAddr(victimAddr), 80)
	pause := d / time.Duration(len(srcs)/10+1)
	return nsenter.Do(l.attacker.Path(), func() error {
		snd, err := synflood.Open(dst, spoofPrefix)
		if err != nil {
			return err
		}
		defer snd.Close()
		for i, src := range srcs {
			if err := snd.SYN(src, uint16(20000+i%40000), uint32(i)*7919+1); err != nil {
				return err
			}
			if i%10 == 9 {
				time.Sleep(pause)
			}
		}
		return nil
	})
}

type runJSON struct {
	Verdicts       []any `json:"verdicts"`
	Classification struct {
		Kind        string `json:"kind"`
		Why         string `json:"why"`
		CookiesSent int64  `json:"cookies_sent"`
	} `json:"classification"`
}

// floodDuringRun starts a spoofed flood, runs synban while it lasts (the
// three-sample window sees it, and the TcpExt counters move), and returns
// what the run reported.
func (l *lab) floodDuringRun(t *testing.T, srcs []netip.Addr) runJSON {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- l.spoofFlood(srcs, 3*time.Second) }()
	time.Sleep(200 * time.Millisecond) // the flood is under way before the window opens
	out, err := l.synban("run", "--json", "--backend", "nftables")
	if ferr := <-done; ferr != nil {
		t.Fatalf("flood: %v", ferr)
	}
	if err != nil {
		t.Fatalf("synban run: %v\n%s", err, out)
	}
	var r runJSON
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); err != nil {
		t.Fatalf("run --json: %v\n%s", err, out)
	}
	return r
}

// TestSpoofedFloodWithCookies: thousands of forged sources with SYN cookies
// answering are classified as spoofed; the ban set stays (nearly) empty,
// the SYN meter is on, and the report says so.
func TestSpoofedFloodWithCookies(t *testing.T) {
	requireFloodTools(t)
	l := spoofLab(t, "1")
	r := l.floodDuringRun(t, spoofedSources(3000))
	if r.Classification.Kind != "spoofed" || r.Classification.CookiesSent == 0 {
		t.Fatalf("classification = %+v, want spoofed with cookies sent", r.Classification)
	}
	st := l.status("nftables")
	if len(st.Bans) > 3 {
		t.Fatalf("a spoofed flood filled the ban set with %d entries: %+v", len(st.Bans), st.Bans)
	}
	if out := l.victim.MustRun("nft", "list", "chain", "inet", "synban", "prerouting"); !strings.Contains(out, "update @meter_v4") {
		t.Fatalf("the SYN meter is not on:\n%s", out)
	}
	t.Logf("classification: %s", r.Classification.Why)
}

// TestSpoofedFloodCookiesAlways: with tcp_syncookies=2 the socket table
// keeps no half-open entries at all, yet conntrack and the TcpExt counters
// show the flood, and it is classified as spoofed.
func TestSpoofedFloodCookiesAlways(t *testing.T) {
	requireFloodTools(t)
	l := spoofLab(t, "2")
	r := l.floodDuringRun(t, spoofedSources(2000))
	if n := l.halfOpen("10.64."); n != 0 {
		t.Fatalf("the socket table holds %d half-open entries with tcp_syncookies=2, want 0", n)
	}
	if r.Classification.Kind != "spoofed" || r.Classification.CookiesSent < 1000 {
		t.Fatalf("classification = %+v, want spoofed with >= 1000 cookies sent", r.Classification)
	}
	// conntrack still holds the half-open flows the socket table never had.
	out, err := l.synban("sample", "--json")
	if err != nil {
		t.Fatalf("sample: %v\n%s", err, out)
	}
	var s struct {
		Samplers []string `json:"samplers"`
		Sources  []struct {
			SynRecv int `json:"syn_recv"`
		} `json:"sources"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &s); err != nil {
		t.Fatalf("sample --json: %v\n%s", err, out)
	}
	half := 0
	for _, src := range s.Sources {
		if src.SynRecv > 0 {
			half++
		}
	}
	if half < 1000 {
		t.Fatalf("sample (samplers %v) saw %d sources with half-open flows, want >= 1000 from conntrack", s.Samplers, half)
	}
	if st := l.status("nftables"); len(st.Bans) > 3 {
		t.Fatalf("a spoofed flood filled the ban set with %d entries", len(st.Bans))
	}
}
