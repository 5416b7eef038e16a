package ipt

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/rules"
)

func TestChainRulesOrderAndFamilies(t *testing.T) {
	rs := &rules.Ruleset{
		Meter:     &rules.Meter{Rate: 20, Burst: 40, Timeout: time.Minute, IPv6Length: 64, Size: 100},
		ConnLimit: &rules.ConnLimit{Max: 7, Ports: []uint16{443}},
	}
	for _, v6 := range []bool{false, true} {
		fam, other := "v4", "v6"
		if v6 {
			fam, other = "v6", "v4"
		}
		got := ChainRules(rs, v6)
		var comments []string
		for _, r := range got {
			line := strings.Join(r, " ")
			if strings.Contains(line, other) {
				t.Errorf("%s rule mentions %s: %s", fam, other, line)
			}
			if i := slices.Index(r, "--comment"); i >= 0 {
				comments = append(comments, r[i+1])
			}
		}
		want := []string{"ban_" + fam, "ban_net_" + fam, "hot_" + fam, "meter_" + fam, "connlimit_" + fam}
		if !slices.Equal(comments, want) {
			t.Errorf("%s comments %v, want %v", fam, comments, want)
		}
		if first := strings.Join(got[0], " "); !strings.Contains(first, "synban-allow-"+fam) || !strings.HasSuffix(first, "-j RETURN") {
			t.Errorf("%s first rule %q is not the allow list", fam, first)
		}
		// The sensor's rule: the meter's twin, then the counting bucket,
		// and no target (it counts; the meter's rule drops).
		hot := strings.Join(got[3], " ")
		if !strings.Contains(hot, "--hashlimit-above 20/sec --hashlimit-burst 40 --hashlimit-mode srcip --hashlimit-name synbaw") ||
			!strings.Contains(hot, "--hashlimit-upto 10/min --hashlimit-burst 10000 --hashlimit-mode srcip --hashlimit-name synhot") ||
			strings.Contains(hot, " -j ") || strings.Count(hot, "--hashlimit-srcmask 64") != map[bool]int{false: 0, true: 2}[v6] {
			t.Errorf("%s sensor rule %q", fam, hot)
		}
		meter := strings.Join(got[4], " ")
		if strings.Contains(meter, "--hashlimit-srcmask 64") != v6 {
			t.Errorf("%s meter srcmask wrong: %s", fam, meter)
		}
		conn := strings.Join(got[5], " ")
		mask := map[bool]string{false: "--connlimit-mask 32", true: "--connlimit-mask 128"}[v6]
		if !strings.Contains(conn, mask) || !strings.Contains(conn, "--dport 443") || !strings.Contains(conn, "--connlimit-above 7") {
			t.Errorf("%s connlimit rule %q", fam, conn)
		}
	}
	if n := len(ChainRules(&rules.Ruleset{}, false)); n != 3 {
		t.Errorf("no meter, no cap: %d rules, want 3", n)
	}
}

func TestSynMatchPorts(t *testing.T) {
	var ports []uint16
	for p := uint16(1000); p < 1020; p++ {
		ports = append(ports, p, p) // duplicates collapse
	}
	got := synMatch(append(ports, 0))
	if len(got) != 2 {
		t.Fatalf("20 ports gave %d rules, want 2 (multiport takes 15)", len(got))
	}
	if s := strings.Join(got[1], " "); !strings.Contains(s, "--dports 1015,1016,1017,1018,1019") {
		t.Errorf("second chunk %q", s)
	}
	if s := strings.Join(synMatch(nil)[0], " "); s != "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN" {
		t.Errorf("no ports: %q", s)
	}
}

func TestMeterName(t *testing.T) {
	m := &rules.Meter{Rate: 20, Burst: 40, Timeout: time.Minute, IPv6Length: 64, Size: 100}
	a4, a6 := MeterName(m, false), MeterName(m, true)
	if len(a4) > 15 || len(a6) > 15 || a4 == a6 || !strings.HasPrefix(a4, "synban4-") {
		t.Errorf("names %q %q: want distinct, at most 15 characters", a4, a6)
	}
	m2 := *m
	m2.Ports = []uint16{80}
	if MeterName(&m2, false) != a4 {
		t.Error("ports changed the hashlimit name; they are not part of the table's configuration")
	}
	for _, change := range []func(*rules.Meter){
		func(m *rules.Meter) { m.Rate++ },
		func(m *rules.Meter) { m.Burst++ },
		func(m *rules.Meter) { m.Timeout += time.Second },
		func(m *rules.Meter) { m.Size++ },
	} {
		m3 := *m
		change(&m3)
		if MeterName(&m3, false) == a4 {
			t.Errorf("changed meter %+v kept name %s", m3, a4)
		}
	}
	m4 := *m
	m4.IPv6Length = 56
	if MeterName(&m4, false) != a4 || MeterName(&m4, true) == a6 {
		t.Error("IPv6 length must rename only the IPv6 table")
	}
}

func TestAllowEntries(t *testing.T) {
	rs := &rules.Ruleset{Allow: []netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/8"),
		netip.MustParsePrefix("::ffff:192.0.2.1/128"),
		netip.MustParsePrefix("::/0"),
		netip.MustParsePrefix("10.0.0.0/8"),
	}}
	if got, want := AllowEntries(rs, false), []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}; !slices.Equal(got, want) {
		t.Errorf("IPv4 allow = %v, want %v", got, want)
	}
	if got, want := AllowEntries(rs, true), []netip.Prefix{netip.MustParsePrefix("::/1"), netip.MustParsePrefix("8000::/1")}; !slices.Equal(got, want) {
		t.Errorf("IPv6 allow = %v, want %v (a /0 split in halves)", got, want)
	}
}

func TestBanEntry(t *testing.T) {
	for in, want := range map[string][2]string{
		"203.0.113.7/32":         {IPSetBan4, "203.0.113.7"},
		"198.51.100.9/24":        {IPSetBanNet4, "198.51.100.0/24"},
		"2001:db8::7/128":        {IPSetBan6, "2001:db8::7"},
		"2001:db8:1::/64":        {IPSetBanNet6, "2001:db8:1::/64"},
		"::ffff:203.0.113.8/128": {IPSetBan4, "203.0.113.8"},
	} {
		set, elem := BanEntry(netip.MustParsePrefix(in))
		if set != want[0] || elem != want[1] {
			t.Errorf("BanEntry(%s) = %s %s, want %s %s", in, set, elem, want[0], want[1])
		}
	}
}

func TestSmallHelpers(t *testing.T) {
	for d, want := range map[time.Duration]uint32{0: 0, -time.Second: 0, 1500 * time.Millisecond: 2, time.Minute: 60, 1e6 * time.Hour: maxTimeout} {
		if got := TimeoutSeconds(d); got != want {
			t.Errorf("TimeoutSeconds(%s) = %d, want %d", d, got, want)
		}
	}
	if got := Comment("  a \"b\"\n\\c\x01 "); got != `a 'b' /c?` {
		t.Errorf("Comment = %q", got)
	}
	if got := Comment(strings.Repeat("x", 300)); len(got) != maxCommentLen {
		t.Errorf("long comment kept %d bytes", len(got))
	}
	for in, want := range map[string]string{
		"iptables": "ip6tables", "/usr/sbin/iptables-legacy": "/usr/sbin/ip6tables-legacy", "iptables-nft": "ip6tables-nft",
	} {
		if got, err := ip6Path(in); err != nil || got != want {
			t.Errorf("ip6Path(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := ip6Path("/sbin/xtables-multi"); err == nil {
		t.Error("ip6Path of a name without iptables: no error")
	}
	if h, err := HookChains(&rules.Ruleset{Hooks: []string{"forward", "input", "forward"}}); err != nil || !slices.Equal(h, []string{"FORWARD", "INPUT"}) {
		t.Errorf("HookChains = %v, %v", h, err)
	}
	if _, err := HookChains(&rules.Ruleset{Hooks: []string{"output"}}); err == nil {
		t.Error("hook output accepted")
	}
}

func TestParseCounter(t *testing.T) {
	for line, want := range map[string]struct {
		name   string
		p, b   uint64
		parsed bool
	}{
		"-A SYNBAN -m set --match-set synban-ban-v4 src -m comment --comment ban_v4 -c 12 720 -j DROP": {"ban_v4", 12, 720, true},
		"-A SYNBAN -m set --match-set synban-allow-v4 src -c 3 180 -j RETURN":                          {"", 0, 0, false},
		"-N SYNBAN": {"", 0, 0, false},
		`-A SYNBAN -m comment --comment "meter_v6" -c 1 x -j DROP`: {"", 0, 0, false},
	} {
		name, p, b, ok := parseCounter(line)
		if ok != want.parsed || name != want.name || p != want.p || b != want.b {
			t.Errorf("parseCounter(%q) = %q %d %d %v, want %+v", line, name, p, b, ok, want)
		}
	}
}
