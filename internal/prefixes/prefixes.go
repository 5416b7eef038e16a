// Package prefixes holds the one answer to the prefix questions synban asks
// in many places: does one prefix hold another, do two overlap, which
// aggregation prefix holds an address, and which prefixes of a sorted list
// are held by an earlier one. Addresses of different families never hold or
// overlap each other (an IPv4-mapped IPv6 address is IPv6 here: callers
// canonicalise first, see policy.Canonical).
package prefixes

import "net/netip"

// Holds reports whether outer holds all of inner: both valid, the same
// family, outer no longer than inner and containing its first address.
func Holds(outer, inner netip.Prefix) bool {
	return outer.IsValid() && inner.IsValid() && outer.Addr().Is4() == inner.Addr().Is4() &&
		outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// HeldByAny reports whether one of outer holds all of p.
func HeldByAny(outer []netip.Prefix, p netip.Prefix) bool {
	for _, o := range outer {
		if Holds(o, p) {
			return true
		}
	}
	return false
}

// Overlaps reports whether a and b share an address: both valid and of the
// same family, one holding the other.
func Overlaps(a, b netip.Prefix) bool {
	return a.IsValid() && b.IsValid() && a.Addr().Is4() == b.Addr().Is4() && a.Overlaps(b)
}

// Aggregate returns the prefix of length bits holding addr, and false when
// bits is 0 or out of the family's range (the family is not aggregated).
func Aggregate(addr netip.Addr, bits int) (netip.Prefix, bool) {
	if !addr.IsValid() || bits <= 0 || bits > addr.BitLen() {
		return netip.Prefix{}, false
	}
	pfx, err := addr.Prefix(bits)
	return pfx, err == nil
}

// Fold drops from sorted (ordered by family, address, then length, as
// policy.ComparePrefixes orders) every prefix held by one before it, in
// place, and returns what is left: prefixes nest or are disjoint, so in
// that order a prefix held by an earlier one is held by the last one kept.
func Fold(sorted []netip.Prefix) []netip.Prefix {
	out := sorted[:0]
	for _, p := range sorted {
		if n := len(out); n > 0 && Holds(out[n-1], p) {
			continue
		}
		out = append(out, p)
	}
	return out
}
