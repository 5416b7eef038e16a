package policy

import (
	"net/netip"
	"testing"
)

// TestGuardMatch checks that the guard hands back which entry protects a
// subject and why, as data (the kind of protection, not only a sentence),
// including for a prefix that contains a protected address and for an
// IPv4-mapped subject.
func TestGuardMatch(t *testing.T) {
	p := Default()
	p.Allow.Addresses = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	g := p.Guard([]Protected{
		{Prefix: netip.MustParsePrefix("10.9.0.254/32"), Why: "default gateway"},
		{Prefix: netip.MustParsePrefix("2001:db8::22/128"), Why: "SSH client running synban"},
		{Prefix: netip.MustParsePrefix("10.9.0.1/32")},
	})
	for _, tc := range []struct {
		subject, prefix, why string
	}{
		{"10.9.0.254/32", "10.9.0.254/32", "default gateway"},
		{"::ffff:10.9.0.254/128", "10.9.0.254/32", "default gateway"},
		{"10.9.0.0/24", "10.9.0.254/32", "default gateway"}, // the first entry added that it touches
		{"2001:db8::22/128", "2001:db8::22/128", "SSH client running synban"},
		{"10.9.0.1/32", "10.9.0.1/32", "host address"},
		{"198.51.100.7/32", "198.51.100.0/24", "allow list"},
		{"127.0.0.1/32", "127.0.0.0/8", "loopback"},
	} {
		m, ok := g.Match(netip.MustParsePrefix(tc.subject))
		if !ok || m.Prefix != netip.MustParsePrefix(tc.prefix) || m.Why != tc.why {
			t.Errorf("Match(%s) = %+v, %v; want %s (%s)", tc.subject, m, ok, tc.prefix, tc.why)
			continue
		}
		if why, _ := g.Protects(netip.MustParsePrefix(tc.subject)); why != m.Reason() {
			t.Errorf("Protects(%s) = %q, Match's Reason = %q: one sentence, one source", tc.subject, why, m.Reason())
		}
	}
	if m, ok := g.Match(netip.MustParsePrefix("10.9.0.2/32")); ok {
		t.Errorf("Match(10.9.0.2/32) = %+v, want unprotected", m)
	}
	var none *Guard
	if _, ok := none.Match(netip.MustParsePrefix("10.9.0.2/32")); ok {
		t.Error("a nil guard protects nothing")
	}
}
