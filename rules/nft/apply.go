package nft

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/nft/spec"
)

// Apply reconciles synban's table with rs in one transaction; see the
// package documentation. rs must name the backend's table, family and mode
// (else ErrOtherTarget): the target is fixed when the backend is built. If
// an element expired between the read and the commit (the kernel then
// rejects the whole batch), it reads again and retries once.
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
	if rs.Table != b.table || rs.Family != b.family || targetMode(rs.Mode) != b.mode {
		return rules.Result{}, fmt.Errorf("nftables apply: %w: the ruleset is for %s table %s %s, the backend for %s table %s %s",
			ErrOtherTarget, targetMode(rs.Mode), rs.Family, rs.Table, b.mode, b.family, b.table)
	}
	apply := b.applyOnce
	if rs.SetsMode() {
		apply = b.applySets
	}
	return b.trackGeneration(ctx, func() (rules.Result, bool, error) {
		sent := false
		res, err := apply(ctx, rs, fam, &sent)
		if err != nil && errors.Is(err, syscall.ENOENT) {
			b.log.Warn("apply failed on a vanished object, retrying once", "err", err)
			res, err = apply(ctx, rs, fam, &sent)
		}
		return res, sent, err
	})
}

// applyOnce reconciles synban's own table; it sets *sent when it sends a
// transaction.
func (b *Backend) applyOnce(ctx context.Context, rs *rules.Ruleset, fam nftables.TableFamily, sent *bool) (rules.Result, error) {
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
	var elemSets []string
	for _, s := range sp.Filled() {
		elemSets = append(elemSets, s.Name)
	}
	st, err := readState(ctx, c, rs.Table, fam, elemSets)
	if err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: read table %s: %w", rs.Table, err)
	}
	if err := b.fillSetCounters(st); err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: read set flags of table %s: %w", rs.Table, err)
	}
	d := differ{log: b.log, st: st}
	d.table(sp)
	plan := &d.plan
	t := &nftables.Table{Name: rs.Table, Family: fam}
	if err := execute(c, t, st, plan); err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: build transaction: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: %w", err)
	}
	*sent = *sent || len(plan.Ops) > 0
	if err := c.Flush(); err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply: transaction (%s) failed: %w; %s", plan.summary(), err, b.describe(ctx, rs, fam))
	}
	b.log.Info("applied", "table", rs.Table, "created", plan.Result.Created, "changed", plan.Result.Changed,
		"added", plan.Result.Added, "refreshed", plan.Result.Refreshed, "skipped", plan.Skipped, "took", time.Since(start))
	return plan.Result, nil
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

// execute queues the operations of plan on c, in order, as one
// transaction in table t (Flush commits it). st is the state the plan was
// made from: operations on existing sets and chains use its objects.
func execute(c *nftables.Conn, t *nftables.Table, st *state, plan *Plan) error {
	sets := map[string]*nftables.Set{}
	for name, s := range st.sets {
		s.Table = t
		sets[name] = s
	}
	for _, op := range plan.Ops {
		if err := executeOp(c, t, st, sets, op); err != nil {
			return fmt.Errorf("%s %s: %w", op.Kind, op.Name, err)
		}
	}
	return nil
}

func executeOp(c *nftables.Conn, t *nftables.Table, st *state, sets map[string]*nftables.Set, op Op) error {
	switch op.Kind {
	case OpAddTable:
		c.AddTable(t)
	case OpFlushChain:
		c.FlushChain(st.chains[op.Name])
	case OpDelChain:
		c.DelChain(st.chains[op.Name])
	case OpDelSet:
		c.DelSet(st.sets[op.Name])
	case OpAddSet:
		set := op.Set.NFT(t)
		if err := c.AddSet(set, nil); err != nil {
			return err
		}
		sets[op.Name] = set
	case OpAddChain:
		c.AddChain(op.Chain.NFT(t))
	case OpAddRule:
		return addRule(c, t, op.Name, op.Rule)
	case OpAddElements, OpDelElements:
		set := sets[op.Name]
		if set == nil {
			return errors.New("no such set")
		}
		if op.Kind == OpDelElements {
			return c.SetDeleteElements(set, op.Elements)
		}
		return c.SetAddElements(set, op.Elements)
	default:
		return fmt.Errorf("unknown operation %d", op.Kind)
	}
	return nil
}

// addRule appends r to chain in table t, first creating the anonymous set
// of its ports when it matches several.
func addRule(c *nftables.Conn, t *nftables.Table, chain string, r spec.RuleSpec) error {
	if r.PortLookup != nil {
		s := &nftables.Set{
			Table: t, Anonymous: true, Constant: true,
			KeyType: nftables.TypeInetService, KeyByteOrder: binaryutil.BigEndian,
		}
		els := make([]nftables.SetElement, len(r.Ports))
		for i, port := range r.Ports {
			els[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(port)}
		}
		if err := c.AddSet(s, els); err != nil {
			return fmt.Errorf("anonymous port set for rule %s: %w", r.Comment, err)
		}
		r.PortLookup.SetName = s.Name
		r.PortLookup.SetID = s.ID
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: &nftables.Chain{Name: chain, Table: t}, Exprs: r.Exprs(), UserData: r.UserData()})
	return nil
}
