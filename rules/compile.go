package rules

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/synban/synban/internal/prefixes"
	"github.com/synban/synban/policy"
)

// DefaultSetSize is the size given to a ban set, meter or connection-limit
// set when the policy leaves it at zero.
const DefaultSetSize = 65536

// MaxCommentLen is the longest ban reason Compile produces, in bytes. nft
// accepts element comments up to 128 bytes; 100 leaves a margin.
const MaxCommentLen = 100

// ForcedBanReason is the Reason of a manual ban made with --force (synban
// ban --force). What exempts a ban from the minimum ban prefix length
// (ban.min_ipv4_length, ban.min_ipv6_length) is the verdict's Forced flag,
// which the state store keeps, not this text. A /0 is refused even so.
const ForcedBanReason = "manual ban (--force)"

// CappedNote is appended to the Reason of a ban whose timeout Compile cut
// to ban.max_duration.
const CappedNote = " (capped by ban.max_duration)"

// Offence is what Compile takes: one subject to ban and why. The engine
// makes it from a detector's verdict, a manual ban, a ban restored from the
// state store or a fleet decision.
type Offence struct {
	// Subject is the offender: a single address as a /32 or /128, or a
	// prefix such as a /24 or /64.
	Subject netip.Prefix
	// Rule names the policy rule crossed; empty for a ban that no rule
	// decided (then Reason is the ban's reason).
	Rule string
	// State is the TCP state the rule counts.
	State policy.State
	// Count is the peak count in the window (summed over sources for a
	// prefix).
	Count int
	// Threshold is the threshold crossed.
	Threshold int
	// Sources is the number of distinct addresses behind a prefix (1
	// otherwise).
	Sources int
	// BanFor is how long the ban should last.
	BanFor time.Duration
	// Reason is a one-line human-readable explanation.
	Reason string
	// Forced marks a manual ban made with `synban ban --force`, which may be
	// broader than the policy's minimum ban prefix length (never a /0).
	Forced bool
}

// Omission is a verdict that Compile left out of the Ruleset, and why.
type Omission struct {
	// Verdict is the verdict as it was passed in.
	Verdict Offence
	// Index is the verdict's position in the slice passed to Compile.
	Index int
	// Prefix is the verdict's canonical subject (IPv4-mapped IPv6 made IPv4).
	Prefix netip.Prefix
	// Why says why the verdict was dropped, e.g. "protected: ...",
	// "covered by 198.51.100.0/24", "over max_entries 65536",
	// "broader than ban.min_ipv4_length /16".
	Why string
}

// Omitted lists the verdicts Compile dropped, in input order.
type Omitted []Omission

// candidate is a ban being built from one verdict (and the verdicts merged
// into it).
type candidate struct {
	ban  Ban
	prio int // index of the worst verdict it stands for; lower is worse
	idx  int // index of the verdict it came from
	dead bool
	// capped records that the timeout was cut to ban.max_duration; the
	// reason (BanReason of the verdict, with CappedNote when capped) is
	// made only for a ban that is kept, or when a merge rewrites it
	// (reasoned).
	capped, reasoned bool
}

// reason returns the candidate's ban reason, made from verdicts[c.idx]
// unless a merge already set it.
func (c *candidate) reason(verdicts []Offence) string {
	if c.reasoned {
		return c.ban.Reason
	}
	return withCapNote(BanReason(verdicts[c.idx]), c.capped)
}

// Kinds of omission, recorded compactly while compiling.
const (
	omitText    = iota // why is texts[arg]
	omitMapped         // an IPv4-mapped subject shorter than /96; Prefix is the subject
	omitCovered        // covered by the ban of candidate arg
	omitOver           // over max_entries
)

// omitRec is an omission before it is made an Omission: verdict idx.
type omitRec struct {
	idx, arg int32
	kind     uint8
}

// Compile turns a policy and the verdicts of one run into the desired
// firewall state. It is the one place every ban passes, however it arrived
// (a rule, escalation, `synban ban`, the state store), so the limits are
// enforced here:
//
//   - the guard g: a verdict whose subject overlaps a protected prefix is
//     omitted; a nil guard protects nothing and yields an empty allow list;
//   - the minimum ban prefix length (ban.min_ipv4_length and
//     min_ipv6_length; 0 means none): a broader subject is omitted, unless
//     it is a forced manual ban (Offence.Forced); a /0 always is;
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
func Compile(p *policy.Policy, verdicts []Offence, g *policy.Guard) (*Ruleset, Omitted, error) {
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

	// Omissions are recorded compactly and made Omissions once, at the
	// end, in input order: a million verdicts over max_entries then cost
	// one Omitted of the final size, not a growing copy of each.
	var recs []omitRec
	var texts []string
	omitWhy := func(i int, why string) {
		recs = append(recs, omitRec{idx: int32(i), kind: omitText, arg: int32(len(texts))})
		texts = append(texts, why)
	}

	// Guard, canonical form, and merging of verdicts for the same prefix.
	cands := make([]candidate, 0, len(verdicts))
	byPrefix := make(map[netip.Prefix]int32, len(verdicts))
	for i, v := range verdicts {
		pfx := policy.Canonical(v.Subject)
		if !pfx.IsValid() {
			omitWhy(i, "invalid subject")
			continue
		}
		if v.Subject.Addr().Is4In6() && v.Subject.Bits() < 96 {
			// Canonical would widen it to 0.0.0.0/0.
			recs = append(recs, omitRec{idx: int32(i), kind: omitMapped})
			continue
		}
		if why, ok := g.Protects(pfx); ok {
			omitWhy(i, "protected: "+why)
			continue
		}
		if why, ok := TooBroad(p, pfx); ok && (pfx.Bits() == 0 || !v.Forced) {
			omitWhy(i, why)
			continue
		}
		timeout := v.BanFor
		if timeout <= 0 {
			timeout = p.Ban.Duration.Duration
		}
		timeout, capped := capTimeout(p, timeout)
		if ci, ok := byPrefix[pfx]; ok {
			// The same subject again: typically a ban restored from the
			// state store that was also decided again in this run. Not an
			// omission: the subject is banned, for the longer time.
			if c := &cands[ci]; timeout > c.ban.Timeout {
				c.ban.Timeout = timeout
				c.ban.Reason = withCapNote(strings.TrimSuffix(c.reason(verdicts), CappedNote), capped)
				c.reasoned = true
			}
			continue
		}
		byPrefix[pfx] = int32(len(cands))
		cands = append(cands, candidate{ban: Ban{Prefix: pfx, Timeout: timeout}, prio: i, idx: i, capped: capped})
	}

	// Covering: a ban inside another banned prefix is dropped; the covering
	// ban keeps the longest timeout and the worst priority of those it covers.
	// Shortest prefixes are visited first, so the outermost cover wins.
	lengths := [2][]int{} // distinct prefix lengths present, per family (0 = IPv4)
	for i := range cands {
		b := &cands[i].ban
		f := famIndex(b.Prefix)
		if !slices.Contains(lengths[f], b.Prefix.Bits()) {
			lengths[f] = append(lengths[f], b.Prefix.Bits())
		}
	}
	slices.Sort(lengths[0])
	slices.Sort(lengths[1])
	if len(lengths[0]) > 1 || len(lengths[1]) > 1 {
		byBits := make([]int32, len(cands))
		for i := range byBits {
			byBits[i] = int32(i)
		}
		slices.SortStableFunc(byBits, func(a, b int32) int {
			return cmp.Compare(cands[a].ban.Prefix.Bits(), cands[b].ban.Prefix.Bits())
		})
		for _, ci := range byBits {
			c := &cands[ci]
			pfx := c.ban.Prefix
			for _, bits := range lengths[famIndex(pfx)] {
				if bits >= pfx.Bits() {
					break
				}
				coverIdx, ok := byPrefix[netip.PrefixFrom(pfx.Addr(), bits).Masked()]
				if !ok || cands[coverIdx].dead {
					continue
				}
				cover := &cands[coverIdx]
				cover.ban.Timeout = max(cover.ban.Timeout, c.ban.Timeout)
				cover.prio = min(cover.prio, c.prio)
				c.dead = true
				recs = append(recs, omitRec{idx: int32(c.idx), kind: omitCovered, arg: coverIdx})
				break
			}
		}
	}
	byPrefix = nil

	// max_entries per family, worst first.
	live := make([]int32, 0, len(cands))
	for i := range cands {
		if !cands[i].dead {
			live = append(live, int32(i))
		}
	}
	slices.SortStableFunc(live, func(a, b int32) int { return cmp.Compare(cands[a].prio, cands[b].prio) })
	var perFamily [2]int
	if len(live) > 0 {
		rs.Bans = make([]Ban, 0, min(len(live), 2*rs.MaxEntries))
	}
	for _, ci := range live {
		c := &cands[ci]
		f := famIndex(c.ban.Prefix)
		if perFamily[f] >= rs.MaxEntries {
			recs = append(recs, omitRec{idx: int32(c.idx), kind: omitOver})
			continue
		}
		perFamily[f]++
		b := c.ban
		b.Reason = c.reason(verdicts)
		rs.Bans = append(rs.Bans, b)
	}
	slices.SortFunc(rs.Bans, func(a, b Ban) int { return ComparePrefixes(a.Prefix, b.Prefix) })

	var omitted Omitted
	if len(recs) > 0 {
		slices.SortFunc(recs, func(a, b omitRec) int { return cmp.Compare(a.idx, b.idx) })
		over := fmt.Sprintf("over max_entries %d", rs.MaxEntries)
		omitted = make(Omitted, len(recs))
		for i, r := range recs {
			v := &verdicts[r.idx]
			o := &omitted[i]
			o.Verdict, o.Index, o.Prefix = *v, int(r.idx), policy.Canonical(v.Subject)
			switch r.kind {
			case omitText:
				o.Why = texts[r.arg]
			case omitMapped:
				o.Prefix, o.Why = v.Subject, "invalid subject: IPv4-mapped prefix shorter than /96"
			case omitCovered:
				o.Why = "covered by " + cands[r.arg].ban.Prefix.String()
			case omitOver:
				o.Why = over
			}
		}
	}
	if err := rs.Validate(); err != nil {
		return nil, nil, fmt.Errorf("compile ruleset: %w", err)
	}
	return rs, omitted, nil
}

// TooBroad reports whether a ban of pfx would be broader than the policy's
// minimum ban prefix length for its family, or is a /0, and says so:
// "broader than ban.min_ipv4_length /16". A minimum of 0 (a policy built
// in Go without one) refuses only /0.
func TooBroad(p *policy.Policy, pfx netip.Prefix) (string, bool) {
	pfx = policy.Canonical(pfx)
	minBits, key := p.Ban.MinLength(pfx.Addr())
	switch {
	case pfx.Bits() == 0:
		return "a /0 bans every address", true
	case pfx.Bits() < minBits:
		return fmt.Sprintf("broader than %s /%d", key, minBits), true
	}
	return "", false
}

// capTimeout caps d at ban.max_duration (reporting whether it did) and at
// policy.MaxTimeout, and rounds it up to a whole second.
func capTimeout(p *policy.Policy, d time.Duration) (time.Duration, bool) {
	capped := false
	if m := p.Ban.MaxDuration.Duration; m > 0 && d > m {
		d, capped = m, true
	}
	return kernelTimeout(d), capped
}

// kernelTimeout rounds d up to a whole second, at most policy.MaxTimeout:
// a whole number of seconds renders as "600s" in nft, where a fraction
// would render as milliseconds, whose 9-digit counts nft refuses from
// about 27.8h on.
func kernelTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	d = min(d, policy.MaxTimeout)
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return d
}

// withCapNote appends CappedNote to reason when capped and it is not there
// yet (a restored ban keeps its reason), keeping the result within
// MaxCommentLen by shortening reason.
func withCapNote(reason string, capped bool) string {
	if !capped || strings.HasSuffix(reason, CappedNote) {
		return reason
	}
	if n := MaxCommentLen - len(CappedNote); len(reason) > n {
		reason = strings.TrimRight(reason[:n-3], " ") + "..."
	}
	return reason + CappedNote
}

// BanReason is the short, comment-safe reason Compile stores for a verdict,
// e.g. "syn-flood: 120 syn_recv >= 50" or, for a prefix,
// "syn-flood: 4000 syn_recv from 200 sources >= 200". A verdict without a
// rule name falls back to its Reason. The result passes CommentSafe.
func BanReason(v Offence) string {
	if v.Rule == "" {
		r := CommentSafe(v.Reason)
		if r == "" {
			r = "synban"
		}
		return r
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d %s", v.Rule, v.Count, v.State)
	if v.Sources > 1 {
		fmt.Fprintf(&b, " from %d sources", v.Sources)
	}
	fmt.Fprintf(&b, " >= %d", v.Threshold)
	return CommentSafe(b.String())
}

// CommentSafe returns s made safe for a double-quoted nft comment; see
// SafeText. The result is at most MaxCommentLen bytes.
func CommentSafe(s string) string { return SafeText(s, MaxCommentLen) }

// SafeText returns s made safe for a firewall object's comment (nft element
// or rule comments, ipset comments): printable ASCII only, double quotes
// turned into single quotes, backslashes into slashes, runs of white space
// into one space, and any other byte outside printable ASCII into '?'.
// Leading and trailing spaces are trimmed; a result over max bytes is cut and
// ends in "...".
func SafeText(s string, max int) string {
	if alreadySafe(s, max) {
		// Most reasons are safe already (Compile's own, restored from the
		// state store): return them as they are, without a copy.
		return s
	}
	return safeText(s, max)
}

// safeText is SafeText without the shortcut for text that is safe already.
func safeText(s string, max int) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f':
			space = b.Len() > 0
			continue
		case r == '"':
			r = '\''
		case r == '\\':
			r = '/'
		case r < 0x20 || r > 0x7e:
			r = '?'
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteByte(byte(r))
	}
	out := b.String()
	if len(out) > max {
		out = strings.TrimRight(out[:max-3], " ") + "..."
	}
	return out
}

// alreadySafe reports whether SafeText(s, max) is s itself: printable ASCII
// without double quotes or backslashes, no leading, trailing or doubled
// space, at most max bytes.
func alreadySafe(s string, max int) bool {
	if len(s) > max {
		return false
	}
	prev := byte(' ') // a leading space is not safe
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == ' ' && prev == ' ' {
			return false
		}
		prev = c
	}
	return prev != ' ' || len(s) == 0
}

// NormalizePrefixes returns ps in canonical form (masked, IPv4-mapped IPv6
// made IPv4), without invalid prefixes, duplicates, or prefixes contained in
// another one, sorted IPv4 first, then by address, then by length. The
// result has no overlapping elements, as nft interval sets require.
func NormalizePrefixes(ps []netip.Prefix) []netip.Prefix {
	all := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p = policy.Canonical(p); p.IsValid() {
			all = append(all, p)
		}
	}
	slices.SortFunc(all, ComparePrefixes)
	out := prefixes.Fold(all)
	if len(out) == 0 {
		return nil
	}
	return out
}

// ComparePrefixes orders prefixes IPv4 first, then by address, then by
// length (shorter first): policy.ComparePrefixes, the one implementation.
func ComparePrefixes(a, b netip.Prefix) int { return policy.ComparePrefixes(a, b) }

// BanSet names the ban set a banned prefix belongs in: SetBan4 or SetBan6 for
// a single address (/32, /128), SetBanNet4 or SetBanNet6 for a shorter prefix.
func BanSet(p netip.Prefix) string {
	p = policy.Canonical(p)
	single := p.Bits() == p.Addr().BitLen()
	switch {
	case p.Addr().Is4() && single:
		return SetBan4
	case p.Addr().Is4():
		return SetBanNet4
	case single:
		return SetBan6
	default:
		return SetBanNet6
	}
}

// BansIn returns the bans that belong in the named ban set (SetBan4,
// SetBan6, SetBanNet4 or SetBanNet6), in rs.Bans order.
func (rs *Ruleset) BansIn(set string) []Ban {
	var out []Ban
	for _, b := range rs.Bans {
		if BanSet(b.Prefix) == set {
			out = append(out, b)
		}
	}
	return out
}

// AllowIn returns the allowed prefixes of one family: set is SetAllow4 or
// SetAllow6.
func (rs *Ruleset) AllowIn(set string) []netip.Prefix {
	if set != SetAllow4 && set != SetAllow6 {
		return nil
	}
	var out []netip.Prefix
	for _, p := range rs.Allow {
		if policy.Canonical(p).Addr().Is4() == (set == SetAllow4) {
			out = append(out, p)
		}
	}
	return out
}

func famIndex(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

func orDefault(n int) int {
	if n <= 0 {
		return DefaultSetSize
	}
	return n
}

// normalizePorts returns ports sorted without duplicates or zeros; nil when empty.
func normalizePorts(ports []uint16) []uint16 {
	out := slices.DeleteFunc(slices.Clone(ports), func(p uint16) bool { return p == 0 })
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil
	}
	return out
}
