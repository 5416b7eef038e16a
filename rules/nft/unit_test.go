package nft

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backendtest"
	"github.com/synban/synban/rules/nft/spec"
)

func TestIntervalRoundTrip(t *testing.T) {
	for _, s := range []string{"198.51.100.0/24", "10.0.0.0/8", "0.0.0.0/1", "128.0.0.0/1", "255.255.255.0/24",
		"2001:db8::/32", "2001:db8:1::/64", "ffff::/16", "::/1", "203.0.113.128/25"} {
		p := netip.MustParsePrefix(s)
		ss := spec.SetSpec{Name: "x", Interval: true, Timeout: true, V6: p.Addr().Is6()}
		els := spec.Encode(ss, p, time.Minute, "why")
		wantLen := 2
		if spec.PrefixEnd(p) == nil {
			wantLen = 1
		}
		if len(els) != wantLen {
			t.Errorf("%s: %d elements, want %d", p, len(els), wantLen)
		}
		if len(els) == 2 && (!els[1].IntervalEnd || els[1].Timeout != 0 || els[1].Comment != "") {
			t.Errorf("%s: end element %+v must be flagged and carry no timeout or comment", p, els[1])
		}
		got := decodeElements(&nftables.Set{Interval: true}, els)
		if len(got) != 1 || got[0].prefix != p || got[0].comment != "why" || got[0].timeout != time.Minute {
			t.Errorf("%s: decoded %+v", p, got)
		}
	}
}

func TestDecodeAdjacentIntervals(t *testing.T) {
	ss := spec.SetSpec{Name: "x", Interval: true}
	a, b := netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("11.0.0.0/8")
	// The kernel lists an interval set in no particular order, and with
	// nft's leading "0.0.0.0 end" element.
	els := append(spec.Encode(ss, b, 0, ""), spec.Encode(ss, a, 0, "")...)
	els = append(els, nftables.SetElement{Key: make([]byte, 4), IntervalEnd: true})
	got := decodeElements(&nftables.Set{Interval: true}, els)
	if len(got) != 2 || got[0].prefix != a || got[1].prefix != b {
		t.Fatalf("decoded %+v, want %s and %s", got, a, b)
	}
	// A range that is no prefix is left out.
	odd := []nftables.SetElement{{Key: []byte{10, 0, 0, 0}}, {Key: []byte{10, 0, 0, 3}, IntervalEnd: true}}
	if got := decodeElements(&nftables.Set{Interval: true}, odd); len(got) != 0 {
		t.Errorf("range 10.0.0.0-10.0.0.2 decoded as %+v", got)
	}
}

func TestChunked(t *testing.T) {
	ss := spec.SetSpec{Name: "x", Interval: true, Timeout: true, V6: true}
	var els []nftables.SetElement
	long := string(make([]byte, 100))
	for i := 0; i < 3000; i++ {
		p := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, byte(i >> 8), byte(i)}), 48)
		els = append(els, spec.Encode(ss, p, time.Hour, long)...)
	}
	total, parts := 0, 0
	for _, part := range chunks(els) {
		parts++
		total += len(part)
		size := 0
		for _, e := range part {
			size += elemSize(e)
		}
		if len(part) > maxChunkElems+1 || size > maxChunkBytes+1024 {
			t.Errorf("part of %d elements, %d bytes", len(part), size)
		}
		if part[0].IntervalEnd {
			t.Error("a part starts with an interval end: start and end were split")
		}
	}
	if total != len(els) || parts < 2 {
		t.Errorf("chunks: %d of %d elements in %d parts", total, len(els), parts)
	}
}

func TestDesiredSetsPerFamily(t *testing.T) {
	rs := &rules.Ruleset{MaxEntries: 10, Meter: &rules.Meter{Size: 5, Timeout: time.Minute}}
	for fam, want := range map[string]int{"inet": 10, "ip": 5, "ip6": 5} /* with the sensor's hot sets */ {
		rs.Family, rs.Table = fam, "t"
		sp, err := spec.Build(rs)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(sp.Sets); got != want {
			t.Errorf("family %v: %d sets, want %d", fam, got, want)
		}
	}
}

// TestPrefixExpires: interval elements expire by themselves too.
func TestPrefixExpires(t *testing.T) {
	_, b := setup(t, "pexp")
	rs := fullRuleset(
		rules.Ban{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Timeout: 2 * time.Second, Reason: "short"},
		rules.Ban{Prefix: netip.MustParsePrefix("2001:db8:9::/48"), Timeout: 2 * time.Second, Reason: "short"},
		rules.Ban{Prefix: netip.MustParsePrefix("2001:db8:a::/48"), Timeout: time.Hour, Reason: "long"},
	)
	apply(t, b, rs)
	netnstest.Eventually(t, 15*time.Second, func() bool {
		bans, err := b.Bans(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(bans) == 1 && bans[0].Reason == "long"
	}, "short prefix bans did not expire")
}

// TestRefreshExtends: applying a present ban again renews its timeout
// (single addresses and prefixes alike).
func TestRefreshExtends(t *testing.T) {
	_, b := setup(t, "refresh")
	short := backendtest.SampleBans(3 * time.Second)
	apply(t, b, fullRuleset(short...))
	long := backendtest.SampleBans(time.Hour)
	if res := apply(t, b, fullRuleset(long...)); res.Refreshed != len(long) || res.Added != 0 {
		t.Errorf("Apply = %+v, want Refreshed %d", res, len(long))
	}
	bans, err := b.Bans(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(bans) != len(long) {
		t.Fatalf("Bans = %+v", bans)
	}
	for _, ab := range bans {
		if ab.Expires < time.Minute || ab.Timeout != time.Hour {
			t.Errorf("ban %s not refreshed: timeout %s, expires %s", ab.Prefix, ab.Timeout, ab.Expires)
		}
	}
}

// TestApplyRefusesOtherTarget: the target is fixed at construction; a
// Ruleset naming another table, family or mode is refused with
// ErrOtherTarget before any kernel call (the backend here has no
// namespace, so a kernel call would reach the host's: none must happen).
func TestApplyRefusesOtherTarget(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   Options
		adjust func(rs *rules.Ruleset)
	}{
		{"other table", Options{}, func(rs *rules.Ruleset) { rs.Table = "other" }},
		{"other family", Options{}, func(rs *rules.Ruleset) { rs.Family = "ip" }},
		{"sets mode for a table backend", Options{}, func(rs *rules.Ruleset) { rs.Mode = rules.ModeSets }},
		{"table mode for a sets backend", Options{Table: "synban", Mode: rules.ModeSets}, func(rs *rules.Ruleset) { rs.Mode = rules.ModeTable }},
		{"default mode for a sets backend", Options{Table: "synban", Mode: rules.ModeSets}, func(*rules.Ruleset) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			rs := backendtest.BaseRuleset(backendtest.SampleBans(time.Hour)...)
			tc.adjust(rs)
			_, err = b.Apply(context.Background(), rs)
			if !errors.Is(err, ErrOtherTarget) {
				t.Fatalf("Apply = %v, want ErrOtherTarget", err)
			}
			if !strings.Contains(err.Error(), rs.Table) || !strings.Contains(err.Error(), rs.Family) {
				t.Errorf("error %q does not name the ruleset's table %s %s", err, rs.Family, rs.Table)
			}
		})
	}
}

// TestApplyOtherTargetChangesNothing: a refused Apply leaves the kernel
// untouched, and the backend keeps working on its own table.
func TestApplyOtherTargetChangesNothing(t *testing.T) {
	ns, b := setup(t, "target")
	rs := backendtest.BaseRuleset(backendtest.SampleBans(time.Hour)...)
	rs.Table = "elsewhere"
	if _, err := b.Apply(context.Background(), rs); !errors.Is(err, ErrOtherTarget) {
		t.Fatalf("Apply to another table = %v, want ErrOtherTarget", err)
	}
	if out := strings.TrimSpace(ns.MustRun("nft", "list", "ruleset")); out != "" {
		t.Fatalf("a refused Apply changed the kernel:\n%s", out)
	}
	rs.Table = DefaultTable
	apply(t, b, rs)
	bans, err := b.Bans(context.Background())
	if err != nil || len(bans) != len(rs.Bans) {
		t.Errorf("Bans after Apply to the backend's own table = %d, %v; want %d", len(bans), err, len(rs.Bans))
	}
}
