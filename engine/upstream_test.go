package engine

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/metrics"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/upstream"
)

// upstreamPolicy is the default policy with [upstream] on for 203.0.113.0/24
// and 2001:db8:10::/48, a syn-flood rule on ports 80 and 443 and a
// conn-flood rule on every port.
func upstreamPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("up.toml", []byte(`
[[rule]]
name = "syn-web"
state = "syn_recv"
threshold = 50
ports = [80, 443]

[[rule]]
name = "conn-flood"
state = "established"
threshold = 200

[upstream]
enabled = true
local_asn = 64512
router_id = "203.0.113.10"
own_prefixes = ["203.0.113.0/24", "2001:db8:10::/48"]
interfaces = ["eth0"]
uplink_bps = 1000000
rtbh_communities = ["64500:666"]
flowspec_rate_bytes = 12500

[[upstream.neighbor]]
address = "203.0.113.1"
peer_asn = 64500
families = ["ipv4-flowspec", "ipv6-flowspec"]
`))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func conn(local, remote string, st detect.TCPState) detect.Conn {
	return detect.Conn{Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote), State: st}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestUpstreamInputRealFlood: a real flood's verdicts become the sources
// (weighted by count); the victims are the local addresses inside
// own_prefixes that the banned sources flooded, with the deciding rule's
// ports; an address outside own_prefixes, traffic from an unbanned source
// and a port the rule does not count are left out. IPv6 alike.
func TestUpstreamInputRealFlood(t *testing.T) {
	p := upstreamPolicy(t)
	now := time.Unix(1700000000, 0)
	samples := []detect.Sample{{Conns: []detect.Conn{
		conn("203.0.113.10:80", "198.51.100.7:4000", detect.SynRecv),
		conn("203.0.113.10:443", "198.51.100.7:4001", detect.NewSynRecv),
		conn("203.0.113.10:22", "198.51.100.7:4002", detect.SynRecv),   // not a rule port
		conn("192.0.2.50:80", "198.51.100.7:4003", detect.SynRecv),     // outside own_prefixes
		conn("203.0.113.11:80", "192.0.2.99:4004", detect.Established), // an unbanned source
		conn("[2001:db8:10::5]:80", "[2001:db8:bad::1]:5000", detect.SynRecv),
	}}}
	verdicts := []detect.Verdict{
		{Subject: pfx("198.51.100.7/32"), Rule: "syn-web", Count: 300},
		{Subject: pfx("2001:db8:bad::/64"), Rule: "syn-web", Count: 90},
	}
	class := detect.Classification{Kind: detect.KindReal}
	in := upstreamInput(p, class, verdicts, samples, 950e3, upstream.DecideState{}, now)
	if in.Class != upstream.RealFlood || in.UplinkBps != 950e3 || in.CapacityBps != 1e6 || in.SaturationRatio != 0.8 ||
		in.RealAction != upstream.Discard || in.RateBytes != 12500 || in.FlowSpecCap != 20 || in.FlowSpecRefused || in.AllowRTBH {
		t.Fatalf("input %+v", in)
	}
	wantSrc := []upstream.Source{{Prefix: pfx("198.51.100.7/32"), Weight: 300}, {Prefix: pfx("2001:db8:bad::/64"), Weight: 90}}
	if !slices.Equal(in.Sources, wantSrc) {
		t.Errorf("sources %v, want %v", in.Sources, wantSrc)
	}
	wantV := []upstream.Victim{
		{Addr: netip.MustParseAddr("203.0.113.10"), Ports: []uint16{80, 443}},
		{Addr: netip.MustParseAddr("2001:db8:10::5"), Ports: []uint16{80}},
	}
	if !victimsEqual(in.Victims, wantV) {
		t.Errorf("victims %v, want %v", in.Victims, wantV)
	}
	if len(in.RTBHCommunities) != 1 || in.RTBHNextHop4 != netip.MustParseAddr("192.0.2.1") || in.RTBHNextHop6 != netip.MustParseAddr("100::1") {
		t.Errorf("RTBH %v %s %s", in.RTBHCommunities, in.RTBHNextHop4, in.RTBHNextHop6)
	}

	// Saturated: Decide and Check give one discard rule per source and
	// victim of its family, with the victim's ports.
	d := upstream.Decide(in)
	ok, refused := upstream.Check(p.UpstreamConfig(nil, nil), d.Announcements)
	var got []string
	for _, a := range ok {
		got = append(got, a.CLI())
	}
	slices.Sort(got)
	want := []string{
		"gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 source 198.51.100.7/32 protocol tcp tcp-flags S&!A destination-port ==80 ==443 then discard",
		"gobgp global rib -a ipv6-flowspec add match destination 2001:db8:10::5/128 source 2001:db8:bad::/64 protocol tcp tcp-flags S&!A destination-port ==80 then discard",
	}
	if !slices.Equal(got, want) || len(refused) != 0 {
		t.Errorf("announced\n%s\nrefused %v\nwant\n%s", strings.Join(got, "\n"), refused, strings.Join(want, "\n"))
	}

	// A rule counting every port: the ports seen are taken.
	verdicts[0].Rule = "conn-flood"
	in = upstreamInput(p, class, verdicts[:1], samples, 950e3, upstream.DecideState{}, now)
	wantV = []upstream.Victim{{Addr: netip.MustParseAddr("203.0.113.10"), Ports: []uint16{22, 80, 443}}}
	if !victimsEqual(in.Victims, wantV) {
		t.Errorf("every-port rule: victims %v, want %v", in.Victims, wantV)
	}

	// real_action "none": no upstream action for a real flood.
	p.Upstream.RealAction = "none"
	if in := upstreamInput(p, class, verdicts, samples, 950e3, upstream.DecideState{}, now); in.Class != upstream.NoFlood || len(in.Sources) != 0 {
		t.Errorf("real_action none: %+v", in)
	}
}

// TestUpstreamInputSpoofedFlood: a spoofed flood has no sources; its
// victims are the local addresses of the half-open entries with the SYN
// rules' ports, and Decide gives one rate-limit rule per victim and port.
func TestUpstreamInputSpoofedFlood(t *testing.T) {
	p := upstreamPolicy(t)
	var conns []detect.Conn
	for i := range 300 {
		conns = append(conns, conn("203.0.113.10:80", netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 1000).String(), detect.SynRecv))
	}
	conns = append(conns, conn("203.0.113.10:8080", "10.9.9.9:1", detect.SynRecv)) // not a SYN rule's port
	class := detect.Classification{Kind: detect.KindSpoofed}
	in := upstreamInput(p, class, nil, []detect.Sample{{Conns: conns}}, 2e6, upstream.DecideState{}, time.Now())
	if in.Class != upstream.SpoofedFlood || len(in.Sources) != 0 {
		t.Fatalf("input %+v", in)
	}
	wantV := []upstream.Victim{{Addr: netip.MustParseAddr("203.0.113.10"), Ports: []uint16{80}}}
	if !victimsEqual(in.Victims, wantV) {
		t.Fatalf("victims %v, want %v", in.Victims, wantV)
	}
	d := upstream.Decide(in)
	ok, _ := upstream.Check(p.UpstreamConfig(nil, nil), d.Announcements)
	if len(ok) != 1 || ok[0].CLI() != "gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 protocol tcp tcp-flags S&!A destination-port ==80 then rate-limit 12500" {
		t.Fatalf("announced %v", ok)
	}
	p.Upstream.SpoofedAction = "none"
	if in := upstreamInput(p, class, nil, []detect.Sample{{Conns: conns}}, 2e6, upstream.DecideState{}, time.Now()); in.Class != upstream.NoFlood {
		t.Errorf("spoofed_action none: class %v", in.Class)
	}
}

// TestUpstreamInputNoFlowSpecNeighbor: neighbors without a FlowSpec family
// make FlowSpec refused, so Decide goes to RTBH at once when allowed.
func TestUpstreamInputNoFlowSpecNeighbor(t *testing.T) {
	p := upstreamPolicy(t)
	p.Upstream.Neighbors[0].Families = []string{"ipv4-unicast"}
	p.Upstream.AllowRTBH = true
	samples := []detect.Sample{{Conns: []detect.Conn{conn("203.0.113.10:80", "198.51.100.7:4000", detect.SynRecv)}}}
	verdicts := []detect.Verdict{{Subject: pfx("198.51.100.7/32"), Rule: "syn-web", Count: 300}}
	in := upstreamInput(p, detect.Classification{Kind: detect.KindReal}, verdicts, samples, 1e6, upstream.DecideState{}, time.Now())
	if !in.FlowSpecRefused {
		t.Fatal("FlowSpec not refused without a FlowSpec neighbor")
	}
	d := upstream.Decide(in)
	ok, refused := upstream.Check(p.UpstreamConfig(nil, nil), d.Announcements)
	var rtbh []upstream.Announcement
	for _, a := range ok {
		if a.Kind == upstream.RTBH {
			rtbh = append(rtbh, a)
		}
	}
	if len(rtbh) != 1 || rtbh[0].Destination != pfx("203.0.113.10/32") || len(refused) != 0 ||
		rtbh[0].CLI() != "gobgp global rib -a ipv4-unicast add 203.0.113.10/32 nexthop 192.0.2.1 community 65535:666,65535:65281,64500:666" {
		t.Fatalf("announced %v refused %v", ok, refused)
	}
}

// TestUplinkBps: the higher of the two measured rates; none measured is 0.
func TestUplinkBps(t *testing.T) {
	if got := uplinkBps(nil, nil); got != 0 {
		t.Errorf("nothing measured: %v", got)
	}
	if got := uplinkBps(&upstream.LinkRate{RxBps: 5}, &upstream.LinkRate{RxBps: 9}); got != 9 {
		t.Errorf("got %v, want 9", got)
	}
	if got := uplinkBps(&upstream.LinkRate{RxBps: 7}, nil); got != 7 {
		t.Errorf("got %v, want 7", got)
	}
}

// TestPlanUpstreamHandOff: planning reads the previous hand-off file (its
// decision state and uplink counters: the rate since the previous run
// saturates the uplink although the window was too short to measure) and
// a run's hand-off writes the checked announcements, confirmed, for the
// speaker; the source that is the host's own address is refused, not sent.
func TestPlanUpstreamHandOff(t *testing.T) {
	dir := t.TempDir()
	p := upstreamPolicy(t)
	e := New(nil, Options{StateDir: dir})
	t0 := time.Unix(1700000000, 0)
	prev := upstream.Confirm(t0, nil, upstream.DecideState{})
	prev.Uplink = []upstream.LinkSample{{At: t0, Interface: "eth0", RxBytes: 1000}}
	if err := upstream.WriteDesired(dir, prev); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(10 * time.Second)
	w := &Window{Uplink: uplinkWindow{
		Start: []upstream.LinkSample{{At: now.Add(-time.Millisecond), Interface: "eth0", RxBytes: 1000 + 1_250_000 - 100}},
		End:   []upstream.LinkSample{{At: now, Interface: "eth0", RxBytes: 1000 + 1_250_000}}, // 1 Mbit/s over 10 s
	}}
	g := p.Guard(nil)
	g.Add(pfx("198.51.100.9/32"), "host address")
	d := &Decision{Class: detect.Classification{Kind: detect.KindReal},
		Samples: []detect.Sample{{Conns: []detect.Conn{
			conn("203.0.113.10:80", "198.51.100.7:4000", detect.SynRecv),
			conn("203.0.113.10:80", "198.51.100.9:4000", detect.SynRecv),
		}}},
		Report: detect.Report{Verdicts: []detect.Verdict{
			{Subject: pfx("198.51.100.7/32"), Rule: "syn-web", Count: 300},
			{Subject: pfx("198.51.100.9/32"), Rule: "syn-web", Count: 200},
		}}}
	plan := e.planUpstream(p, g, w, d, now)
	if plan.Window != nil || plan.SinceLast == nil || plan.SinceLast.RxBps != 1e6 || plan.Input.UplinkBps != 1e6 || plan.Err != nil {
		t.Fatalf("window %v since last %v bps %v err %v", plan.Window, plan.SinceLast, plan.Input.UplinkBps, plan.Err)
	}
	if len(plan.Announcements) != 1 || plan.Announcements[0].Source != pfx("198.51.100.7/32") {
		t.Fatalf("announcements %v", plan.Announcements)
	}
	if len(plan.Refused) != 1 || !strings.Contains(plan.Refused[0].Reason, "covers protected 198.51.100.9/32") {
		t.Fatalf("refused %v", plan.Refused)
	}
	// planning wrote nothing
	if got, err := upstream.ReadDesired(dir); err != nil || len(got.Entries) != 0 {
		t.Fatalf("plan changed the hand-off file: %+v %v", got, err)
	}
	d.Upstream = plan
	rep := e.handOffUpstream(d)
	if rep.Err != nil {
		t.Fatal(rep.Err)
	}
	got, err := upstream.ReadDesired(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 1 || !got.Entries[0].Announcement.Equal(plan.Announcements[0]) || !got.Entries[0].Confirmed.Equal(now) ||
		len(got.Uplink) != 1 || got.Uplink[0].RxBytes != 1000+1_250_000 || !got.State.LastFlood.Equal(now) {
		t.Fatalf("hand-off file holds %+v", got)
	}
	m := upstreamMetrics(rep)
	if !m.Up || m.Announcements["flowspec"] != 1 || m.Announcements["rtbh"] != 0 || m.Refused != 1 || m.UplinkBps != 1e6 {
		t.Fatalf("metrics %+v", m)
	}
	if _, err := metrics.Text(metrics.Run{Start: now, Upstream: m}, time.Time{}); err != nil {
		t.Fatal(err)
	}

	// A hand-off file that cannot be written is reported, not fatal.
	bad := New(nil, Options{StateDir: filepath.Join(dir, "missing")})
	if rep := bad.handOffUpstream(d); rep.Err == nil || upstreamMetrics(rep).Up {
		t.Fatalf("hand-off into a missing directory: %+v", rep)
	}
}

func victimsEqual(a, b []upstream.Victim) bool {
	return slices.EqualFunc(a, b, func(x, y upstream.Victim) bool { return x.Addr == y.Addr && slices.Equal(x.Ports, y.Ports) })
}
