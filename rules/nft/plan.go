package nft

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"

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

// refreshSlack is how much longer than its time left a ban must be asked
// for before Apply refreshes it.
const refreshSlack = time.Second

// OpKind is what one operation of a transaction does.
type OpKind int

// The operations of a reconcile, in the netlink calls they stand for.
const (
	OpAddTable    OpKind = iota // AddTable (makes sure synban's table exists)
	OpFlushChain                // FlushChain of the kernel's chain Name
	OpDelChain                  // DelChain of the kernel's chain Name
	OpDelSet                    // DelSet of the kernel's set Name
	OpAddSet                    // AddSet of Set
	OpAddChain                  // AddChain of Chain
	OpAddRule                   // AddRule of Rule to chain Name
	OpAddElements               // SetAddElements of Elements to set Name
	OpDelElements               // SetDeleteElements of Elements from set Name
)

var opNames = [...]string{"add table", "flush chain", "delete chain", "delete set", "add set", "add chain", "add rule", "add elements", "delete elements"}

func (k OpKind) String() string {
	if int(k) < len(opNames) {
		return opNames[k]
	}
	return fmt.Sprintf("op %d", int(k))
}

// Op is one operation of a reconcile: a plain value that the executor
// turns into one call on the netlink connection.
type Op struct {
	Kind OpKind
	// Name is the set or chain operated on.
	Name string
	// Set is the set to create (OpAddSet).
	Set spec.SetSpec
	// Chain is the chain to create (OpAddChain).
	Chain spec.ChainSpec
	// Rule is the rule to append to chain Name (OpAddRule).
	Rule spec.RuleSpec
	// Elements are the kernel elements to add or delete, at most
	// maxChunkElems (and maxChunkBytes) in one operation; an interval's
	// start and end stay together.
	Elements []nftables.SetElement
}

// Plan is the outcome of a reconcile's diff: the operations of one
// transaction, in order, and what they change.
type Plan struct {
	Ops    []Op
	Result rules.Result
	// Skipped counts bans left out: inside a wider ban of the same
	// ruleset, or already covered by a wider ban in the kernel.
	Skipped int
}

// elementOps counts the element messages of p.
func (p *Plan) elementOps() int {
	n := 0
	for _, op := range p.Ops {
		if op.Kind == OpAddElements || op.Kind == OpDelElements {
			n++
		}
	}
	return n
}

func (p *Plan) summary() string {
	return fmt.Sprintf("created=%v changed=%v add=%d refresh=%d element-messages=%d",
		p.Result.Created, p.Result.Changed, p.Result.Added, p.Result.Refreshed, p.elementOps())
}

// FreshPlan is the plan Apply carries out on a kernel where synban's table
// does not exist (in sets mode: where the operator's table holds synban's
// sets, empty): the whole Spec of rs, as it is sent.
func FreshPlan(rs *rules.Ruleset) (*Plan, error) {
	sp, err := spec.Build(rs)
	if err != nil {
		return nil, err
	}
	st := emptyState()
	d := differ{log: slog.New(slog.DiscardHandler), st: st}
	if rs.SetsMode() {
		st.table = &nftables.Table{Name: rs.Table, Family: sp.Fam}
		for _, s := range sp.Filled() {
			st.sets[s.Name] = s.NFT(st.table)
		}
		d.sets(sp.Filled())
		return &d.plan, nil
	}
	d.table(sp)
	return &d.plan, nil
}

// differ computes a Plan from the observed state st: pure, no kernel.
type differ struct {
	log  *slog.Logger
	st   *state
	plan Plan
}

func (d *differ) add(op Op) { d.plan.Ops = append(d.plan.Ops, op) }

func (d *differ) changed(what string) {
	d.plan.Result.Changed = append(d.plan.Result.Changed, what)
}

// table diffs synban's whole table against sp: sets are kept, created,
// recreated (definition changed; ban sets carry their elements over) or
// dropped; chains kept, refilled or recreated; elements of kept sets
// synced.
func (d *differ) table(sp *spec.Spec) {
	if d.st.table == nil || d.reloaded(sp.Sets) {
		d.plan.Result.Created = true
	}
	d.add(Op{Kind: OpAddTable})
	create, recreate, drop := d.diffSets(sp.Sets)
	// Chains first: their rule flushes and deletes go before the set
	// deletes, so sets they reference can go.
	chains := d.diffChains(sp.Chains, len(recreate)+len(drop) > 0)
	for _, name := range drop {
		d.add(Op{Kind: OpDelSet, Name: name})
	}
	for _, s := range recreate {
		d.add(Op{Kind: OpDelSet, Name: s.Name})
	}
	for _, s := range create {
		d.newSet(s, nil)
	}
	for _, s := range recreate {
		d.newSet(s, d.st.elems[s.Name])
	}
	for _, cp := range chains {
		if cp.add {
			d.add(Op{Kind: OpAddChain, Name: cp.Name(), Chain: cp.ChainSpec})
		}
		if cp.refill {
			for _, r := range cp.Rules {
				d.add(Op{Kind: OpAddRule, Name: cp.Name(), Rule: r})
			}
		}
	}
	isNew := map[string]bool{}
	for _, s := range append(slices.Clone(create), recreate...) {
		isNew[s.Name] = true
	}
	var kept []spec.SetSpec
	for _, s := range sp.Sets {
		if !isNew[s.Name] {
			kept = append(kept, s)
		}
	}
	d.sets(kept)
}

// diffSets sorts the wanted sets into those to create and to recreate, and
// names the kernel's sets to drop.
func (d *differ) diffSets(want []spec.SetSpec) (create, recreate []spec.SetSpec, drop []string) {
	wanted := map[string]bool{}
	for _, s := range want {
		wanted[s.Name] = true
		switch k := d.st.sets[s.Name]; {
		case k == nil:
			create = append(create, s)
			d.plan.Result.Created = true
		case !s.Same(k):
			recreate = append(recreate, s)
			d.changed("set " + s.Name)
			d.log.Info("set definition changed, recreating", "set", s.Describe())
		}
	}
	for _, name := range sortedKeys(d.st.sets) {
		if k := d.st.sets[name]; !k.Anonymous && !wanted[name] {
			drop = append(drop, name)
			d.changed("set " + name + " removed")
		}
	}
	return create, recreate, drop
}

// chainPlan says what becomes of one wanted chain.
type chainPlan struct {
	spec.ChainSpec
	// add creates the chain; refill adds its rules.
	add, refill bool
}

// diffChains queues the flushes and deletes of chains that differ or are
// no longer wanted, and says per wanted chain whether to create it and
// whether to (re)add its rules. setsChanging forces a refill: a set that
// goes must first lose the rules referencing it.
func (d *differ) diffChains(want []spec.ChainSpec, setsChanging bool) []chainPlan {
	var out []chainPlan
	seen := map[string]bool{}
	// moving: the kernel's table has a chain no longer wanted (the policy
	// changed hooks, e.g. input to prerouting). A wanted chain it lacks is
	// then a change, made in the same transaction as the removal, not a
	// restore after an outside flush.
	moving := slices.ContainsFunc(d.st.chainOrder, func(name string) bool {
		return !slices.ContainsFunc(want, func(cs spec.ChainSpec) bool { return cs.Name() == name })
	})
	for _, cs := range want {
		h := cs.Name()
		if seen[h] {
			continue
		}
		seen[h] = true
		cp := chainPlan{ChainSpec: cs}
		switch k := d.st.chains[h]; {
		case k == nil && moving:
			cp.add, cp.refill = true, true
			d.changed("chain " + h + " added")
		case k == nil:
			cp.add, cp.refill = true, true
			d.plan.Result.Created = true
		case !sameChain(k, cs.NFT(nil)):
			d.add(Op{Kind: OpFlushChain, Name: h})
			d.add(Op{Kind: OpDelChain, Name: h})
			cp.add, cp.refill = true, true
			d.changed("chain " + h)
		case setsChanging || !d.sameRules(h, cs.Rules):
			d.add(Op{Kind: OpFlushChain, Name: h})
			cp.refill = true
			d.changed("chain " + h)
		}
		out = append(out, cp)
	}
	for _, name := range d.st.chainOrder {
		if !seen[name] {
			d.add(Op{Kind: OpFlushChain, Name: name})
			d.add(Op{Kind: OpDelChain, Name: name})
			d.changed("chain " + name + " removed")
		}
	}
	return out
}

// sets syncs the elements of sets that exist in the kernel: allow sets
// are made equal to the Spec, ban sets gain or refresh the Spec's bans.
// Sets mode is exactly this, on the operator's table.
func (d *differ) sets(kept []spec.SetSpec) {
	for _, s := range kept {
		switch s.Kind {
		case spec.KindAllow:
			d.syncAllow(s)
		case spec.KindBan:
			d.syncBans(s)
		}
	}
}

// reloaded reports whether synban's sets exist but were found without
// their elements: every allow set that the Spec fills is empty. synban's
// allow sets always hold loopback after an Apply, so empty ones mean the
// structure was loaded from outside (the file of `synban render
// nft-include`, by `nft -f` or `systemctl restart nftables`) and the bans
// are being restored.
func (d *differ) reloaded(specs []spec.SetSpec) bool {
	found := false
	for _, s := range specs {
		if s.Kind != spec.KindAllow || len(s.Elems) == 0 || d.st.sets[s.Name] == nil {
			continue
		}
		if len(d.st.elems[s.Name]) > 0 {
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

func (d *differ) sameRules(chain string, want []spec.RuleSpec) bool {
	have := d.st.rules[chain]
	if len(have) != len(want) {
		return false
	}
	anon := func(name string) string { return d.st.anon[name] }
	for i, r := range have {
		if got := fingerprint(r.Exprs, r.UserData, anon); got != ruleFingerprint(want[i]) {
			d.log.Debug("rule differs", "chain", chain, "index", i, "have", got, "want", ruleFingerprint(want[i]))
			return false
		}
	}
	return true
}

// newSet queues the creation of s with its elements: for a ban set, the
// bans of the Spec plus the old elements (carried over with the time they
// had left) that the Spec does not mention.
func (d *differ) newSet(s spec.SetSpec, old []element) {
	d.add(Op{Kind: OpAddSet, Name: s.Name, Set: s})
	var els []nftables.SetElement
	var keys spec.Keys
	switch s.Kind {
	case spec.KindAllow:
		els = make([]nftables.SetElement, 0, s.EncodedLen(len(s.Elems)))
		for _, e := range s.Elems {
			els = keys.AppendEncode(els, s, e.Prefix, e.Timeout, e.Comment)
		}
	case spec.KindBan:
		want := d.wantBans(s)
		// Sized once for the bans and the old elements carried over: a
		// restore of 100,000 bans otherwise regrows (and copies) this
		// slice about twenty times.
		els = make([]nftables.SetElement, 0, s.EncodedLen(len(want)+len(old)))
		if len(old) == 0 {
			// A set created afresh (the first run, a restore): every ban
			// is added, there is nothing to carry over.
			d.plan.Result.Added += len(want)
			for _, bn := range want {
				els = keys.AppendEncode(els, s, bn.Prefix, bn.Timeout, bn.Comment)
			}
			break
		}
		oldBy := make(map[netip.Prefix]element, len(old))
		for _, e := range old {
			oldBy[e.prefix] = e
		}
		var kept []netip.Prefix
		for _, bn := range want {
			if _, ok := oldBy[bn.Prefix]; ok {
				d.plan.Result.Refreshed++
				delete(oldBy, bn.Prefix)
			} else {
				d.plan.Result.Added++
			}
			if s.Interval {
				kept = append(kept, bn.Prefix)
			}
			els = keys.AppendEncode(els, s, bn.Prefix, bn.Timeout, bn.Comment)
		}
		for _, e := range old {
			if _, ok := oldBy[e.prefix]; !ok || (s.Interval && overlapsAny(e.prefix, kept)) {
				continue
			}
			els = keys.AppendEncode(els, s, e.prefix, e.expires, e.comment)
		}
	}
	d.elements(OpAddElements, s.Name, els)
}

// wantBans returns the bans of the Spec for set s, in its order; in an
// interval set, bans inside another one (the widest wins) are left out:
// the kernel rejects overlaps.
func (d *differ) wantBans(s spec.SetSpec) []spec.Element {
	if !s.Interval {
		return s.Elems
	}
	byLen := slices.Clone(s.Elems)
	slices.SortStableFunc(byLen, func(a, b spec.Element) int { return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()) })
	var kept []netip.Prefix
	left := map[netip.Prefix]bool{}
	for _, bn := range byLen {
		if overlapsAny(bn.Prefix, kept) {
			d.plan.Skipped++
			left[bn.Prefix] = true
			d.log.Warn("ban overlaps another ban of the same ruleset, left out", "ban", bn.Prefix)
			continue
		}
		kept = append(kept, bn.Prefix)
	}
	var out []spec.Element
	for _, bn := range s.Elems {
		if !left[bn.Prefix] {
			out = append(out, bn)
		}
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

// syncAllow makes the kernel's allow set s hold exactly the Spec's entries.
func (d *differ) syncAllow(s spec.SetSpec) {
	have := map[netip.Prefix]bool{}
	for _, e := range d.st.elems[s.Name] {
		have[e.prefix] = true
	}
	var add, del []nftables.SetElement
	want := map[netip.Prefix]bool{}
	for _, e := range s.Elems {
		want[e.Prefix] = true
		if !have[e.Prefix] {
			add = append(add, e.Encode(s)...)
		}
	}
	for _, e := range d.st.elems[s.Name] {
		if !want[e.prefix] {
			del = append(del, e.raw...)
		}
	}
	if len(add)+len(del) > 0 {
		d.changed("elements of " + s.Name)
	}
	d.elements(OpDelElements, s.Name, del)
	d.elements(OpAddElements, s.Name, add)
}

// syncBans adds the Spec's bans to a kept ban set and refreshes those
// present that it lengthens (delete and add in the same batch).
func (d *differ) syncBans(s spec.SetSpec) {
	have := map[netip.Prefix]element{}
	var havePrefixes []netip.Prefix
	for _, e := range d.st.elems[s.Name] {
		have[e.prefix] = e
		havePrefixes = append(havePrefixes, e.prefix)
	}
	var add, del []nftables.SetElement
	var keys spec.Keys // one block for many keys, not one allocation each
	deleted := map[netip.Prefix]bool{}
	for _, bn := range d.wantBans(s) {
		if e, ok := have[bn.Prefix]; ok {
			if e.expires > 0 && bn.Timeout <= e.expires+refreshSlack {
				// Re-applying would not lengthen it (a ban restored from
				// the state store with the time it has left, or one
				// decided again within a second): leave the kernel alone,
				// so a steady-state run sends nothing.
				continue
			}
			d.plan.Result.Refreshed++
			if e.expires == 0 || e.expires > nearExpiry {
				del = append(del, e.raw...)
			}
			add = keys.AppendEncode(add, s, bn.Prefix, bn.Timeout, bn.Comment)
			continue
		}
		if s.Interval && overlapsAny(bn.Prefix, havePrefixes) {
			if d.coveredInKernel(bn.Prefix, havePrefixes) {
				d.plan.Skipped++
				d.log.Info("ban already covered by a wider ban in the kernel", "ban", bn.Prefix, "set", s.Name)
				continue
			}
			// Narrower existing bans inside this one give way to it.
			for _, q := range havePrefixes {
				if q.Overlaps(bn.Prefix) && !deleted[q] {
					deleted[q] = true
					del = append(del, have[q].raw...)
				}
			}
		}
		d.plan.Result.Added++
		add = keys.AppendEncode(add, s, bn.Prefix, bn.Timeout, bn.Comment)
	}
	d.elements(OpDelElements, s.Name, del)
	d.elements(OpAddElements, s.Name, add)
}

// coveredInKernel reports whether a wider ban than p is in have.
func (d *differ) coveredInKernel(p netip.Prefix, have []netip.Prefix) bool {
	for _, q := range have {
		if q.Overlaps(p) && q.Bits() < p.Bits() {
			return true
		}
	}
	return false
}

// elements queues els for set name as operations of kind, chunked.
func (d *differ) elements(kind OpKind, name string, els []nftables.SetElement) {
	for _, part := range chunks(els) {
		d.add(Op{Kind: kind, Name: name, Elements: part})
	}
}

// chunks splits els into consecutive parts, each small enough for one
// netlink attribute; an interval's start and end stay in the same part.
func chunks(els []nftables.SetElement) [][]nftables.SetElement {
	var out [][]nftables.SetElement
	for len(els) > 0 {
		n, size := 0, 0
		for n < len(els) && n < maxChunkElems && size < maxChunkBytes {
			size += elemSize(els[n])
			n++
		}
		if n < len(els) && els[n].IntervalEnd {
			n++
		}
		out = append(out, els[:n])
		els = els[n:]
	}
	return out
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
