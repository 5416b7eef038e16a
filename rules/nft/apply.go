package nft

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/nft/spec"
)

// Chunk limits for one element message: the kernel silently drops
// elements past a 64 KiB attribute, so stay well under it.
const (
	maxChunkElems = 1000
	maxChunkBytes = 48 << 10
)

// nearExpiry: an element with less time left than this is re-added
// without a delete, so that its expiring between our read and the commit
// cannot fail the transaction.
const nearExpiry = 3 * time.Second

// Apply reconciles synban's table with rs in one transaction; see the
// package documentation. If an element expired between the read and the
// commit (the kernel then rejects the whole batch), it reads again and
// retries once.
func (b *Backend) Apply(ctx context.Context, rs *rules.Ruleset) (rules.Result, error) {
	if rs == nil {
		return rules.Result{}, errors.New("nftables apply: nil ruleset")
	}
	fam, err := spec.ParseFamily(rs.Family)
	if err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: %w", err)
	}
	if rs.Table == "" {
		return rules.Result{}, errors.New("nftables apply: empty table name")
	}
	for _, bc := range rs.BaseChains() {
		if _, ok := spec.Hooks[bc.Hook]; !ok || bc.Hook == rules.HookIngress && bc.Device == "" {
			return rules.Result{}, fmt.Errorf("nftables apply: unknown hook %q", bc.Hook)
		}
	}
	if rs.MaxEntries <= 0 {
		return rules.Result{}, fmt.Errorf("nftables apply: max entries %d, want > 0", rs.MaxEntries)
	}
	if len(rs.Devices) > 0 && !rs.SetsMode() && fam != nftables.TableFamilyINet {
		return rules.Result{}, fmt.Errorf("nftables apply: ingress chains need an inet table, not %s", rs.Family)
	}
	switch rs.Mode {
	case "", rules.ModeTable, rules.ModeSets:
	default:
		return rules.Result{}, fmt.Errorf("nftables apply: mode %q: want %q or %q", rs.Mode, rules.ModeTable, rules.ModeSets)
	}
	b.setTarget(rs.Table, rs.Family, rs.Mode)
	apply := b.applyOnce
	if rs.SetsMode() {
		apply = b.applySets
	}
	res, err := apply(ctx, rs, fam)
	if err != nil && errors.Is(err, syscall.ENOENT) {
		b.log.Warn("apply failed on a vanished object, retrying once", "err", err)
		res, err = apply(ctx, rs, fam)
	}
	return res, err
}

func (b *Backend) applyOnce(ctx context.Context, rs *rules.Ruleset, fam nftables.TableFamily) (rules.Result, error) {
	start := time.Now()
	c, done, err := b.conn()
	if err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: %w", err)
	}
	defer done()
	sp, err := spec.Build(rs)
	if err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: %w", err)
	}
	specs := sp.Sets
	var elemSets []string
	for _, s := range specs {
		if s.Kind == spec.KindAllow || s.Kind == spec.KindBan {
			elemSets = append(elemSets, s.Name)
		}
	}
	st, err := readState(ctx, c, rs.Table, fam, elemSets)
	if err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: read table %s: %w", rs.Table, err)
	}
	if err := b.fillSetCounters(st); err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: read set flags of table %s: %w", rs.Table, err)
	}
	p := &planner{b: b, c: c, st: st, rs: rs, sp: sp, fam: fam, t: &nftables.Table{Name: rs.Table, Family: fam}}
	p.plan(specs)
	if err := ctx.Err(); err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: %w", err)
	}
	if p.err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: build transaction: %w", p.err)
	}
	if err := c.Flush(); err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: transaction (%s) failed: %w; %s", p.summary(), err, b.describe(ctx, rs, fam))
	}
	b.log.Info("applied", "table", rs.Table, "created", p.res.Created, "changed", p.res.Changed,
		"added", p.res.Added, "refreshed", p.res.Refreshed, "skipped", p.skipped, "took", time.Since(start))
	return p.res, nil
}

// describe reads the table back after a failed transaction and says what
// the kernel holds now.
func (b *Backend) describe(ctx context.Context, rs *rules.Ruleset, fam nftables.TableFamily) string {
	c, done, err := b.conn()
	if err != nil {
		return "could not read back: " + err.Error()
	}
	defer done()
	st, err := readState(ctx, c, rs.Table, fam, banSets)
	if err != nil {
		return "could not read back: " + err.Error()
	}
	if st.table == nil {
		return fmt.Sprintf("kernel now: no table %s %s", rs.Family, rs.Table)
	}
	var parts []string
	for _, s := range banSets {
		if st.sets[s] == nil {
			parts = append(parts, s+" missing")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d of %d wanted", s, len(st.elems[s]), len(rs.BansIn(s))))
	}
	for _, bc := range rs.BaseChains() {
		h := bc.Name
		if st.chains[h] == nil {
			parts = append(parts, "chain "+h+" missing")
		} else {
			parts = append(parts, fmt.Sprintf("chain %s %d rules", h, len(st.rules[h])))
		}
	}
	return "kernel now: " + strings.Join(parts, ", ")
}

// planner queues one transaction on c.
type planner struct {
	b   *Backend
	c   *nftables.Conn
	st  *state
	rs  *rules.Ruleset
	sp  *spec.Spec
	fam nftables.TableFamily
	t   *nftables.Table

	res     rules.Result
	skipped int
	queued  int // element messages queued
	err     error
}

func (p *planner) summary() string {
	return fmt.Sprintf("created=%v changed=%v add=%d refresh=%d element-messages=%d",
		p.res.Created, p.res.Changed, p.res.Added, p.res.Refreshed, p.queued)
}

func (p *planner) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

func (p *planner) plan(specs []spec.SetSpec) {
	st, c := p.st, p.c
	if st.table == nil || p.reloaded(specs) {
		p.res.Created = true
	}
	c.AddTable(p.t)

	// Sets: keep, create, recreate, or drop.
	wanted := map[string]bool{}
	var create, recreate []spec.SetSpec
	for _, s := range specs {
		wanted[s.Name] = true
		switch k := st.sets[s.Name]; {
		case k == nil:
			create = append(create, s)
			p.res.Created = true
		case !s.Same(k):
			recreate = append(recreate, s)
			p.res.Changed = append(p.res.Changed, "set "+s.Name)
			p.b.log.Info("set definition changed, recreating", "set", s.Describe())
		}
	}
	var drop []*nftables.Set
	for _, name := range sortedKeys(st.sets) {
		if k := st.sets[name]; !k.Anonymous && !wanted[name] {
			drop = append(drop, k)
			p.res.Changed = append(p.res.Changed, "set "+name+" removed")
		}
	}
	setsChanging := len(recreate)+len(drop) > 0

	// Chains: decide, then queue rule flushes and chain deletes first, so
	// sets they reference can go.
	type chainPlan struct {
		name        string
		add, rules  bool
		ch          *nftables.Chain
		desiredRule []spec.RuleSpec
	}
	var plans []chainPlan
	seen := map[string]bool{}
	for _, cs := range p.sp.Chains {
		h := cs.Name()
		if seen[h] {
			continue
		}
		seen[h] = true
		want := cs.Rules
		cp := chainPlan{name: h, desiredRule: want, ch: cs.NFT(p.t)}
		switch k := st.chains[h]; {
		case k == nil:
			cp.add, cp.rules = true, true
			p.res.Created = true
		case !sameChain(k, cp.ch):
			c.FlushChain(k)
			c.DelChain(k)
			cp.add, cp.rules = true, true
			p.res.Changed = append(p.res.Changed, "chain "+h)
		case setsChanging || !p.sameRules(h, want):
			c.FlushChain(k)
			cp.rules = true
			p.res.Changed = append(p.res.Changed, "chain "+h)
		}
		plans = append(plans, cp)
	}
	for _, name := range st.chainOrder {
		if !seen[name] {
			k := st.chains[name]
			c.FlushChain(k)
			c.DelChain(k)
			p.res.Changed = append(p.res.Changed, "chain "+name+" removed")
		}
	}

	for _, k := range drop {
		c.DelSet(k)
	}
	for _, s := range recreate {
		c.DelSet(st.sets[s.Name])
	}
	for _, s := range create {
		p.newSet(s, nil)
	}
	for _, s := range recreate {
		p.newSet(s, st.elems[s.Name])
	}

	for _, cp := range plans {
		if cp.add {
			c.AddChain(cp.ch)
		}
		if cp.rules {
			for _, r := range cp.desiredRule {
				p.addRule(cp.ch, r)
			}
		}
	}

	// Elements of the sets that were kept.
	isNew := map[string]bool{}
	for _, s := range append(slices.Clone(create), recreate...) {
		isNew[s.Name] = true
	}
	for _, s := range specs {
		if isNew[s.Name] {
			continue
		}
		switch s.Kind {
		case spec.KindAllow:
			p.syncAllow(s)
		case spec.KindBan:
			p.syncBans(s)
		}
	}
}

// reloaded reports whether synban's sets exist but were found without
// their elements: every allow set that rs fills is empty. synban's allow
// sets always hold loopback after an Apply, so empty ones mean the
// structure was loaded from outside (the file of `synban render
// nft-include`, by `nft -f` or `systemctl restart nftables`) and the bans
// are being restored.
func (p *planner) reloaded(specs []spec.SetSpec) bool {
	found := false
	for _, s := range specs {
		if s.Kind != spec.KindAllow || len(s.Elems) == 0 || p.st.sets[s.Name] == nil {
			continue
		}
		if len(p.st.elems[s.Name]) > 0 {
			return false
		}
		found = true
	}
	return found
}

func sameChain(k, want *nftables.Chain) bool {
	return k.Hooknum != nil && *k.Hooknum == *want.Hooknum &&
		k.Priority != nil && *k.Priority == *want.Priority &&
		k.Type == want.Type &&
		k.Policy != nil && *k.Policy == *want.Policy
}

func (p *planner) sameRules(chain string, want []spec.RuleSpec) bool {
	have := p.st.rules[chain]
	if len(have) != len(want) {
		return false
	}
	anon := func(name string) string { return p.st.anon[name] }
	for i, r := range have {
		if fingerprint(r.Exprs, r.UserData, anon) != ruleFingerprint(want[i]) {
			p.b.log.Debug("rule differs", "chain", chain, "index", i,
				"have", fingerprint(r.Exprs, r.UserData, anon), "want", ruleFingerprint(want[i]))
			return false
		}
	}
	return true
}

func (p *planner) addRule(ch *nftables.Chain, r spec.RuleSpec) {
	if r.PortLookup != nil {
		s := &nftables.Set{
			Table: p.t, Anonymous: true, Constant: true,
			KeyType: nftables.TypeInetService, KeyByteOrder: binaryutil.BigEndian,
		}
		els := make([]nftables.SetElement, len(r.Ports))
		for i, port := range r.Ports {
			els[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(port)}
		}
		if err := p.c.AddSet(s, els); err != nil {
			p.fail(fmt.Errorf("anonymous port set for rule %s: %w", r.Comment, err))
			return
		}
		r.PortLookup.SetName = s.Name
		r.PortLookup.SetID = s.ID
	}
	p.c.AddRule(&nftables.Rule{Table: p.t, Chain: ch, Exprs: r.Exprs(), UserData: r.UserData()})
}

// newSet queues the creation of s with its elements: for a ban set, the
// bans of rs plus the old elements (carried over with the time they had
// left) that rs does not mention.
func (p *planner) newSet(s spec.SetSpec, old []element) {
	set := s.NFT(p.t)
	if err := p.c.AddSet(set, nil); err != nil {
		p.fail(fmt.Errorf("set %s: %w", s.Name, err))
		return
	}
	var els []nftables.SetElement
	switch s.Kind {
	case spec.KindAllow:
		for _, e := range s.Elems {
			els = append(els, e.Encode(s)...)
		}
	case spec.KindBan:
		bans := p.wantBans(s)
		oldBy := map[netip.Prefix]element{}
		for _, e := range old {
			oldBy[e.prefix] = e
		}
		var kept []netip.Prefix
		for _, bn := range bans {
			if _, ok := oldBy[bn.Prefix]; ok {
				p.res.Refreshed++
				delete(oldBy, bn.Prefix)
			} else {
				p.res.Added++
			}
			kept = append(kept, bn.Prefix)
			els = append(els, bn.Encode(s)...)
		}
		for _, e := range old {
			if _, ok := oldBy[e.prefix]; !ok || (s.Interval && overlapsAny(e.prefix, kept)) {
				continue
			}
			els = append(els, spec.Encode(s, e.prefix, e.expires, e.comment)...)
		}
	}
	p.addElements(set, els)
}

// wantBans returns the bans of rs for set s; in an interval set, bans
// inside another one of rs are left out (the kernel rejects overlaps).
func (p *planner) wantBans(s spec.SetSpec) []spec.Element {
	if !s.Interval {
		return s.Elems
	}
	byLen := slices.Clone(s.Elems)
	slices.SortStableFunc(byLen, func(a, b spec.Element) int { return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()) })
	var kept []netip.Prefix
	var out []spec.Element
	for _, bn := range byLen {
		if overlapsAny(bn.Prefix, kept) {
			p.skipped++
			p.b.log.Warn("ban overlaps another ban of the same ruleset, left out", "ban", bn.Prefix)
			continue
		}
		kept = append(kept, bn.Prefix)
		out = append(out, bn)
	}
	return out
}

func overlapsAny(p netip.Prefix, ps []netip.Prefix) bool {
	for _, q := range ps {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

func (p *planner) syncAllow(s spec.SetSpec) {
	set := p.st.sets[s.Name]
	have := map[netip.Prefix]element{}
	for _, e := range p.st.elems[s.Name] {
		have[e.prefix] = e
	}
	var add, del []nftables.SetElement
	want := map[netip.Prefix]bool{}
	for _, e := range s.Elems {
		want[e.Prefix] = true
		if _, ok := have[e.Prefix]; !ok {
			add = append(add, e.Encode(s)...)
		}
	}
	for _, e := range p.st.elems[s.Name] {
		if !want[e.prefix] {
			del = append(del, e.raw...)
		}
	}
	if len(add)+len(del) > 0 {
		p.res.Changed = append(p.res.Changed, "elements of "+s.Name)
	}
	p.delElements(set, del)
	p.addElements(set, add)
}

// refreshSlack is how much longer than its time left a ban must be asked
// for before Apply refreshes it.
const refreshSlack = time.Second

// syncBans adds the bans of rs to a kept ban set and refreshes those
// present (delete and add in the same batch).
func (p *planner) syncBans(s spec.SetSpec) {
	set := p.st.sets[s.Name]
	set.Table = p.t
	have := map[netip.Prefix]element{}
	var havePrefixes []netip.Prefix
	for _, e := range p.st.elems[s.Name] {
		have[e.prefix] = e
		havePrefixes = append(havePrefixes, e.prefix)
	}
	var add, del []nftables.SetElement
	deleted := map[netip.Prefix]bool{}
	for _, bn := range p.wantBans(s) {
		if e, ok := have[bn.Prefix]; ok {
			if e.expires > 0 && bn.Timeout <= e.expires+refreshSlack {
				// Re-applying would not lengthen it (a ban restored from
				// the state store with the time it has left, or one
				// decided again within a second): leave the kernel alone,
				// so a steady-state run sends nothing.
				continue
			}
			p.res.Refreshed++
			if e.expires == 0 || e.expires > nearExpiry {
				del = append(del, e.raw...)
			}
			add = append(add, bn.Encode(s)...)
			continue
		}
		if s.Interval && overlapsAny(bn.Prefix, havePrefixes) {
			// An existing wider ban covers it: keep that one. Narrower
			// existing bans inside this one give way to it.
			covered := false
			for _, q := range havePrefixes {
				if q.Overlaps(bn.Prefix) && q.Bits() < bn.Prefix.Bits() {
					covered = true
				}
			}
			if covered {
				p.skipped++
				p.b.log.Info("ban already covered by a wider ban in the kernel", "ban", bn.Prefix, "set", s.Name)
				continue
			}
			for _, q := range havePrefixes {
				if q.Overlaps(bn.Prefix) && !deleted[q] {
					deleted[q] = true
					del = append(del, have[q].raw...)
				}
			}
		}
		p.res.Added++
		add = append(add, bn.Encode(s)...)
	}
	p.delElements(set, del)
	p.addElements(set, add)
}

func (p *planner) addElements(set *nftables.Set, els []nftables.SetElement) {
	p.fail(chunked(els, func(part []nftables.SetElement) error {
		p.queued++
		return p.c.SetAddElements(set, part)
	}))
}

func (p *planner) delElements(set *nftables.Set, els []nftables.SetElement) {
	p.fail(chunked(els, func(part []nftables.SetElement) error {
		p.queued++
		return p.c.SetDeleteElements(set, part)
	}))
}

// chunked calls fn on consecutive parts of els, each small enough for one
// netlink attribute; an interval's start and end stay in the same part.
func chunked(els []nftables.SetElement, fn func([]nftables.SetElement) error) error {
	for len(els) > 0 {
		n, size := 0, 0
		for n < len(els) && n < maxChunkElems && size < maxChunkBytes {
			size += elemSize(els[n])
			n++
		}
		if n < len(els) && els[n].IntervalEnd {
			n++
		}
		if err := fn(els[:n]); err != nil {
			return err
		}
		els = els[n:]
	}
	return nil
}

// elemSize estimates the netlink encoding of one element, padding included.
func elemSize(e nftables.SetElement) int {
	pad := func(n int) int { return (n + 3) &^ 3 }
	n := 4 + 4 + 4 + pad(len(e.Key))
	if e.IntervalEnd {
		n += 8
	}
	if e.Timeout != 0 {
		n += 12
	}
	if e.Comment != "" {
		n += 4 + pad(2+len(e.Comment)+1)
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
