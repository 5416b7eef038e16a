package upstream

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func testConfig() Config {
	return Config{
		LocalASN: 64512, RouterID: addr("192.0.2.254"),
		Neighbors:           []Neighbor{{Address: addr("192.0.2.1"), PeerASN: 64500, Families: []string{FamilyIPv4FlowSpec}}},
		OwnPrefixes:         []netip.Prefix{pfx("203.0.113.0/24"), pfx("2001:db8:10::/48")},
		MinSourceBits4:      24,
		MinSourceBits6:      64,
		Protected:           []netip.Prefix{pfx("203.0.113.10/32"), pfx("198.51.100.200/32"), pfx("2001:db8:10::10/128")},
		MaxRules:            3,
		MaxChangesPerMinute: 60,
		MaxAge:              time.Minute,
		RTBHNextHop4:        addr("192.0.2.66"),
		RTBHNextHop6:        addr("2001:db8::66"),
	}
}

func fs(dst, src string) Announcement {
	a := Announcement{Kind: FlowSpec, Destination: pfx(dst), Ports: []uint16{80}, Action: Discard}
	if src != "" {
		a.Source = pfx(src)
	}
	return a
}

func rtbh(dst, nh string) Announcement {
	return Announcement{Kind: RTBH, Destination: pfx(dst), Communities: []Community{Blackhole, NoExport}, NextHop: addr(nh)}
}

func TestCheckRefusals(t *testing.T) {
	cfg := testConfig()
	cases := []struct {
		name   string
		a      Announcement
		reason string // substring; "" means accepted
	}{
		{"good flowspec", fs("203.0.113.10/32", "198.51.100.7/32"), ""},
		{"good spoofed", fs("203.0.113.10/32", ""), ""},
		{"good flowspec v6", fs("2001:db8:10::10/128", "2001:db8:bad::/64"), ""},
		{"good rtbh", rtbh("203.0.113.10/32", "192.0.2.66"), ""},
		{"good rtbh v6", rtbh("2001:db8:10::10/128", "2001:db8::66"), ""},
		{"outside own_prefixes", fs("192.0.2.10/32", "198.51.100.7/32"), "outside own_prefixes"},
		{"own prefix too broad", fs("203.0.112.0/23", "198.51.100.7/32"), "outside own_prefixes"},
		{"v6 outside own_prefixes", fs("2001:db8:11::1/128", ""), "outside own_prefixes"},
		{"rtbh outside own_prefixes", rtbh("192.0.2.10/32", "192.0.2.66"), "outside own_prefixes"},
		{"rtbh of a /24", rtbh("203.0.113.0/24", "192.0.2.66"), "only an exact /32"},
		{"rtbh of a /64", rtbh("2001:db8:10::/64", "2001:db8::66"), "only an exact /128"},
		{"rtbh without blackhole", Announcement{Kind: RTBH, Destination: pfx("203.0.113.9/32"), Communities: []Community{NoExport}, NextHop: addr("192.0.2.66")}, "BLACKHOLE"},
		{"rtbh without next hop", Announcement{Kind: RTBH, Destination: pfx("203.0.113.9/32"), Communities: []Community{Blackhole}}, "next hop"},
		{"rtbh next hop family", rtbh("203.0.113.9/32", "2001:db8::66"), "family"},
		{"a /0 source", fs("203.0.113.10/32", "0.0.0.0/0"), "broader than the minimum ban prefix /24"},
		{"a /16 source", fs("203.0.113.10/32", "198.51.0.0/16"), "broader than the minimum ban prefix /24"},
		{"a ::/0 source", fs("2001:db8:10::10/128", "::/0"), "broader than the minimum ban prefix /64"},
		{"the host's own address as source", fs("203.0.113.11/32", "203.0.113.10/32"), "covers protected 203.0.113.10/32"},
		{"a prefix covering the host", fs("203.0.113.11/32", "203.0.113.0/24"), "covers protected 203.0.113.10/32"},
		{"allow-listed source", fs("203.0.113.10/32", "198.51.100.200/32"), "covers protected 198.51.100.200/32"},
		{"allow-listed source in prefix", fs("203.0.113.10/32", "198.51.100.0/24"), "covers protected 198.51.100.200/32"},
		{"host v6 as source", fs("2001:db8:10::11/128", "2001:db8:10::/64"), "covers protected 2001:db8:10::10/128"},
		{"mixed families", fs("203.0.113.10/32", "2001:db8:bad::/64"), "different families"},
		{"host bits", fs("203.0.113.10/32", "198.51.100.7/24"), "host bits"},
		{"rate-limit 0", Announcement{Kind: FlowSpec, Destination: pfx("203.0.113.10/32"), Action: RateLimit}, "rate-limit of 0"},
		{"no action", Announcement{Kind: FlowSpec, Destination: pfx("203.0.113.10/32")}, "action"},
		{"port 0", Announcement{Kind: FlowSpec, Destination: pfx("203.0.113.10/32"), Ports: []uint16{0}, Action: Discard}, "port 0"},
		{"unknown kind", Announcement{Kind: "nullroute", Destination: pfx("203.0.113.10/32")}, "kind"},
		{"mapped destination", fs("::ffff:203.0.113.10/128", ""), "IPv4-mapped"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok, refused := Check(cfg, []Announcement{c.a})
			if c.reason == "" {
				if len(ok) != 1 || len(refused) != 0 {
					t.Fatalf("refused a safe announcement: %v", refused)
				}
				return
			}
			if len(ok) != 0 || len(refused) != 1 {
				t.Fatalf("accepted unsafe %s", c.a.CLI())
			}
			if !strings.Contains(refused[0].Reason, c.reason) {
				t.Fatalf("reason %q, want it to say %q", refused[0].Reason, c.reason)
			}
		})
	}
}

func TestCheckCapKeepsMostImportant(t *testing.T) {
	cfg := testConfig() // MaxRules 3
	var in []Announcement
	for i := range 6 {
		a := fs("203.0.113.20/32", fmt.Sprintf("198.51.%d.0/24", i))
		a.Weight = uint64(i * 10)
		in = append(in, a)
	}
	in = append(in, rtbh("203.0.113.20/32", "192.0.2.66")) // another family: own cap
	ok, refused := Check(cfg, in)
	if len(ok) != 4 || len(refused) != 3 {
		t.Fatalf("kept %d refused %d, want 4 and 3", len(ok), len(refused))
	}
	for i, want := range []string{"198.51.5.0/24", "198.51.4.0/24", "198.51.3.0/24"} {
		if ok[i].Source.String() != want {
			t.Errorf("kept[%d] = %s, want %s (heaviest first)", i, ok[i].Source, want)
		}
	}
	for _, r := range refused {
		if !strings.Contains(r.Reason, "over the local cap of 3 ipv4-flowspec") {
			t.Errorf("cut reason %q", r.Reason)
		}
		if r.Announcement.Weight > 20 {
			t.Errorf("cut a heavy one: %s", r.Announcement.CLI())
		}
	}
}

func TestCheckDuplicateKey(t *testing.T) {
	a := fs("203.0.113.20/32", "198.51.101.0/24")
	b := a
	b.Action, b.RateBytes = RateLimit, 100
	ok, refused := Check(testConfig(), []Announcement{a, b})
	if len(ok) != 1 || len(refused) != 1 || !strings.Contains(refused[0].Reason, "duplicate") || ok[0].Action != Discard {
		t.Fatalf("ok %v refused %v", ok, refused)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := testConfig().Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	c := testConfig()
	c.RouterID = addr("2001:db8::1")
	c.OwnPrefixes = []netip.Prefix{pfx("0.0.0.0/0")}
	c.Neighbors[0].Families = []string{"ipv4-multicast"}
	c.MaxRules = 0
	c.MaxAge = 0
	err := c.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"router_id", "own_prefixes: 0.0.0.0/0", `family "ipv4-multicast"`, "max_flowspec_rules", "max_age"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
}
