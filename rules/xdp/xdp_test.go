package xdp

import (
	"fmt"
	stdmaps "maps"
	"net/netip"
	"testing"
	"time"
)

// fakeOps is an in-memory map that records each operation.
type fakeOps struct {
	m   map[netip.Prefix]value
	log []string
}

func (f *fakeOps) put(p netip.Prefix, v value) error {
	f.m[p] = v
	f.log = append(f.log, "put "+p.String())
	return nil
}

func (f *fakeOps) del(p netip.Prefix) error {
	delete(f.m, p)
	f.log = append(f.log, "del "+p.String())
	return nil
}

func (f *fakeOps) packets(p netip.Prefix) uint64 { return f.m[p].Packets }

// TestApplyEntriesOrder: entries are added and refreshed before any is
// removed; an unchanged entry is not written; a refreshed one keeps its
// counter. Replaying every prefix of the operations (a SIGKILL after each
// one) shows what the package doc promises: each entry is as it was or as
// the run wanted it, and a ban in both the old and the new set is always
// there.
func TestApplyEntriesOrder(t *testing.T) {
	c := clock{wall: time.Unix(1_000_000, 0), mono: 5e12}
	t1, t2 := c.wall.Add(time.Hour), c.wall.Add(2*time.Hour)
	pa, pb, pc, pd := netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("10.1.0.0/24"),
		netip.MustParsePrefix("2001:db8::/64"), netip.MustParsePrefix("192.0.2.9/32")
	old := map[netip.Prefix]value{
		pa: {Packets: 5, Expires: c.toMono(t1)},
		pb: {Packets: 7, Expires: c.toMono(t1)},
		pc: {Packets: 9, Expires: c.toMono(t1)},
	}
	var have []Entry
	for p, v := range old {
		have = append(have, Entry{Prefix: p, Packets: v.Packets, Expires: c.toWall(v.Expires)})
	}
	bans := []Ban{{pa, t1}, {pb, t2}, {pd, t2}}
	f := &fakeOps{m: stdmaps.Clone(old)}
	res := &Result{}
	if err := applyEntries(f, have, bans, c, res); err != nil {
		t.Fatal(err)
	}
	want := []string{"put " + pb.String(), "put " + pd.String(), "del " + pc.String()}
	if fmt.Sprint(f.log) != fmt.Sprint(want) {
		t.Fatalf("operations %v, want %v", f.log, want)
	}
	if res.Added != 1 || res.Updated != 1 || res.Removed != 1 {
		t.Errorf("result %+v", res)
	}
	final := map[netip.Prefix]value{pa: old[pa], pb: {Packets: 7, Expires: c.toMono(t2)}, pd: {Expires: c.toMono(t2)}}
	if !stdmaps.Equal(f.m, final) {
		t.Errorf("maps hold %v, want %v", f.m, final)
	}

	// Killed after k operations.
	for k := range len(f.log) + 1 {
		g := &fakeOps{m: stdmaps.Clone(old)}
		for _, op := range f.log[:k] {
			var verb, p string
			fmt.Sscan(op, &verb, &p)
			pfx := netip.MustParsePrefix(p)
			if verb == "put" {
				g.put(pfx, final[pfx])
			} else {
				g.del(pfx)
			}
		}
		for p, v := range g.m {
			if ov, ok := old[p]; ok && ov == v {
				continue
			}
			if nv, ok := final[p]; ok && nv == v {
				continue
			}
			t.Errorf("after %d operations %s holds %+v: neither old nor new", k, p, v)
		}
		for _, p := range []netip.Prefix{pa, pb} { // in both sets
			if _, ok := g.m[p]; !ok {
				t.Errorf("after %d operations %s, banned before and after, is missing", k, p)
			}
		}
	}
}

// TestKeysAndClock: keys keep prefixes as prefixes, IPv4 in the IPv4
// trie; expiries convert to CLOCK_MONOTONIC and back, a past one to 1 (not
// 0, which means never).
func TestKeysAndClock(t *testing.T) {
	m := &maps{}
	if _, k := m.mapFor(netip.MustParsePrefix("198.51.100.0/24")); k != (key4{Bits: 24, Addr: [4]byte{198, 51, 100, 0}}) {
		t.Errorf("IPv4 key %+v", k)
	}
	if _, k := m.mapFor(netip.MustParsePrefix("2001:db8::/32")); k != (key6{Bits: 32, Addr: netip.MustParseAddr("2001:db8::").As16()}) {
		t.Errorf("IPv6 key %+v", k)
	}
	c := clock{wall: time.Unix(1_000_000, 0), mono: 5e12}
	if c.toMono(time.Time{}) != 0 || !c.toWall(0).IsZero() {
		t.Error("no expiry does not stay no expiry")
	}
	if b := c.toMono(c.wall.Add(-time.Hour * 24 * 365 * 100)); b != 1 {
		t.Errorf("a long-past expiry is %d, want 1", b)
	}
	at := c.wall.Add(90 * time.Second)
	if got := c.toWall(c.toMono(at)); !got.Equal(at) {
		t.Errorf("round trip %v, want %v", got, at)
	}
	for _, name := range []string{"link-3-native", "link-12-generic"} {
		if _, _, ok := parseLinkPin(name); !ok {
			t.Errorf("%s not parsed", name)
		}
	}
	for _, name := range []string{"bans4", "link-x-native", "link-3-offload", "link-0-native", "link-3"} {
		if _, _, ok := parseLinkPin(name); ok {
			t.Errorf("%s parsed", name)
		}
	}
}
