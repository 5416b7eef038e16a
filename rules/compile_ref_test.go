package rules

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/synban/synban/policy"
)

// candidate is a ban being built from one verdict (and the verdicts merged
// into it).
type refCandidate struct {
	ban  Ban
	prio int // index of the worst verdict it stands for; lower is worse
	idx  int // index of the verdict it came from
	dead bool
}

// refCompile is Compile as it was before it recorded omissions compactly
// and made ban reasons only for the bans kept: the reference of
// TestCompileMatchesReference.
//
// It turns a policy and the verdicts of one run into the desired
// firewall state. It is the one place every ban passes, however it arrived
// (a rule, escalation, `synban ban`, the state store), so the limits are
// enforced here:
//
//   - the guard g: a verdict whose subject overlaps a protected prefix is
//     omitted; a nil guard protects nothing and yields an empty allow list;
//   - the minimum ban prefix length (ban.min_ipv4_length and
//     min_ipv6_length; 0 means none): a broader subject is omitted, unless
//     it is a forced manual ban (Verdict.Forced); a /0 always is;
//   - ban.max_duration (0 means none) and policy.MaxTimeout cap every ban's
//     timeout, and the Reason of a ban cut to max_duration ends in
//     CappedNote; timeouts are rounded up to a whole second, which nft
//     renders as seconds;
//   - max_entries per address family.
//
// Verdicts are expected worst first; their order is the priority when
// duplicates are merged and when max_entries is enforced. Verdicts for the
// same subject (a ban restored from the state store and the same ban
// decided again) are merged silently: the first one's reason, the longest
// timeout. Every other verdict left out is listed in the returned Omitted,
// with a reason.
//
// The Ruleset returned passes Ruleset.Validate (Compile runs it last), so
// backends trust it. The only errors are for impossible input (a nil
// policy) and a failed validation, which would be a bug of the compiler.
func refCompile(p *policy.Policy, verdicts []Offence, g *policy.Guard) (*Ruleset, Omitted, error) {
	if p == nil {
		return nil, nil, errors.New("compile ruleset: nil policy")
	}
	rs := &Ruleset{
		Table:      p.NFTables.Table,
		Family:     p.NFTables.Family,
		Priority:   p.NFTables.Priority,
		MaxEntries: orDefault(p.Ban.MaxEntries),
	}
	compileNFTables(rs, &p.NFTables)
	if p.Meter.Enabled {
		rs.Meter = &Meter{
			Rate:       p.Meter.Rate,
			Burst:      p.Meter.Burst,
			Timeout:    kernelTimeout(p.Meter.IdleTimeout.Duration),
			Ports:      normalizePorts(p.Meter.Ports),
			IPv6Length: p.Meter.IPv6Length,
			Size:       orDefault(p.Meter.Size),
		}
	}
	if p.ConnLimit.Enabled {
		rs.ConnLimit = &ConnLimit{
			Max:   p.ConnLimit.Max,
			Ports: normalizePorts(p.ConnLimit.Ports),
			Size:  orDefault(p.Meter.Size),
		}
	}
	if g != nil {
		rs.Allow = NormalizePrefixes(g.Prefixes())
	}

	var omitted Omitted
	omit := func(i int, pfx netip.Prefix, why string) {
		omitted = append(omitted, Omission{Verdict: verdicts[i], Index: i, Prefix: pfx, Why: why})
	}

	// Guard, canonical form, and merging of verdicts for the same prefix.
	cands := make([]*refCandidate, 0, len(verdicts))
	byPrefix := make(map[netip.Prefix]*refCandidate, len(verdicts))
	for i, v := range verdicts {
		pfx := policy.Canonical(v.Subject)
		if !pfx.IsValid() {
			omit(i, pfx, "invalid subject")
			continue
		}
		if v.Subject.Addr().Is4In6() && v.Subject.Bits() < 96 {
			// Canonical would widen it to 0.0.0.0/0.
			omit(i, v.Subject, "invalid subject: IPv4-mapped prefix shorter than /96")
			continue
		}
		if why, ok := g.Protects(pfx); ok {
			omit(i, pfx, "protected: "+why)
			continue
		}
		if why, ok := TooBroad(p, pfx); ok && (pfx.Bits() == 0 || !v.Forced) {
			omit(i, pfx, why)
			continue
		}
		timeout := v.BanFor
		if timeout <= 0 {
			timeout = p.Ban.Duration.Duration
		}
		timeout, capped := capTimeout(p, timeout)
		if c, ok := byPrefix[pfx]; ok {
			// The same subject again: typically a ban restored from the
			// state store that was also decided again in this run. Not an
			// omission: the subject is banned, for the longer time.
			if timeout > c.ban.Timeout {
				c.ban.Timeout = timeout
				c.ban.Reason = withCapNote(strings.TrimSuffix(c.ban.Reason, CappedNote), capped)
			}
			continue
		}
		c := &refCandidate{
			ban:  Ban{Prefix: pfx, Timeout: timeout, Reason: withCapNote(BanReason(v), capped)},
			prio: i,
			idx:  i,
		}
		byPrefix[pfx] = c
		cands = append(cands, c)
	}

	// Covering: a ban inside another banned prefix is dropped; the covering
	// ban keeps the longest timeout and the worst priority of those it covers.
	// Shortest prefixes are visited first, so the outermost cover wins.
	lengths := [2][]int{} // distinct prefix lengths present, per family (0 = IPv4)
	for _, c := range cands {
		f := famIndex(c.ban.Prefix)
		if !slices.Contains(lengths[f], c.ban.Prefix.Bits()) {
			lengths[f] = append(lengths[f], c.ban.Prefix.Bits())
		}
	}
	slices.Sort(lengths[0])
	slices.Sort(lengths[1])
	byBits := slices.Clone(cands)
	slices.SortStableFunc(byBits, func(a, b *refCandidate) int {
		return cmp.Compare(a.ban.Prefix.Bits(), b.ban.Prefix.Bits())
	})
	for _, c := range byBits {
		pfx := c.ban.Prefix
		for _, bits := range lengths[famIndex(pfx)] {
			if bits >= pfx.Bits() {
				break
			}
			cover, ok := byPrefix[netip.PrefixFrom(pfx.Addr(), bits).Masked()]
			if !ok || cover.dead {
				continue
			}
			cover.ban.Timeout = max(cover.ban.Timeout, c.ban.Timeout)
			cover.prio = min(cover.prio, c.prio)
			c.dead = true
			omit(c.idx, pfx, "covered by "+cover.ban.Prefix.String())
			break
		}
	}

	// max_entries per family, worst first.
	live := make([]*refCandidate, 0, len(cands))
	for _, c := range cands {
		if !c.dead {
			live = append(live, c)
		}
	}
	slices.SortStableFunc(live, func(a, b *refCandidate) int { return cmp.Compare(a.prio, b.prio) })
	var perFamily [2]int
	for _, c := range live {
		f := famIndex(c.ban.Prefix)
		if perFamily[f] >= rs.MaxEntries {
			omit(c.idx, c.ban.Prefix, fmt.Sprintf("over max_entries %d", rs.MaxEntries))
			continue
		}
		perFamily[f]++
		rs.Bans = append(rs.Bans, c.ban)
	}
	slices.SortFunc(rs.Bans, func(a, b Ban) int { return ComparePrefixes(a.Prefix, b.Prefix) })
	slices.SortFunc(omitted, func(a, b Omission) int { return cmp.Compare(a.Index, b.Index) })
	if err := rs.Validate(); err != nil {
		return nil, nil, fmt.Errorf("compile ruleset: %w", err)
	}
	return rs, omitted, nil
}
