package memory

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backendtest"
)

// The in-memory backend keeps the promises of the kernel backends: the
// same contract suite, without root.
func TestContract(t *testing.T) {
	var k *Kernel
	clock := NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	backendtest.Run(t, func(t *testing.T, _ *netnstest.NS) rules.Backend {
		k = New(clock)
		return k.Open()
	}, backendtest.Options{
		NoNamespace: true,
		Disrupt:     func(*testing.T, *netnstest.NS) { k.OutsideFlush() },
		Advance:     clock.Advance,
		Ruleset: func(rs *rules.Ruleset) {
			rs.Meter = &rules.Meter{Rate: 20, Burst: 40, Timeout: time.Minute, IPv6Length: 64, Size: 4096}
		},
	})
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestGenerationMovesOnCommittedChangesOnly(t *testing.T) {
	ctx := context.Background()
	clock := NewClock(time.Unix(1e9, 0))
	k := New(clock)
	b := k.Open()
	if _, ok := b.AppliedGeneration(); ok {
		t.Fatal("AppliedGeneration vouched before any Apply")
	}
	rs := backendtest.BaseRuleset(rules.Ban{Prefix: pfx("203.0.113.7/32"), Timeout: time.Minute, Reason: "r"})
	g0 := k.Generation()
	if _, err := b.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	g1, ok := b.AppliedGeneration()
	if !ok || g1 != g0+1 || k.Generation() != g1 {
		t.Fatalf("after the first Apply: applied %d %v, kernel %d; want %d", g1, ok, k.Generation(), g0+1)
	}
	if _, err := b.Apply(ctx, rs); err != nil || k.Generation() != g1 {
		t.Fatalf("a no-op Apply moved the generation to %d (err %v)", k.Generation(), err)
	}
	// Counting drops and timing out move nothing.
	k.Drop(pfx("203.0.113.7/32"), 5)
	clock.Advance(2 * time.Minute)
	if bans, _ := b.Bans(ctx); len(bans) != 0 || k.Generation() != g1 {
		t.Fatalf("after the timeout: bans %v, generation %d; want none and %d", bans, k.Generation(), g1)
	}
	k.OutsideFlush()
	if k.Generation() != g1+1 || k.Present() {
		t.Fatalf("outside flush: generation %d present %v; want %d and absent", k.Generation(), k.Present(), g1+1)
	}
	if m, _ := b.Missing(ctx); len(m) == 0 {
		t.Error("Missing reports nothing after an outside flush")
	}
}

func TestDropCountersRestartOnRefresh(t *testing.T) {
	ctx := context.Background()
	clock := NewClock(time.Unix(1e9, 0))
	k := New(clock)
	b := k.Open()
	p := pfx("198.51.100.0/24")
	if _, err := b.Apply(ctx, backendtest.BaseRuleset(rules.Ban{Prefix: p, Timeout: time.Minute, Reason: "r"})); err != nil {
		t.Fatal(err)
	}
	if !k.Drop(p, 7) || k.Drop(pfx("192.0.2.1/32"), 1) {
		t.Fatal("Drop: want true for the ban, false for no ban")
	}
	if d, _ := b.BanDrops(ctx); d[p] != 7 {
		t.Fatalf("BanDrops %v, want %s: 7", d, p)
	}
	res, err := b.Apply(ctx, backendtest.BaseRuleset(rules.Ban{Prefix: p, Timeout: time.Hour, Reason: "longer"}))
	if err != nil || res.Refreshed != 1 {
		t.Fatalf("lengthening Apply: %+v %v; want 1 refreshed", res, err)
	}
	if d, _ := b.BanDrops(ctx); d[p] != 0 {
		t.Fatalf("after the refresh BanDrops %v, want %s: 0", d, p)
	}
	// A narrower ban inside a present one is not added.
	if res, _ := b.Apply(ctx, backendtest.BaseRuleset(rules.Ban{Prefix: pfx("198.51.100.9/32"), Timeout: time.Hour, Reason: "in"})); res.Added != 0 {
		t.Errorf("a ban inside %s was added: %+v", p, res)
	}
}
