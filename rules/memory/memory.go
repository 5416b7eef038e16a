// Package memory is an in-memory firewall backend with the kernel's
// semantics where synban relies on them, for tests that run the whole cycle
// without root or a network namespace: ban timeouts counted on a clock the
// test moves, a generation id that every committed change moves (as
// nftables' NFT_MSG_GETGEN), an outside flush that empties it, per-ban drop
// counters the test bumps, and a SYN sensor the test fills. It implements
// rules.Backend and every optional interface the engine asks for
// (DropCounter, Sensor, Generationer, Inspector) and passes the same
// contract suite (rules/backendtest) as the kernel backends.
//
// A Kernel is the state that outlives a process (the kernel's ruleset); a
// Backend is one process's handle on it, as each synban command opens its
// own.
package memory

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
)

// Name is the backend's name.
const Name = "memory"

// Clock is a time source the test moves by hand. The zero value starts at
// the zero time; NewClock starts elsewhere.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock d forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// refreshSlack is how much longer than its time left a ban must be asked
// for before Apply refreshes it (rules/nft's rule).
const refreshSlack = time.Second

// element is one ban in a ban set.
type element struct {
	ban   rules.Ban
	until time.Time // zero: no timeout
	drops uint64
}

// Kernel is the in-memory ruleset: synban's structure when present, the
// bans with their end times and drop counters, and the generation id.
type Kernel struct {
	clock *Clock

	mu        sync.Mutex
	present   bool
	structure rules.Ruleset // without bans
	bans      map[netip.Prefix]*element
	gen       uint32
	sensor    []rules.SensorSource
}

// New returns an empty kernel whose timeouts run on clock (nil: a clock of
// its own starting at the zero time).
func New(clock *Clock) *Kernel {
	if clock == nil {
		clock = &Clock{}
	}
	return &Kernel{clock: clock, bans: map[netip.Prefix]*element{}, gen: 1}
}

// Clock is the kernel's clock.
func (k *Kernel) Clock() *Clock { return k.clock }

// Open returns a new handle on the kernel, as a command opens the backend.
func (k *Kernel) Open() *Backend { return &Backend{k: k} }

// OutsideFlush empties the kernel the way `nft flush ruleset`, a firewall
// reload or a reboot does: structure and bans go; the generation moves.
func (k *Kernel) OutsideFlush() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.present = false
	k.structure = rules.Ruleset{}
	clear(k.bans)
	k.gen++
}

// OutsideUnban deletes one ban the way an operator's `nft delete element`
// does: the generation moves. It reports whether the ban was there.
func (k *Kernel) OutsideUnban(p netip.Prefix) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expireLocked()
	if _, ok := k.bans[policy.Canonical(p)]; !ok {
		return false
	}
	delete(k.bans, policy.Canonical(p))
	k.gen++
	return true
}

// Drop counts n packets dropped by the ban on p (exact prefix), as the
// kernel does for each packet it drops; false when there is no such ban.
// Counting moves no generation.
func (k *Kernel) Drop(p netip.Prefix, n uint64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expireLocked()
	e, ok := k.bans[policy.Canonical(p)]
	if ok {
		e.drops += n
	}
	return ok
}

// SetSensor replaces what the SYN sensor holds (the sources the meter found
// over its limit, with their counts); the packet path fills it, so no
// generation moves.
func (k *Kernel) SetSensor(src []rules.SensorSource) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sensor = slices.Clone(src)
}

// Generation is the kernel's generation id now.
func (k *Kernel) Generation() uint32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.gen
}

// Present says whether synban's structure is in the kernel.
func (k *Kernel) Present() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.present
}

// expireLocked drops the bans whose time has passed (the kernel's garbage
// collection: no generation moves).
func (k *Kernel) expireLocked() {
	now := k.clock.Now()
	for p, e := range k.bans {
		if !e.until.IsZero() && !now.Before(e.until) {
			delete(k.bans, p)
		}
	}
}

// Backend is one handle on a Kernel; it implements rules.Backend,
// rules.DropCounter, rules.Sensor, rules.Generationer and rules.Inspector.
type Backend struct {
	k *Kernel

	mu           sync.Mutex
	appliedGen   uint32
	appliedGenOK bool
}

// Compile-time checks of the interfaces the engine type-asserts.
var (
	_ rules.Backend      = (*Backend)(nil)
	_ rules.DropCounter  = (*Backend)(nil)
	_ rules.Sensor       = (*Backend)(nil)
	_ rules.Generationer = (*Backend)(nil)
	_ rules.Inspector    = (*Backend)(nil)
)

// Name returns "memory".
func (b *Backend) Name() string { return Name }

// structureOf is rs without its bans, deep-copied.
func structureOf(rs *rules.Ruleset) rules.Ruleset {
	s := *rs
	s.Bans = nil
	s.Hooks = slices.Clone(rs.Hooks)
	s.Allow = slices.Clone(rs.Allow)
	s.Devices = slices.Clone(rs.Devices)
	if rs.Meter != nil {
		m := *rs.Meter
		m.Ports = slices.Clone(m.Ports)
		s.Meter = &m
	}
	if rs.ConnLimit != nil {
		c := *rs.ConnLimit
		c.Ports = slices.Clone(c.Ports)
		s.ConnLimit = &c
	}
	return s
}

// changedParts names the parts of the structure that differ.
func changedParts(have, want rules.Ruleset) []string {
	var out []string
	part := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, name)
		}
	}
	part("table", [2]string{have.Table, have.Family}, [2]string{want.Table, want.Family})
	part("chains", [4]any{have.Hooks, have.Priority, have.Prerouting, have.Devices}, [4]any{want.Hooks, want.Priority, want.Prerouting, want.Devices})
	part("allow", have.Allow, want.Allow)
	part("ban sets", [2]any{have.MaxEntries, have.Mode}, [2]any{want.MaxEntries, want.Mode})
	part("meter", have.Meter, want.Meter)
	part("connlimit", have.ConnLimit, want.ConnLimit)
	return out
}

// Apply reconciles the kernel with rs: it creates or replaces the structure
// where it differs, adds the missing bans and refreshes those it lengthens
// (by more than a second; a refreshed element restarts its drop counter, as
// the kernel's delete and add do). A ban covered by a wider one present is
// left out; narrower ones inside a new ban give way to it. Any change moves
// the generation once, as one nftables transaction does.
func (b *Backend) Apply(_ context.Context, rs *rules.Ruleset) (rules.Result, error) {
	if err := rs.Validate(); err != nil {
		return rules.Result{}, fmt.Errorf("%s apply: %w", Name, err)
	}
	k := b.k
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expireLocked()
	now := k.clock.Now()
	var res rules.Result
	want := structureOf(rs)
	switch {
	case !k.present:
		res.Created = true
		k.present, k.structure = true, want
	default:
		if res.Changed = changedParts(k.structure, want); len(res.Changed) > 0 {
			k.structure = want
		}
	}
	changed := res.Created || len(res.Changed) > 0
	for _, bn := range rs.Bans {
		until := time.Time{}
		if bn.Timeout > 0 {
			until = now.Add(bn.Timeout)
		}
		if e, ok := k.bans[bn.Prefix]; ok {
			if !e.until.IsZero() && bn.Timeout <= e.until.Sub(now)+refreshSlack {
				continue
			}
			res.Refreshed++
			k.bans[bn.Prefix] = &element{ban: bn, until: until}
			changed = true
			continue
		}
		if covered(k.bans, bn.Prefix) {
			continue
		}
		for p := range k.bans {
			if p.Addr().Is4() == bn.Prefix.Addr().Is4() && p.Overlaps(bn.Prefix) && p.Bits() > bn.Prefix.Bits() {
				delete(k.bans, p)
			}
		}
		k.bans[bn.Prefix] = &element{ban: bn, until: until}
		res.Added++
		changed = true
	}
	if changed {
		k.gen++
	}
	b.mu.Lock()
	b.appliedGen, b.appliedGenOK = k.gen, true
	b.mu.Unlock()
	return res, nil
}

// covered says whether a wider ban of bans holds p.
func covered(bans map[netip.Prefix]*element, p netip.Prefix) bool {
	for q := range bans {
		if q.Bits() < p.Bits() && q.Addr().Is4() == p.Addr().Is4() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// Bans lists the bans present, sorted, with the time each has left.
func (b *Backend) Bans(context.Context) ([]rules.ActiveBan, error) {
	k := b.k
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expireLocked()
	now := k.clock.Now()
	out := make([]rules.ActiveBan, 0, len(k.bans))
	for _, p := range slices.SortedFunc(maps.Keys(k.bans), rules.ComparePrefixes) {
		e := k.bans[p]
		ab := rules.ActiveBan{Ban: e.ban}
		if !e.until.IsZero() {
			ab.Expires = e.until.Sub(now)
		}
		out = append(out, ab)
	}
	return out, nil
}

// Unban removes the given bans (exact prefixes) and reports how many were
// present; the generation moves when any was.
func (b *Backend) Unban(_ context.Context, prefixes []netip.Prefix) (int, error) {
	k := b.k
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expireLocked()
	n := 0
	for _, p := range prefixes {
		p = policy.Canonical(p)
		if _, ok := k.bans[p]; ok {
			delete(k.bans, p)
			n++
		}
	}
	if n > 0 {
		k.gen++
	}
	return n, nil
}

// Counters reports, per ban set's drop rule, the packets its bans dropped
// (the sum of the elements' counters; no bytes are counted).
func (b *Backend) Counters(context.Context) ([]rules.Counter, error) {
	k := b.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.present {
		return nil, nil
	}
	k.expireLocked()
	sums := map[string]uint64{}
	for p, e := range k.bans {
		sums[setOf(p)] += e.drops
	}
	var out []rules.Counter
	for _, set := range []string{rules.SetBan4, rules.SetBanNet4, rules.SetBan6, rules.SetBanNet6} {
		out = append(out, rules.Counter{Chain: "input", Rule: set, Packets: sums[set]})
	}
	return out, nil
}

// setOf names the ban set p belongs in.
func setOf(p netip.Prefix) string {
	switch {
	case p.Addr().Is4() && p.IsSingleIP():
		return rules.SetBan4
	case p.Addr().Is4():
		return rules.SetBanNet4
	case p.IsSingleIP():
		return rules.SetBan6
	}
	return rules.SetBanNet6
}

// Flush removes the structure and every ban; the generation moves when
// anything was there.
func (b *Backend) Flush(context.Context) error {
	k := b.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.present && len(k.bans) == 0 {
		return nil
	}
	k.present = false
	k.structure = rules.Ruleset{}
	clear(k.bans)
	k.gen++
	return nil
}

// BanDrops returns each present ban's drop counter, by prefix.
func (b *Backend) BanDrops(context.Context) (map[netip.Prefix]uint64, error) {
	k := b.k
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expireLocked()
	out := make(map[netip.Prefix]uint64, len(k.bans))
	for p, e := range k.bans {
		out[p] = e.drops
	}
	return out, nil
}

// SensorRead returns the sensor's sources when the structure has a meter;
// an empty reading otherwise.
func (b *Backend) SensorRead(context.Context) (rules.SensorReading, error) {
	k := b.k
	k.mu.Lock()
	defer k.mu.Unlock()
	r := rules.SensorReading{Table: "memory hot_v4, hot_v6", Counted: true}
	if k.present && k.structure.Meter != nil {
		r.Sources = slices.Clone(k.sensor)
	}
	return r, nil
}

// Generation returns the kernel's generation id.
func (b *Backend) Generation(context.Context) (uint32, error) { return b.k.Generation(), nil }

// AppliedGeneration returns the generation this handle's last Apply left
// the kernel at; false before any Apply.
func (b *Backend) AppliedGeneration() (uint32, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.appliedGen, b.appliedGenOK
}

// Missing names the structure the kernel lacks: everything when synban's
// table is absent, nothing otherwise.
func (b *Backend) Missing(context.Context) ([]string, error) {
	if b.k.Present() {
		return nil, nil
	}
	return []string{"table " + Name}, nil
}
