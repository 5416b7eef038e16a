package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/upstream"
)

// upstreamBase is an enabled [upstream] that validates; line numbers in
// TestPolicyUpstreamInvalid count from its first line.
const upstreamBase = `[upstream]
enabled = true
local_asn = 64512
router_id = "203.0.113.10"
own_prefixes = ["203.0.113.0/24", "2001:db8:10::/48"]
interfaces = ["eth0"]
uplink_bps = 1000000000
rtbh_communities = ["64500:666"]

[[upstream.neighbor]]
address = "203.0.113.1"
peer_asn = 64500
families = ["ipv4-flowspec", "ipv6-flowspec"]
`

// TestPolicyUpstreamValid: an enabled [upstream] decodes, and converts to
// an upstream.Config that the upstream package's Validate accepts, with the
// minimum source prefixes from [ban] and the protected prefixes given.
func TestPolicyUpstreamValid(t *testing.T) {
	p, err := Parse("u.toml", []byte(upstreamBase+"port = 1179\n"))
	if err != nil {
		t.Fatal(err)
	}
	if Default().Upstream.Enabled {
		t.Fatal("[upstream] is on by default")
	}
	prot := []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}
	cfg := p.UpstreamConfig(prot, []string{"secret"})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := cfg.Neighbors[0]
	if cfg.LocalASN != 64512 || cfg.RouterID != netip.MustParseAddr("203.0.113.10") || n.PeerASN != 64500 || n.Port != 1179 ||
		n.Password != "secret" || n.Address != netip.MustParseAddr("203.0.113.1") || len(n.Families) != 2 {
		t.Errorf("converted to %+v", cfg)
	}
	if cfg.MinSourceBits4 != 16 || cfg.MinSourceBits6 != 32 || cfg.MaxRules != 20 || cfg.MaxChangesPerMinute != 60 ||
		cfg.MaxAge != 5*time.Minute || len(cfg.OwnPrefixes) != 2 || len(cfg.Protected) != 1 {
		t.Errorf("converted to %+v", cfg)
	}
	if len(cfg.RTBHCommunities) != 1 || cfg.RTBHCommunities[0] != upstream.Community(64500<<16|666) ||
		cfg.RTBHNextHop4 != netip.MustParseAddr("192.0.2.1") || cfg.RTBHNextHop6 != netip.MustParseAddr("100::1") {
		t.Errorf("RTBH converted to %v %s %s", cfg.RTBHCommunities, cfg.RTBHNextHop4, cfg.RTBHNextHop6)
	}
	// A 32-bit AS number fits.
	// Validation routes with both families of each IP version on a
	// session of that version.
	v := strings.Replace(upstreamBase, `families = ["ipv4-flowspec", "ipv6-flowspec"]`, `families = ["ipv4-flowspec", "ipv4-unicast"]`, 1) +
		"\n[[upstream.neighbor]]\naddress = \"2001:db8::1\"\npeer_asn = 64500\nfamilies = [\"ipv6-flowspec\", \"ipv6-unicast\"]\n"
	v = strings.Replace(v, "enabled = true", "enabled = true\nflowspec_validation_routes = true", 1)
	if p, err := Parse("u.toml", []byte(v)); err != nil {
		t.Errorf("validation routes: %v", err)
	} else if c := p.UpstreamConfig(nil, nil); !c.FlowSpecValidationRoutes || c.Validate() != nil {
		t.Errorf("validation routes converted to %+v (%v)", c, c.Validate())
	}
	if Default().Upstream.FlowSpecValidationRoutes {
		t.Error("flowspec_validation_routes is on by default")
	}
	if p, err := Parse("u.toml", []byte(strings.Replace(upstreamBase, "64512", "4200000000", 1))); err != nil || p.UpstreamConfig(nil, nil).LocalASN != 4200000000 {
		t.Errorf("4-byte ASN: %v", err)
	}
}

// TestPolicyUpstreamInvalid: each bad [upstream] key or value is refused
// with the file, the line and the key.
func TestPolicyUpstreamInvalid(t *testing.T) {
	repl := func(old, new string) string {
		if !strings.Contains(upstreamBase, old) {
			t.Fatalf("%q not in the base", old)
		}
		return strings.Replace(upstreamBase, old, new, 1)
	}
	for i, c := range []struct {
		policy string
		line   int
		key    string
		want   string
	}{
		{repl("local_asn = 64512", "local_asn = 0"), 3, "upstream.local_asn", "required"},
		{repl("64512", "4294967296"), 3, "upstream.local_asn", "1..4294967295"},
		{repl("64512", "\"64512\""), 3, "upstream.local_asn", "must be an integer"},
		{repl("\"203.0.113.10\"", "\"2001:db8::1\""), 4, "upstream.router_id", "IPv4"},
		{repl("own_prefixes = [\"203.0.113.0/24\", \"2001:db8:10::/48\"]", "own_prefixes = []"), 5, "upstream.own_prefixes", "required"},
		{repl("\"203.0.113.0/24\"", "\"0.0.0.0/0\""), 5, "upstream.own_prefixes[0]", "anything"},
		{repl("\"203.0.113.0/24\"", "\"203.0.113.1/24\""), 5, "upstream.own_prefixes[0]", "host bits"},
		{repl("[\"eth0\"]", "[\"eth 0\"]"), 6, "upstream.interfaces[0]", "interface name"},
		{repl("[\"eth0\"]", "[\"eth0\", \"eth0\"]"), 6, "upstream.interfaces[1]", "duplicate"},
		{repl("interfaces = [\"eth0\"]", "interfaces = []"), 6, "upstream.interfaces", "required"},
		{repl("1000000000", "-1"), 7, "upstream.uplink_bps", "> 0"},
		{repl("uplink_bps = 1000000000", "uplink_bps = 0"), 7, "upstream.uplink_bps", "required"},
		{repl("[\"64500:666\"]", "[\"64500:70000\"]"), 8, "upstream.rtbh_communities[0]", "value part"},
		{repl("[\"64500:666\"]", "[\"666\"]"), 8, "upstream.rtbh_communities[0]", "AS:value"},
		{upstreamBase + "port = 0\n", 14, "upstream.neighbor[0].port", "1..65535"},
		{upstreamBase + "port = 70000\n", 14, "upstream.neighbor[0].port", "1..65535"},
		{upstreamBase + "password_file = \"pw\"\n", 14, "upstream.neighbor[0].password_file", "absolute"},
		{upstreamBase + "colour = 1\n", 14, "upstream.neighbor[0].colour", "unknown key"},
		{repl("\"203.0.113.1\"", "\"router1\""), 11, "upstream.neighbor[0].address", "IPv4 or IPv6"},
		{repl("peer_asn = 64500\n", ""), 10, "upstream.neighbor[0].peer_asn", "required"},
		{repl("peer_asn = 64500", "peer_asn = 0"), 12, "upstream.neighbor[0].peer_asn", "1..4294967295"},
		{repl("\"ipv4-flowspec\", \"ipv6-flowspec\"", "\"ipv4-flowspec\", \"l2vpn-evpn\""), 13, "upstream.neighbor[0].families[1]", "must be one of"},
		{repl("\"ipv4-flowspec\", \"ipv6-flowspec\"", "\"ipv4-flowspec\", \"ipv4-flowspec\""), 13, "upstream.neighbor[0].families[1]", "duplicate"},
		{repl("\"ipv4-flowspec\", \"ipv6-flowspec\"", ""), 13, "upstream.neighbor[0].families", "at least one"},
		{repl("\"ipv4-flowspec\", \"ipv6-flowspec\"", "\"a\", \"b\", \"c\", \"d\", \"e\""), 13, "upstream.neighbor[0].families", "at most 4"},
		{upstreamBase + "\n[[upstream.neighbor]]\naddress = \"203.0.113.1\"\npeer_asn = 1\nfamilies = [\"ipv4-unicast\"]\n", 16, "upstream.neighbor[1].address", "also upstream.neighbor[0]"},
		{strings.SplitAfter(upstreamBase, "\n\n")[0], 1, "upstream.neighbor", "at least one"},
		{repl("enabled = true", "enabled = true\nsaturation_ratio = 0"), 3, "upstream.saturation_ratio", "0..1"},
		{repl("enabled = true", "enabled = true\nsaturation_ratio = 1.5"), 3, "upstream.saturation_ratio", "0..1"},
		{repl("enabled = true", "enabled = true\nreal_action = \"drop\""), 3, "upstream.real_action", "must be one of"},
		{repl("enabled = true", "enabled = true\nspoofed_action = \"discard\""), 3, "upstream.spoofed_action", "must be one of"},
		{repl("enabled = true", "enabled = true\nreal_action = \"none\"\nspoofed_action = \"none\""), 3, "upstream.real_action", "does nothing"},
		{repl("enabled = true", "enabled = true\nflowspec_rate_bytes = 0"), 3, "upstream.flowspec_rate_bytes", "bytes per second"},
		{repl("enabled = true", "enabled = true\nmax_flowspec_rules = 0"), 3, "upstream.max_flowspec_rules", "1..10000"},
		{repl("enabled = true", "enabled = true\nmax_changes_per_minute = 0"), 3, "upstream.max_changes_per_minute", "1..100000"},
		{repl("enabled = true", "enabled = true\nrtbh_next_hop_v4 = \"100::1\""), 3, "upstream.rtbh_next_hop_v4", "IPv4"},
		{repl("enabled = true", "enabled = true\nrtbh_next_hop_v6 = \"192.0.2.1\""), 3, "upstream.rtbh_next_hop_v6", "IPv6"},
		{repl("enabled = true", "enabled = true\nmin_hold = \"0s\""), 3, "upstream.min_hold", "> 0"},
		{repl("enabled = true", "enabled = true\nwithdraw_after_quiet = \"-1m\""), 3, "upstream.withdraw_after_quiet", "> 0"},
		{repl("enabled = true", "enabled = true\nmax_age = \"5s\""), 3, "upstream.max_age", "at least 10s"},
		{repl("enabled = true", "enabled = true\nmax_age = 5"), 3, "upstream.max_age", "duration string"},
		{repl("enabled = true", "enabled = true\nlocal_as = 1"), 3, "upstream.local_as", "did you mean \"local_asn\""},
		// flowspec_validation_routes: each FlowSpec family with its unicast
		// family, on a session of the same IP version.
		{repl("enabled = true", "enabled = true\nflowspec_validation_routes = true"), 14, "upstream.neighbor[0].families", "needs \"ipv4-unicast\" with \"ipv4-flowspec\""},
		{repl("enabled = true", "enabled = true\nflowspec_validation_routes = \"yes\""), 3, "upstream.flowspec_validation_routes", "true or false"},
		{strings.Replace(repl("enabled = true", "enabled = true\nflowspec_validation_routes = true"), "families = [\"ipv4-flowspec\", \"ipv6-flowspec\"]", "families = [\"ipv4-flowspec\", \"ipv4-unicast\", \"ipv6-unicast\"]", 1), 14, "upstream.neighbor[0].families", "without \"ipv6-flowspec\""},
		{strings.Replace(repl("enabled = true", "enabled = true\nflowspec_validation_routes = true"), "families = [\"ipv4-flowspec\", \"ipv6-flowspec\"]", "families = [\"ipv4-flowspec\", \"ipv4-unicast\", \"ipv6-flowspec\", \"ipv6-unicast\"]", 1), 14, "upstream.neighbor[0].families", "IPv6 session"},
		{strings.Replace(repl("enabled = true", "enabled = true\nflowspec_validation_routes = true"), "families = [\"ipv4-flowspec\", \"ipv6-flowspec\"]", "families = [\"ipv4-unicast\"]", 1), 14, "upstream.neighbor[0].families", "without \"ipv4-flowspec\""},
		// Limits and syntax hold with the section off.
		{"[upstream]\nrouter_id = \"x\"\n", 2, "upstream.router_id", "IPv4"},
		{"[upstream]\nneighbor = 1\n", 2, "upstream.neighbor", "array of tables"},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			wantParseError(t, "u.toml", c.policy, c.line, c.key, c.want)
		})
	}
}
