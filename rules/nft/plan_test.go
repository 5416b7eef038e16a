package nft

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backendtest"
	"github.com/synban/synban/rules/nft/spec"
)

// The tests of this file exercise the reconcile diff without a kernel:
// observed state + Ruleset -> operations. kernelAfter plays a plan onto a
// state the way the kernel would (the kernel tests in this package check
// the real thing), so a test can set up "what Apply left" and then damage
// it or change the Ruleset.

// kernelAfter returns st after plan: a copy, with the plan's operations
// carried out. Elements get as time left their full timeout.
func kernelAfter(t *testing.T, st *state, plan *Plan, rs *rules.Ruleset) *state {
	t.Helper()
	out := emptyState()
	out.table = st.table
	for k, v := range st.sets {
		c := *v
		out.sets[k] = &c
	}
	for k, v := range st.elems {
		out.elems[k] = slices.Clone(v)
	}
	for k, v := range st.chains {
		out.chains[k] = v
	}
	out.chainOrder = slices.Clone(st.chainOrder)
	for k, v := range st.rules {
		out.rules[k] = slices.Clone(v)
	}
	for k, v := range st.anon {
		out.anon[k] = v
	}
	fam, err := spec.ParseFamily(rs.Family)
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Name: rs.Table, Family: fam}
	for _, op := range plan.Ops {
		switch op.Kind {
		case OpAddTable:
			if out.table == nil {
				out.table = tbl
			}
		case OpFlushChain:
			out.rules[op.Name] = nil
		case OpDelChain:
			delete(out.chains, op.Name)
			out.chainOrder = slices.DeleteFunc(out.chainOrder, func(n string) bool { return n == op.Name })
		case OpDelSet:
			delete(out.sets, op.Name)
			delete(out.elems, op.Name)
		case OpAddSet:
			out.sets[op.Name] = op.Set.NFT(tbl)
			out.elems[op.Name] = nil
		case OpAddChain:
			out.chains[op.Name] = op.Chain.NFT(tbl)
			out.chainOrder = append(out.chainOrder, op.Name)
		case OpAddRule:
			exprs := slices.Clone(op.Rule.Exprs())
			if op.Rule.PortLookup != nil {
				name := fmt.Sprintf("__set%d", len(out.anon))
				for i, e := range exprs {
					if e == expr.Any(op.Rule.PortLookup) {
						l := *op.Rule.PortLookup
						l.SetName = name
						exprs[i] = &l
					}
				}
				out.anon[name] = portsString(op.Rule.Ports)
			}
			out.rules[op.Name] = append(out.rules[op.Name], &nftables.Rule{Exprs: exprs, UserData: op.Rule.UserData()})
		case OpAddElements, OpDelElements:
			set := out.sets[op.Name]
			if set == nil {
				t.Fatalf("%s on missing set %s", op.Kind, op.Name)
			}
			els := decodeElements(set, op.Elements)
			if op.Kind == OpDelElements {
				for _, e := range els {
					out.elems[op.Name] = slices.DeleteFunc(out.elems[op.Name], func(k element) bool { return k.prefix == e.prefix })
				}
				continue
			}
			for i := range els {
				els[i].expires = els[i].timeout
				out.elems[op.Name] = slices.DeleteFunc(out.elems[op.Name], func(k element) bool { return k.prefix == els[i].prefix })
			}
			out.elems[op.Name] = append(out.elems[op.Name], els...)
		}
	}
	return out
}

// diffTable is the table-mode diff of rs against st.
func diffTable(t *testing.T, st *state, rs *rules.Ruleset) *Plan {
	t.Helper()
	sp, err := spec.Build(rs)
	if err != nil {
		t.Fatal(err)
	}
	d := differ{log: slog.New(slog.DiscardHandler), st: st}
	d.table(sp)
	return &d.plan
}

// applied is the state after applying rs to a kernel without the table.
func applied(t *testing.T, rs *rules.Ruleset) *state {
	t.Helper()
	return kernelAfter(t, emptyState(), diffTable(t, emptyState(), rs), rs)
}

// opsOf lists the plan's operations as "kind name [n elements]", the
// element counts summed per set and kind.
func opsOf(p *Plan) []string {
	var out []string
	for _, op := range p.Ops {
		s := op.Kind.String()
		if op.Name != "" {
			s += " " + op.Name
		}
		if op.Kind == OpAddElements || op.Kind == OpDelElements {
			s += fmt.Sprintf(" [%d]", len(op.Elements))
		}
		out = append(out, s)
	}
	return out
}

func count(p *Plan, kind OpKind, name string) (ops, elems int) {
	for _, op := range p.Ops {
		if op.Kind == kind && (name == "" || op.Name == name) {
			ops++
			elems += len(op.Elements)
		}
	}
	return ops, elems
}

func ban(p string, d time.Duration) rules.Ban {
	return rules.Ban{Prefix: netip.MustParsePrefix(p), Timeout: d, Reason: "test " + p}
}

func TestDiff(t *testing.T) {
	hour := time.Hour
	base := func(bans ...rules.Ban) *rules.Ruleset { return fullRuleset(bans...) }
	sample := backendtest.SampleBans(hour)
	type check func(t *testing.T, p *Plan)
	noElementOps := func(t *testing.T, p *Plan) {
		if n, _ := count(p, OpAddElements, ""); n != 0 {
			t.Errorf("element additions: %v", opsOf(p))
		}
		if n, _ := count(p, OpDelElements, ""); n != 0 {
			t.Errorf("element deletions: %v", opsOf(p))
		}
	}
	onlyTable := func(t *testing.T, p *Plan) {
		if want := []string{"add table"}; !slices.Equal(opsOf(p), want) {
			t.Errorf("ops = %v, want %v", opsOf(p), want)
		}
	}
	cases := []struct {
		name string
		// before is the kernel's state; nil means Apply of rs left it.
		before func(t *testing.T, rs *rules.Ruleset) *state
		rs     *rules.Ruleset
		res    rules.Result
		checks []check
	}{
		{
			name:   "fresh table",
			before: func(*testing.T, *rules.Ruleset) *state { return emptyState() },
			rs:     base(sample...),
			res:    rules.Result{Created: true, Added: 4},
			checks: []check{func(t *testing.T, p *Plan) {
				ops := opsOf(p)
				if ops[0] != "add table" {
					t.Errorf("first op %q", ops[0])
				}
				if n, _ := count(p, OpAddSet, ""); n != 12 { // with the sensor's hot_v4, hot_v6
					t.Errorf("%d sets created, want 12: %v", n, ops)
				}
				if n, _ := count(p, OpAddChain, ""); n != 2 {
					t.Errorf("%d chains created, want 2", n)
				}
				// Every set exists before a rule refers to it.
				seen := map[string]bool{}
				for _, op := range p.Ops {
					switch op.Kind {
					case OpAddSet:
						seen[op.Name] = true
					case OpAddRule:
						for _, e := range op.Rule.Exprs() {
							if l, ok := e.(*expr.Lookup); ok && !strings.HasPrefix(l.SetName, "__set") && !seen[l.SetName] {
								t.Errorf("rule refers to %s before it is created", l.SetName)
							}
						}
					}
				}
			}},
		},
		{
			name:   "steady state sends nothing",
			rs:     base(sample...),
			checks: []check{onlyTable},
		},
		{
			// The previous default (input) upgraded to prerouting: the
			// chains move in the same transaction; no set is touched, no
			// element sent; a change, not a restore.
			name: "hooks input to prerouting moves chains, keeps sets",
			before: func(t *testing.T, rs *rules.Ruleset) *state {
				old := base(sample...)
				old.Hooks = []string{rules.HookInput}
				return applied(t, old)
			},
			rs: func() *rules.Ruleset {
				rs := base(sample...)
				rs.Hooks, rs.Prerouting, rs.PreroutingPriority = nil, true, -300
				return rs
			}(),
			res: rules.Result{Changed: []string{"chain prerouting added", "chain input removed"}},
			checks: []check{noElementOps, func(t *testing.T, p *Plan) {
				for _, k := range []OpKind{OpAddSet, OpDelSet} {
					if n, _ := count(p, k, ""); n != 0 {
						t.Errorf("%s: %v", k, opsOf(p))
					}
				}
				if n, _ := count(p, OpDelChain, "input"); n != 1 {
					t.Errorf("input not deleted: %v", opsOf(p))
				}
				if n, _ := count(p, OpAddChain, "prerouting"); n != 1 {
					t.Errorf("prerouting not added: %v", opsOf(p))
				}
			}},
		},
		{
			name:   "same bans again within a second are not refreshed",
			before: func(t *testing.T, rs *rules.Ruleset) *state { return applied(t, base(sample...)) },
			rs:     base(backendtest.SampleBans(hour + time.Second)...),
			checks: []check{onlyTable},
		},
		{
			name:   "lengthened bans are refreshed: delete and add",
			before: func(t *testing.T, rs *rules.Ruleset) *state { return applied(t, base(sample...)) },
			rs:     base(backendtest.SampleBans(2 * hour)...),
			res:    rules.Result{Refreshed: 4},
			checks: []check{func(t *testing.T, p *Plan) {
				_, del := count(p, OpDelElements, "")
				_, add := count(p, OpAddElements, "")
				// Two single addresses, two intervals (start and end).
				if del != 6 || add != 6 {
					t.Errorf("deleted %d, added %d elements, want 6 and 6: %v", del, add, opsOf(p))
				}
			}},
		},
		{
			name: "a ban about to expire is re-added without a delete",
			before: func(t *testing.T, rs *rules.Ruleset) *state {
				st := applied(t, base(ban("203.0.113.7/32", hour)))
				st.elems[rules.SetBan4][0].expires = 2 * time.Second
				return st
			},
			rs:  base(ban("203.0.113.7/32", hour)),
			res: rules.Result{Refreshed: 1},
			checks: []check{func(t *testing.T, p *Plan) {
				if n, _ := count(p, OpDelElements, ""); n != 0 {
					t.Errorf("deletes a near-expiry element: %v", opsOf(p))
				}
				if _, n := count(p, OpAddElements, rules.SetBan4); n != 1 {
					t.Errorf("re-adds %d elements, want 1", n)
				}
			}},
		},
		{
			name:   "new ban is added to a kept set",
			before: func(t *testing.T, rs *rules.Ruleset) *state { return applied(t, base(sample...)) },
			rs:     base(append(slices.Clone(sample), ban("192.0.2.99/32", hour))...),
			res:    rules.Result{Added: 1},
			checks: []check{func(t *testing.T, p *Plan) {
				if want := []string{"add table", "add elements ban_v4 [1]"}; !slices.Equal(opsOf(p), want) {
					t.Errorf("ops = %v, want %v", opsOf(p), want)
				}
			}},
		},
		{
			name:   "ban covered by a wider one in the kernel is skipped",
			before: func(t *testing.T, rs *rules.Ruleset) *state { return applied(t, base(ban("198.51.100.0/24", hour))) },
			rs:     base(ban("198.51.100.0/25", 2*hour)),
			checks: []check{noElementOps, func(t *testing.T, p *Plan) {
				if p.Skipped != 1 {
					t.Errorf("skipped %d, want 1", p.Skipped)
				}
			}},
		},
		{
			name:   "wider ban replaces the narrower ones in the kernel",
			before: func(t *testing.T, rs *rules.Ruleset) *state { return applied(t, base(ban("198.51.100.0/25", hour))) },
			rs:     base(ban("198.51.100.0/24", hour)),
			res:    rules.Result{Added: 1},
			checks: []check{func(t *testing.T, p *Plan) {
				want := []string{"add table", "delete elements ban_net_v4 [2]", "add elements ban_net_v4 [2]"}
				if !slices.Equal(opsOf(p), want) {
					t.Errorf("ops = %v, want %v", opsOf(p), want)
				}
			}},
		},
		{
			name:   "overlapping bans of one ruleset: the widest is kept",
			before: func(*testing.T, *rules.Ruleset) *state { return emptyState() },
			rs:     base(ban("198.51.100.0/25", hour), ban("198.51.100.0/24", hour)),
			res:    rules.Result{Created: true, Added: 1},
			checks: []check{func(t *testing.T, p *Plan) {
				if p.Skipped != 1 {
					t.Errorf("skipped %d, want 1", p.Skipped)
				}
				for _, op := range p.Ops {
					if op.Kind == OpAddElements && op.Name == rules.SetBanNet4 {
						if got := decodeElements(&nftables.Set{Interval: true}, op.Elements); len(got) != 1 || got[0].prefix.Bits() != 24 {
							t.Errorf("ban_net_v4 gets %+v, want the /24", got)
						}
					}
				}
			}},
		},
		{
			name: "allow sets are synced to the ruleset",
			before: func(t *testing.T, rs *rules.Ruleset) *state {
				old := base(sample...)
				old.Allow = append(old.Allow, netip.MustParsePrefix("192.0.2.0/24"))
				return applied(t, old)
			},
			rs:  base(sample...),
			res: rules.Result{Changed: []string{"elements of " + rules.SetAllow4}},
			checks: []check{func(t *testing.T, p *Plan) {
				want := []string{"add table", "delete elements allow_v4 [2]"}
				if !slices.Equal(opsOf(p), want) {
					t.Errorf("ops = %v, want %v", opsOf(p), want)
				}
			}},
		},
		{
			name: "allow entry added",
			before: func(t *testing.T, rs *rules.Ruleset) *state {
				return applied(t, base(sample...))
			},
			rs: func() *rules.Ruleset {
				rs := base(sample...)
				rs.Allow = append(rs.Allow, netip.MustParsePrefix("2001:db8:aa::/48"))
				return rs
			}(),
			res: rules.Result{Changed: []string{"elements of " + rules.SetAllow6}},
			checks: []check{func(t *testing.T, p *Plan) {
				if want := []string{"add table", "add elements allow_v6 [2]"}; !slices.Equal(opsOf(p), want) {
					t.Errorf("ops = %v, want %v", opsOf(p), want)
				}
			}},
		},
		{
			name: "ban set size changed: recreated, bans carried over",
			before: func(t *testing.T, rs *rules.Ruleset) *state {
				return applied(t, base(append(slices.Clone(sample), ban("192.0.2.50/32", hour))...))
			},
			rs: func() *rules.Ruleset {
				rs := base(sample...)
				rs.MaxEntries = 8192
				return rs
			}(),
			res: rules.Result{Refreshed: 4, Changed: []string{"set ban_v4", "set ban_net_v4", "set ban_v6", "set ban_net_v6", "chain input", "chain forward"}},
			checks: []check{func(t *testing.T, p *Plan) {
				// 203.0.113.7 and the carried-over 192.0.2.50.
				if _, n := count(p, OpAddElements, rules.SetBan4); n != 2 {
					t.Errorf("ban_v4 refilled with %d elements, want 2 (one carried over): %v", n, opsOf(p))
				}
				if n, _ := count(p, OpDelSet, ""); n != 4 {
					t.Errorf("%d sets deleted, want 4", n)
				}
				// Rules referencing the sets go first.
				first := slices.IndexFunc(p.Ops, func(o Op) bool { return o.Kind == OpDelSet })
				if last := slices.IndexFunc(p.Ops, func(o Op) bool { return o.Kind == OpFlushChain }); last < 0 || last > first {
					t.Errorf("chains not flushed before the sets go: %v", opsOf(p))
				}
			}},
		},
		{
			name: "ban sets without the counter flag are upgraded",
			before: func(t *testing.T, rs *rules.Ruleset) *state {
				st := applied(t, base(sample...))
				for _, n := range banSets {
					st.sets[n].Counter = false
				}
				return st
			},
			rs:  base(sample...),
			res: rules.Result{Refreshed: 4, Changed: []string{"set ban_v4", "set ban_net_v4", "set ban_v6", "set ban_net_v6", "chain input", "chain forward"}},
			checks: []check{func(t *testing.T, p *Plan) {
				for _, op := range p.Ops {
					if op.Kind == OpAddSet && !op.Set.Counter {
						t.Errorf("set %s recreated without the counter flag", op.Name)
					}
				}
			}},
		},
		{
			name: "meter rate changed: chain rules replaced, sets kept",
			// Both chains carry the meter (rules.Ruleset.BaseChains).
			rs: func() *rules.Ruleset {
				rs := base(sample...)
				rs.Meter.Rate = 30
				return rs
			}(),
			before: func(t *testing.T, rs *rules.Ruleset) *state { return applied(t, base(sample...)) },
			res:    rules.Result{Changed: []string{"chain input", "chain forward"}},
			checks: []check{noElementOps, func(t *testing.T, p *Plan) {
				if n, _ := count(p, OpAddSet, ""); n != 0 {
					t.Errorf("sets recreated: %v", opsOf(p))
				}
			}},
		},
		{
			name: "chain priority changed: chain recreated",
			before: func(t *testing.T, rs *rules.Ruleset) *state {
				return applied(t, base(sample...))
			},
			rs: func() *rules.Ruleset {
				rs := base(sample...)
				rs.Priority = 5
				return rs
			}(),
			res: rules.Result{Changed: []string{"chain input", "chain forward"}},
			checks: []check{noElementOps, func(t *testing.T, p *Plan) {
				if n, _ := count(p, OpDelChain, ""); n != 2 {
					t.Errorf("%d chains deleted, want 2: %v", n, opsOf(p))
				}
			}},
		},
		{
			name: "outside damage: table gone",
			before: func(*testing.T, *rules.Ruleset) *state {
				return emptyState()
			},
			rs:  base(sample...),
			res: rules.Result{Created: true, Added: 4},
		},
		{
			name: "outside damage: chain flushed",
			before: func(t *testing.T, rs *rules.Ruleset) *state {
				st := applied(t, rs)
				st.rules["input"] = nil
				return st
			},
			rs:  base(sample...),
			res: rules.Result{Changed: []string{"chain input"}},
			checks: []check{noElementOps, func(t *testing.T, p *Plan) {
				if n, _ := count(p, OpAddRule, "input"); n != 10 {
					t.Errorf("%d rules re-added to input, want 10: %v", n, opsOf(p))
				}
			}},
		},
		{
			name: "outside damage: ban set emptied",
			before: func(t *testing.T, rs *rules.Ruleset) *state {
				st := applied(t, rs)
				st.elems[rules.SetBanNet6] = nil
				return st
			},
			rs:  base(sample...),
			res: rules.Result{Added: 1},
			checks: []check{func(t *testing.T, p *Plan) {
				if want := []string{"add table", "add elements ban_net_v6 [2]"}; !slices.Equal(opsOf(p), want) {
					t.Errorf("ops = %v, want %v", opsOf(p), want)
				}
			}},
		},
		{
			name: "reloaded from the include file: sets empty, restore counts as created",
			before: func(t *testing.T, rs *rules.Ruleset) *state {
				st := applied(t, rs)
				for n := range st.elems {
					st.elems[n] = nil
				}
				return st
			},
			rs:  base(sample...),
			res: rules.Result{Created: true, Added: 4, Changed: []string{"elements of allow_v4", "elements of allow_v6"}},
		},
		{
			name: "foreign set and chain in synban's table are removed",
			before: func(t *testing.T, rs *rules.Ruleset) *state {
				st := applied(t, rs)
				st.sets["stray"] = &nftables.Set{Name: "stray", KeyType: nftables.TypeIPAddr}
				st.chains["stray"] = &nftables.Chain{Name: "stray"}
				st.chainOrder = append(st.chainOrder, "stray")
				return st
			},
			rs:  base(sample...),
			res: rules.Result{Changed: []string{"set stray removed", "chain input", "chain forward", "chain stray removed"}},
			checks: []check{func(t *testing.T, p *Plan) {
				ops := opsOf(p)
				if !slices.Contains(ops, "delete set stray") || !slices.Contains(ops, "delete chain stray") {
					t.Errorf("ops = %v", ops)
				}
			}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var st *state
			if tc.before != nil {
				st = tc.before(t, tc.rs)
			} else {
				st = applied(t, tc.rs)
			}
			p := diffTable(t, st, tc.rs)
			if fmt.Sprint(p.Result) != fmt.Sprint(tc.res) {
				t.Errorf("Result = %+v, want %+v\nops: %v", p.Result, tc.res, opsOf(p))
			}
			for _, c := range tc.checks {
				c(t, p)
			}
			// Whatever the start, the plan converges: diffing again after it
			// sends nothing.
			after := kernelAfter(t, st, p, tc.rs)
			if again := diffTable(t, after, tc.rs); !slices.Equal(opsOf(again), []string{"add table"}) {
				t.Errorf("not converged; second plan: %v", opsOf(again))
			}
		})
	}
}

// TestDiffChunks: element messages stay at most 1000 elements, an
// interval's start and end in the same message, and none is lost.
func TestDiffChunks(t *testing.T) {
	var bans []rules.Ban
	for i := 0; i < 2500; i++ {
		bans = append(bans, ban(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String()+"/32", time.Hour))
	}
	for i := 0; i < 1500; i++ {
		bans = append(bans, ban(netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, byte(i >> 8), byte(i)}).String()+"/48", time.Hour))
	}
	rs := fullRuleset(bans...)
	rs.MaxEntries = 65536
	p := diffTable(t, emptyState(), rs)
	per := map[string]int{}
	msgs := map[string]int{}
	for _, op := range p.Ops {
		if op.Kind != OpAddElements {
			continue
		}
		if len(op.Elements) > maxChunkElems {
			t.Errorf("%s: message of %d elements", op.Name, len(op.Elements))
		}
		if op.Elements[0].IntervalEnd {
			t.Errorf("%s: message starts with an interval end", op.Name)
		}
		per[op.Name] += len(op.Elements)
		msgs[op.Name]++
	}
	if per[rules.SetBan4] != 2500 || msgs[rules.SetBan4] != 3 {
		t.Errorf("ban_v4: %d elements in %d messages, want 2500 in 3", per[rules.SetBan4], msgs[rules.SetBan4])
	}
	if per[rules.SetBanNet6] != 3000 || msgs[rules.SetBanNet6] < 3 {
		t.Errorf("ban_net_v6: %d elements in %d messages, want 3000 in >= 3", per[rules.SetBanNet6], msgs[rules.SetBanNet6])
	}
	if p.Result.Added != 4000 {
		t.Errorf("Added %d, want 4000", p.Result.Added)
	}
}

// TestDiffSetsMode: in the operator's table only the elements of synban's
// sets change; their other chains and sets are not touched.
func TestDiffSetsMode(t *testing.T) {
	rs := fullRuleset(backendtest.SampleBans(time.Hour)...)
	rs.Mode, rs.Table = rules.ModeSets, "filter"
	sp, err := spec.Build(rs)
	if err != nil {
		t.Fatal(err)
	}
	st := emptyState()
	st.table = &nftables.Table{Name: "filter", Family: nftables.TableFamilyINet}
	for _, s := range sp.Filled() {
		st.sets[s.Name] = s.NFT(st.table)
	}
	st.sets["operators"] = &nftables.Set{Name: "operators", KeyType: nftables.TypeIPAddr}
	st.chains["input"] = &nftables.Chain{Name: "input"}
	st.chainOrder = []string{"input"}
	diff := func(st *state) *Plan {
		d := differ{log: slog.New(slog.DiscardHandler), st: st}
		d.plan.Result.Created = d.reloaded(sp.Filled())
		d.sets(sp.Filled())
		return &d.plan
	}
	p := diff(st)
	for _, op := range p.Ops {
		if op.Kind != OpAddElements && op.Kind != OpDelElements {
			t.Errorf("sets mode plans %s %s", op.Kind, op.Name)
		}
	}
	if !p.Result.Created || p.Result.Added != 4 {
		t.Errorf("Result = %+v, want refilled with 4 bans", p.Result)
	}
	after := kernelAfter(t, st, p, rs)
	if again := diff(after); len(again.Ops) != 0 || again.Result.Created {
		t.Errorf("second plan: %v %+v", opsOf(again), again.Result)
	}
	if after.sets["operators"] == nil || len(after.chainOrder) != 1 {
		t.Error("the operator's objects changed")
	}
}

// TestFreshPlanSetsMode: FreshPlan in sets mode fills the sets and
// creates nothing.
func TestFreshPlanSetsMode(t *testing.T) {
	rs := fullRuleset(backendtest.SampleBans(time.Hour)...)
	rs.Mode, rs.Table = rules.ModeSets, "filter"
	p, err := FreshPlan(rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range p.Ops {
		if op.Kind != OpAddElements {
			t.Errorf("sets mode fresh plan has %s %s", op.Kind, op.Name)
		}
	}
	if p.Result.Added != 4 {
		t.Errorf("Added = %d, want 4", p.Result.Added)
	}
}
