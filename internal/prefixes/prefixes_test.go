package prefixes

import (
	"net/netip"
	"slices"
	"testing"
)

func p(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestHoldsAndOverlaps(t *testing.T) {
	cases := []struct {
		a, b           string
		holds, overlap bool
	}{
		{"10.0.0.0/8", "10.1.2.3/32", true, true},
		{"10.1.2.3/32", "10.0.0.0/8", false, true},
		{"10.0.0.0/8", "10.0.0.0/8", true, true},
		{"10.0.0.0/8", "11.0.0.0/8", false, false},
		{"::/0", "10.0.0.1/32", false, false}, // families never mix
		{"::ffff:0:0/96", "10.0.0.1/32", false, false},
		{"2001:db8::/32", "2001:db8:1::/48", true, true},
	}
	for _, c := range cases {
		if got := Holds(p(c.a), p(c.b)); got != c.holds {
			t.Errorf("Holds(%s, %s) = %v", c.a, c.b, got)
		}
		if got := Overlaps(p(c.a), p(c.b)); got != c.overlap {
			t.Errorf("Overlaps(%s, %s) = %v", c.a, c.b, got)
		}
	}
	if Holds(netip.Prefix{}, p("10.0.0.0/8")) || Overlaps(p("10.0.0.0/8"), netip.Prefix{}) {
		t.Error("an invalid prefix holds or overlaps")
	}
	if !HeldByAny([]netip.Prefix{p("192.0.2.0/24"), p("10.0.0.0/8")}, p("10.9.0.0/16")) || HeldByAny(nil, p("10.9.0.0/16")) {
		t.Error("HeldByAny")
	}
}

func TestAggregate(t *testing.T) {
	if got, ok := Aggregate(netip.MustParseAddr("198.51.100.77"), 24); !ok || got != p("198.51.100.0/24") {
		t.Errorf("Aggregate /24 = %s %v", got, ok)
	}
	for _, bits := range []int{0, -1, 33} {
		if _, ok := Aggregate(netip.MustParseAddr("198.51.100.77"), bits); ok {
			t.Errorf("Aggregate /%d of an IPv4 address ok", bits)
		}
	}
	if got, ok := Aggregate(netip.MustParseAddr("2001:db8::1"), 64); !ok || got != p("2001:db8::/64") {
		t.Errorf("Aggregate /64 = %s %v", got, ok)
	}
}

func TestFold(t *testing.T) {
	in := []netip.Prefix{p("10.0.0.0/8"), p("10.1.0.0/16"), p("10.1.2.3/32"), p("11.0.0.1/32"), p("2001:db8::/32"), p("2001:db8::1/128")}
	got := Fold(slices.Clone(in))
	want := []netip.Prefix{p("10.0.0.0/8"), p("11.0.0.1/32"), p("2001:db8::/32")}
	if !slices.Equal(got, want) {
		t.Errorf("Fold = %v, want %v", got, want)
	}
}
