package upstream

import (
	"slices"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := DecideInput{
		Now: t0, UplinkBps: 950e6, CapacityBps: 1e9, SaturationRatio: 0.9,
		Class:      RealFlood,
		Sources:    []Source{{Prefix: pfx("198.51.100.7/32"), Weight: 9}, {Prefix: pfx("198.51.101.0/24"), Weight: 5}, {Prefix: pfx("2001:db8:bad::/64"), Weight: 1}},
		Victims:    []Victim{{Addr: addr("203.0.113.10"), Ports: []uint16{80, 443}}, {Addr: addr("2001:db8:10::10"), Ports: []uint16{443}}},
		RealAction: Discard, RateBytes: 125000, FlowSpecCap: 10,
		AllowRTBH: true, RTBHCommunities: []Community{Community(64500<<16 | 666)},
		RTBHNextHop4: addr("192.0.2.66"), RTBHNextHop6: addr("2001:db8::66"),
		MinHold: time.Minute, WithdrawAfterQuiet: 5 * time.Minute,
	}
	mitigating := Decide(base) // an episode that began at t0
	with := func(f func(*DecideInput)) DecideInput { in := base; f(&in); return in }

	cases := []struct {
		name string
		in   DecideInput
		want []string // CLI renderings, in order
	}{
		{"not saturated: local bans only", with(func(in *DecideInput) { in.UplinkBps = 100e6 }), nil},
		{"saturated, no flood: nothing", with(func(in *DecideInput) { in.Class = NoFlood }), nil},
		{"real flood: flowspec per source and victim", base, []string{
			"gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 source 198.51.100.7/32 protocol tcp tcp-flags S&!A destination-port ==80 ==443 then discard",
			"gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 source 198.51.101.0/24 protocol tcp tcp-flags S&!A destination-port ==80 ==443 then discard",
			"gobgp global rib -a ipv6-flowspec add match destination 2001:db8:10::10/128 source 2001:db8:bad::/64 protocol tcp tcp-flags S&!A destination-port ==443 then discard",
		}},
		{"real flood, rate-limit action", with(func(in *DecideInput) {
			in.RealAction = RateLimit
			in.Sources = in.Sources[:1]
			in.Victims = in.Victims[:1]
		}), []string{
			"gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 source 198.51.100.7/32 protocol tcp tcp-flags S&!A destination-port ==80 ==443 then rate-limit 125000",
		}},
		{"spoofed flood: one rate-limit per victim and port, never per source", with(func(in *DecideInput) { in.Class = SpoofedFlood }), []string{
			"gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 protocol tcp tcp-flags S&!A destination-port ==80 then rate-limit 125000",
			"gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 protocol tcp tcp-flags S&!A destination-port ==443 then rate-limit 125000",
			"gobgp global rib -a ipv6-flowspec add match destination 2001:db8:10::10/128 protocol tcp tcp-flags S&!A destination-port ==443 then rate-limit 125000",
		}},
		{"still saturated before min_hold: no RTBH", with(func(in *DecideInput) {
			in.Now = t0.Add(59 * time.Second)
			in.Sources, in.Victims = in.Sources[:1], in.Victims[:1]
			in.Previous = mitigating.State
		}), []string{
			"gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 source 198.51.100.7/32 protocol tcp tcp-flags S&!A destination-port ==80 ==443 then discard",
		}},
		{"still saturated after min_hold: RTBH of the victim", with(func(in *DecideInput) {
			in.Now = t0.Add(time.Minute)
			in.Sources = in.Sources[:1]
			in.Previous = mitigating.State
		}), []string{
			"gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 source 198.51.100.7/32 protocol tcp tcp-flags S&!A destination-port ==80 ==443 then discard",
			"gobgp global rib -a ipv4-unicast add 203.0.113.10/32 nexthop 192.0.2.66 community 65535:666,65535:65281,64500:666",
			"gobgp global rib -a ipv6-unicast add 2001:db8:10::10/128 nexthop 2001:db8::66 community 65535:666,65535:65281,64500:666",
		}},
		{"after min_hold but RTBH not allowed", with(func(in *DecideInput) {
			in.Now = t0.Add(time.Hour)
			in.AllowRTBH = false
			in.Sources, in.Victims = in.Sources[:1], in.Victims[:1]
			in.Previous = mitigating.State
		}), []string{
			"gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 source 198.51.100.7/32 protocol tcp tcp-flags S&!A destination-port ==80 ==443 then discard",
		}},
		{"flowspec refused: RTBH at once", with(func(in *DecideInput) {
			in.FlowSpecRefused = true
			in.Sources, in.Victims = in.Sources[:1], in.Victims[:1]
		}), []string{
			"gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 source 198.51.100.7/32 protocol tcp tcp-flags S&!A destination-port ==80 ==443 then discard",
			"gobgp global rib -a ipv4-unicast add 203.0.113.10/32 nexthop 192.0.2.66 community 65535:666,65535:65281,64500:666",
		}},
		{"over the cap: RTBH at once", with(func(in *DecideInput) {
			in.FlowSpecCap = 1
			in.Victims = in.Victims[:1]
		}), []string{
			"gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 source 198.51.100.7/32 protocol tcp tcp-flags S&!A destination-port ==80 ==443 then discard",
			"gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 source 198.51.101.0/24 protocol tcp tcp-flags S&!A destination-port ==80 ==443 then discard",
			"gobgp global rib -a ipv4-unicast add 203.0.113.10/32 nexthop 192.0.2.66 community 65535:666,65535:65281,64500:666",
		}},
		{"flood goes on, uplink relieved by the rules: hold", with(func(in *DecideInput) {
			in.UplinkBps = 10e6
			in.Now = t0.Add(10 * time.Minute)
			in.Previous = mitigating.State
		}), clis(mitigating.Announcements)},
		{"flood gone, quiet shorter than withdraw_after_quiet: hold", with(func(in *DecideInput) {
			in.UplinkBps, in.Class = 10e6, NoFlood
			in.Now = t0.Add(5*time.Minute - time.Second)
			in.Previous = mitigating.State
		}), clis(mitigating.Announcements)},
		{"flood gone for withdraw_after_quiet: withdraw", with(func(in *DecideInput) {
			in.UplinkBps, in.Class = 10e6, NoFlood
			in.Now = t0.Add(5 * time.Minute)
			in.Previous = mitigating.State
		}), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.in)
			if got := clis(d.Announcements); !slices.Equal(got, c.want) {
				t.Fatalf("reason %q\n got %q\nwant %q", d.Reason, got, c.want)
			}
			if d.Reason == "" {
				t.Error("no reason given")
			}
			if len(d.Announcements) == 0 && (!d.State.FlowSpecSince.IsZero() || len(d.State.Announcements) != 0) {
				t.Errorf("nothing announced but state kept: %+v", d.State)
			}
		})
	}
}

// TestDecideEpisode walks one episode through successive runs: the hold
// clock starts with the first FlowSpec decision, and quiet is measured from
// the last run that still saw the flood.
func TestDecideEpisode(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	in := DecideInput{Now: t0, UplinkBps: 1e9, CapacityBps: 1e9, SaturationRatio: 0.8, Class: RealFlood,
		Sources: []Source{{Prefix: pfx("198.51.100.7/32")}}, Victims: []Victim{{Addr: addr("203.0.113.10")}},
		RealAction: Discard, FlowSpecCap: 5, AllowRTBH: true, RTBHNextHop4: addr("192.0.2.66"),
		MinHold: 30 * time.Second, WithdrawAfterQuiet: time.Minute}
	step := func(at time.Duration, bps float64, class FloodClass) Decision {
		in.Now, in.UplinkBps, in.Class = t0.Add(at), bps, class
		d := Decide(in)
		in.Previous = d.State
		return d
	}
	if d := step(0, 1e9, RealFlood); len(d.Announcements) != 1 || !d.State.FlowSpecSince.Equal(t0) {
		t.Fatalf("start: %v %+v", clis(d.Announcements), d.State)
	}
	if d := step(20*time.Second, 1e9, RealFlood); len(d.Announcements) != 1 || !d.State.FlowSpecSince.Equal(t0) {
		t.Fatalf("20 s: %v", clis(d.Announcements))
	}
	if d := step(40*time.Second, 1e9, RealFlood); len(d.Announcements) != 2 || d.Announcements[1].Kind != RTBH {
		t.Fatalf("40 s: want RTBH added: %v", clis(d.Announcements))
	}
	if d := step(50*time.Second, 1e6, RealFlood); len(d.Announcements) != 2 {
		t.Fatalf("50 s, relieved but flooded: %v", clis(d.Announcements))
	}
	if d := step(100*time.Second, 1e6, NoFlood); len(d.Announcements) != 2 {
		t.Fatalf("100 s, quiet 50 s: %v", clis(d.Announcements))
	}
	if d := step(110*time.Second, 1e6, NoFlood); len(d.Announcements) != 0 {
		t.Fatalf("110 s, quiet 60 s: want all withdrawn: %v", clis(d.Announcements))
	}
	if d := step(120*time.Second, 1e9, RealFlood); !d.State.FlowSpecSince.Equal(t0.Add(120*time.Second)) || len(d.Announcements) != 1 {
		t.Fatalf("new episode: %v %+v", clis(d.Announcements), d.State)
	}
}

func clis(as []Announcement) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.CLI())
	}
	return out
}
