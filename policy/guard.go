package policy

import (
	"cmp"
	"fmt"
	"net/netip"
)

// Guard holds the prefixes that must never be banned: loopback, the host's
// own addresses, its default gateways, the operator's SSH client and the
// policy's allow list. detect filters verdicts through it and rules enforces
// it again before anything reaches a backend.
type Guard struct {
	entries []guardEntry
}

type guardEntry struct {
	prefix netip.Prefix
	why    string
}

// NewGuard returns an empty guard.
func NewGuard() *Guard { return &Guard{} }

// Add protects p, remembering why (for example "allow list" or "host address").
// IPv4-mapped IPv6 prefixes are stored as IPv4.
func (g *Guard) Add(p netip.Prefix, why string) {
	g.entries = append(g.entries, guardEntry{prefix: Canonical(p), why: why})
}

// Protects reports whether banning p would touch a protected address: p
// contains a protected prefix or is contained in one. The returned string
// names the protected prefix and why it is protected (Protected.Reason of
// Match's entry).
func (g *Guard) Protects(p netip.Prefix) (string, bool) {
	m, ok := g.Match(p)
	if !ok {
		return "", false
	}
	return m.Reason(), true
}

// Match returns the first protected entry (in the order added) that banning
// p would touch, with the prefix it protects and why, so that callers
// which need the kind of protection ("default gateway", "SSH client
// running synban", "allow list") rather than a sentence can have it.
func (g *Guard) Match(p netip.Prefix) (Protected, bool) {
	if g == nil {
		return Protected{}, false
	}
	p = Canonical(p)
	for _, e := range g.entries {
		if e.prefix.Overlaps(p) {
			return Protected{Prefix: e.prefix, Why: e.why}, true
		}
	}
	return Protected{}, false
}

// Prefixes returns the protected prefixes in the order they were added.
func (g *Guard) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(g.entries))
	for _, e := range g.entries {
		out = append(out, e.prefix)
	}
	return out
}

// Canonical masks p and turns an IPv4-mapped IPv6 prefix (::ffff:a.b.c.d/n
// with n >= 96) into the IPv4 prefix it stands for. It is synban's one
// canonical form of a prefix: the compiler, every backend and the state
// store key bans by it.
func Canonical(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if a.Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			bits = 0
		}
		p = netip.PrefixFrom(a.Unmap(), bits)
	}
	return p.Masked()
}

// ComparePrefixes is synban's one order of prefixes: IPv4 first, then by
// address, then by length (shorter first).
func ComparePrefixes(a, b netip.Prefix) int {
	if a4, b4 := a.Addr().Is4(), b.Addr().Is4(); a4 != b4 {
		if a4 {
			return -1
		}
		return 1
	}
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// Protected is an address or prefix that must never be banned, and why
// ("default gateway", "SSH client running synban", "host address").
type Protected struct {
	Prefix netip.Prefix
	Why    string
}

// Reason is the guard's sentence for p: "10.0.0.1/32 is protected (default
// gateway)".
func (p Protected) Reason() string {
	return fmt.Sprintf("%s is protected (%s)", p.Prefix, p.Why)
}

// Guard returns a new guard protecting, in this order: the policy's allow
// list ("allow list"), loopback 127.0.0.0/8 and ::1/128 ("loopback"), and,
// when Allow.Host is true, the given host prefixes, each with its own
// reason ("host address" when it has none) — the host's own addresses,
// default gateways and the like, which the caller discovers from the
// kernel (detect.HostProtected).
func (p *Policy) Guard(host []Protected) *Guard {
	g := NewGuard()
	for _, a := range p.Allow.Addresses {
		g.Add(a, "allow list")
	}
	g.Add(netip.MustParsePrefix("127.0.0.0/8"), "loopback")
	g.Add(netip.MustParsePrefix("::1/128"), "loopback")
	if p.Allow.Host {
		for _, h := range host {
			why := h.Why
			if why == "" {
				why = "host address"
			}
			g.Add(h.Prefix, why)
		}
	}
	return g
}
