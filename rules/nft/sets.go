package nft

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/nft/spec"
)

// managedSets are the sets synban fills in sets mode: the allow and ban sets.
var managedSets = []string{rules.SetAllow4, rules.SetAllow6, rules.SetBan4, rules.SetBanNet4, rules.SetBan6, rules.SetBanNet6}

// IncludeHint tells an operator how to create the sets synban needs in
// sets mode; it ends the errors about missing or unfit sets.
const IncludeHint = "run `synban render nft-include -c POLICY > /etc/nftables.d/synban.nft`, " +
	"include that file from /etc/nftables.conf and load it (nft -f /etc/nftables.conf)"

// ErrSetsMissing is returned (wrapped) by Apply in sets mode when the
// operator's table or one of synban's sets in it is missing or unfit.
var ErrSetsMissing = errors.New("synban's sets are missing from the operator's table")

// fits says why the kernel's set k cannot hold the elements of s, or "".
// Size and default timeout are the operator's choice.
func fits(s spec.SetSpec, k *nftables.Set) string {
	kt := s.KeyType()
	switch {
	case k.Anonymous || k.Constant || k.IsMap || k.Concatenation:
		return "is not a plain set (constant, map or concatenation)"
	case k.KeyType.Name != kt.Name || k.KeyType.Bytes != kt.Bytes:
		return fmt.Sprintf("has type %s, want %s", k.KeyType.Name, kt.Name)
	case k.Interval != s.Interval:
		if s.Interval {
			return "lacks flags interval"
		}
		return "has flags interval, which it must not"
	case s.Timeout && !k.HasTimeout:
		return "lacks flags timeout"
	}
	return ""
}

// applySets is Apply in sets mode: in one transaction it reconciles the
// allow sets and adds or refreshes the bans in the ban sets of the
// operator's table rs.Table. It creates, changes or deletes no table, chain
// or set; a missing or unfit set is an error naming it, with IncludeHint.
// Result.Created is true when the allow sets were found empty (the sets
// were just loaded from the include file, see differ.reloaded).
func (b *Backend) applySets(ctx context.Context, rs *rules.Ruleset, fam nftables.TableFamily, sent *bool) (rules.Result, error) {
	start := time.Now()
	c, done, err := b.conn()
	if err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply (sets mode): %w", err)
	}
	defer done()
	sp, err := spec.Build(rs)
	if err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply (sets mode): %w", err)
	}
	specs := sp.Filled()
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	st, err := readState(ctx, c, rs.Table, fam, names)
	if err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply (sets mode): read table %s %s: %w", rs.Family, rs.Table, err)
	}
	if st.table == nil {
		return rules.Result{}, fmt.Errorf("nftables apply (sets mode): table %s %s does not exist: %w; %s",
			rs.Family, rs.Table, ErrSetsMissing, IncludeHint)
	}
	var missing, unfit []string
	for _, s := range specs {
		k := st.sets[s.Name]
		if k == nil {
			missing = append(missing, s.Name)
			continue
		}
		if why := fits(s, k); why != "" {
			unfit = append(unfit, fmt.Sprintf("set %s %s", s.Name, why))
		}
	}
	if len(missing)+len(unfit) > 0 {
		var parts []string
		if len(missing) > 0 {
			parts = append(parts, "no set "+strings.Join(missing, ", "))
		}
		parts = append(parts, unfit...)
		return rules.Result{}, fmt.Errorf("nftables apply (sets mode): table %s %s: %s: %w; %s",
			rs.Family, rs.Table, strings.Join(parts, "; "), ErrSetsMissing, IncludeHint)
	}
	d := differ{log: b.log, st: st}
	d.plan.Result.Created = d.reloaded(specs)
	d.sets(specs)
	plan := &d.plan
	if err := ctx.Err(); err != nil {
		return rules.Result{}, fmt.Errorf("nftables apply (sets mode): %w", err)
	}
	if plan.elementOps() > 0 {
		if err := execute(c, st.table, st, plan); err != nil {
			return rules.Result{}, fmt.Errorf("nftables apply (sets mode): build transaction: %w", err)
		}
		*sent = true
		if err := c.Flush(); err != nil {
			return rules.Result{}, fmt.Errorf("nftables apply (sets mode): transaction (%s) failed: %w; %s", plan.summary(), err, b.describe(ctx, rs, fam))
		}
	}
	b.log.Info("applied", "mode", rules.ModeSets, "table", rs.Table, "family", rs.Family, "refilled", plan.Result.Created,
		"changed", plan.Result.Changed, "added", plan.Result.Added, "refreshed", plan.Result.Refreshed, "skipped", plan.Skipped, "took", time.Since(start))
	return plan.Result, nil
}

// flushSets is Flush in sets mode: it empties synban's sets in the
// operator's table and deletes nothing. A missing table or set is not an
// error.
func (b *Backend) flushSets(ctx context.Context) error {
	name, fam := b.target()
	c, done, err := b.conn()
	if err != nil {
		return fmt.Errorf("flush sets: %w", err)
	}
	defer done()
	st, err := readState(ctx, c, name, fam, nil)
	if err != nil {
		return fmt.Errorf("flush sets: %w", err)
	}
	if st.table == nil {
		return nil
	}
	var flushed []string
	for _, n := range managedSets {
		if s := st.sets[n]; s != nil {
			s.Table = st.table
			c.FlushSet(s)
			flushed = append(flushed, n)
		}
	}
	if len(flushed) == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil
		}
		return fmt.Errorf("flush sets %s of table %s: %w", strings.Join(flushed, ", "), name, err)
	}
	b.log.Info("emptied sets", "table", name, "sets", flushed)
	return nil
}
