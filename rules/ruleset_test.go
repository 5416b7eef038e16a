package rules

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	p := netip.MustParsePrefix
	good := func() *Ruleset {
		return &Ruleset{
			Allow: []netip.Prefix{p("127.0.0.0/8"), p("::1/128"), p("192.0.2.0/24")},
			Bans: []Ban{
				{Prefix: p("198.51.100.0/24"), Timeout: time.Hour},
				{Prefix: p("203.0.113.7/32")},
				{Prefix: p("2001:db8::/32"), Timeout: time.Minute},
			},
		}
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("valid ruleset: %v", err)
	}
	for _, tc := range []struct {
		name, want string
		edit       func(rs *Ruleset)
	}{
		{"ban overlapping an allowed prefix", "overlaps allowed 192.0.2.0/24", func(rs *Ruleset) { rs.Bans[1].Prefix = p("192.0.2.77/32") }},
		{"ban containing an allowed address", "overlaps allowed ::1/128", func(rs *Ruleset) { rs.Bans[2].Prefix = p("::/8") }},
		{"IPv4-mapped allow entry", "overlaps allowed 203.0.113.0/24", func(rs *Ruleset) { rs.Allow = append(rs.Allow, p("::ffff:203.0.113.0/120")) }},
		{"not canonical", "not in canonical form", func(rs *Ruleset) { rs.Bans[0].Prefix = p("198.51.100.9/24") }},
		{"IPv4-mapped ban", "not in canonical form", func(rs *Ruleset) { rs.Bans[1].Prefix = p("::ffff:203.0.113.7/128") }},
		{"every address", "covers every address", func(rs *Ruleset) { rs.Bans[0].Prefix = p("0.0.0.0/0") }},
		{"invalid ban", "not valid", func(rs *Ruleset) { rs.Bans[0].Prefix = netip.Prefix{} }},
		{"invalid allow", "not valid", func(rs *Ruleset) { rs.Allow[0] = netip.Prefix{} }},
		{"duplicate", "listed twice", func(rs *Ruleset) { rs.Bans[1].Prefix = p("198.51.100.0/24") }},
		{"duplicate out of order", "listed twice", func(rs *Ruleset) { rs.Bans[2].Prefix = p("198.51.100.0/24") }},
		{"duplicate after an unordered pair", "listed twice", func(rs *Ruleset) {
			rs.Bans = append([]Ban{rs.Bans[2]}, rs.Bans...) // IPv6 first: out of order
			rs.Bans = append(rs.Bans, Ban{Prefix: p("203.0.113.7/32")})
		}},
		{"negative timeout", "negative timeout", func(rs *Ruleset) { rs.Bans[2].Timeout = -time.Second }},
	} {
		rs := good()
		tc.edit(rs)
		if err := rs.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	var nilRS *Ruleset
	if err := nilRS.Validate(); err == nil {
		t.Error("nil ruleset: Validate succeeded")
	}
	// The one-family rule: an IPv4 allow list does not cover IPv6 bans.
	rs := &Ruleset{Allow: []netip.Prefix{p("0.0.0.0/0")}, Bans: []Ban{{Prefix: p("2001:db8::7/128")}}}
	if err := rs.Validate(); err != nil {
		t.Errorf("IPv6 ban with an IPv4 allow-all: %v", err)
	}
	if a, ok := rs.AllowOverlap(p("::ffff:10.0.0.1/128")); !ok || a != p("0.0.0.0/0") {
		t.Errorf("AllowOverlap(IPv4-mapped) = %v, %v; want 0.0.0.0/0", a, ok)
	}
}
