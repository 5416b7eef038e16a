// Package ipt is synban's iptables + ipset backend: one chain of synban's
// own in the filter table of iptables and ip6tables, reached by one jump at
// the top of INPUT (and FORWARD or DOCKER-USER when asked), with the allow
// list and the bans held in ipsets whose entries carry their own timeouts
// and comments, a per-source SYN meter with hashlimit and a per-source
// connection cap with connlimit.
//
// Rules are written with github.com/coreos/go-iptables, which runs the
// iptables program (the nf_tables build or iptables-legacy); ipsets are
// managed over netlink with github.com/vishvananda/netlink.
//
// To work in another network namespace, every call runs on a goroutine
// locked to its own OS thread that has joined the namespace with setns(2):
// programs started from that thread (iptables) inherit the namespace, and
// netlink sockets opened on it (ipset) belong to it. `ip netns exec` was not
// an option: go-iptables runs one program path with its own arguments, so it
// cannot be prefixed with a wrapper, and `ip netns exec` takes a name where
// Options.NetNS is a path. The thread returns to its own namespace before it
// is unlocked (it may be the process's main thread, whose namespace is the
// one /proc/PID/ns/net shows); if it cannot, it stays locked and the runtime
// ends it.
package ipt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/internal/trust"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
)

// table is the iptables table synban's chain lives in.
const table = "filter"

// Options configure the iptables backend.
type Options struct {
	// NetNS is the path of the network namespace to work in (e.g.
	// /run/netns/NAME); "" means the current one.
	NetNS string
	// Path is the iptables program: "" picks "iptables" if it works in the
	// namespace, else "iptables-legacy", both looked up in trust.SystemPath
	// (never $PATH). IPv6 uses the matching ip6tables program (the first
	// "iptables" in the file name becomes "ip6tables"). A configured path
	// must be absolute (a bare name is looked up like the defaults) and,
	// when running as root, pass trust.Program; a refusal is a
	// *trust.Error and nothing is run.
	Path string
	// Chain is synban's chain name; "" means DefaultChain ("SYNBAN").
	Chain string
	// DockerUser also jumps to the chain from DOCKER-USER, when that chain
	// exists.
	DockerUser bool
	// Logger receives what the backend changes; nil discards it.
	Logger *slog.Logger
}

// Backend is the iptables + ipset backend. It implements rules.Backend and
// is safe for concurrent use (calls are serialised).
type Backend struct {
	opts         Options
	chain        string
	log          *slog.Logger
	v4, v6       *iptables.IPTables
	path4, path6 string

	mu sync.Mutex
	// printed remembers, per family and desired chain, how iptables printed
	// the chain after this Backend wrote it, so that a version of iptables
	// that prints a rule differently from ChainRules does not make every
	// Apply rewrite the chain.
	printed map[string][]string
}

var _ rules.Backend = (*Backend)(nil)

// New returns a backend for o, after checking that the iptables and
// ip6tables programs exist and can list the filter table in o.NetNS.
func New(o Options) (*Backend, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	chain := o.Chain
	if chain == "" {
		chain = DefaultChain
	}
	if len(chain) > 28 || strings.ContainsAny(chain, " \t\n") {
		return nil, fmt.Errorf("iptables backend: chain name %q: want at most 28 characters, no spaces", chain)
	}
	r, err := resolve(o)
	if err != nil {
		return nil, err
	}
	log.Debug("iptables backend ready", "iptables", r.path4, "ip6tables", r.path6, "why", r.why, "netns", o.NetNS, "chain", chain)
	return &Backend{opts: o, chain: chain, log: log, v4: r.v4, v6: r.v6, path4: r.path4, path6: r.path6, printed: map[string][]string{}}, nil
}

// Probe reports whether the backend can work with o: the iptables and
// ip6tables programs exist and can list the filter table in o.NetNS.
func Probe(o Options) error {
	_, err := resolve(o)
	return err
}

// Name is "iptables".
func (b *Backend) Name() string { return "iptables" }

// Paths returns the iptables and ip6tables programs the backend runs.
func (b *Backend) Paths() (v4, v6 string) { return b.path4, b.path6 }

// resolved is the outcome of resolve.
type resolved struct {
	v4, v6       *iptables.IPTables
	path4, path6 string
	why          string
}

// resolve picks the iptables programs for o and says why. Every program
// goes through trust.Program first: names are looked up in the fixed
// trust.SystemPath (never $PATH), and a configured path that root should
// not run is refused with a *trust.Error before anything is executed.
func resolve(o Options) (resolved, error) {
	candidates := []string{o.Path}
	if o.Path == "" {
		candidates = []string{"iptables", "iptables-legacy"}
	}
	var errs []error
	for _, p := range candidates {
		r, err := open(o.NetNS, p)
		var te *trust.Error
		if errors.As(err, &te) {
			return resolved{}, fmt.Errorf("iptables backend: %w", err)
		}
		if err == nil {
			switch {
			case o.Path != "":
				r.why = "set in the options"
			case p == candidates[0]:
				r.why = "iptables works"
			default:
				r.why = fmt.Sprintf("iptables does not work (%v); iptables-legacy does", errs[0])
			}
			return r, nil
		}
		errs = append(errs, err)
	}
	return resolved{}, fmt.Errorf("iptables backend: no usable iptables program: %w", errors.Join(errs...))
}

// ip6Path is the ip6tables program matching an iptables program.
func ip6Path(p string) (string, error) {
	dir, base := filepath.Split(p)
	i := strings.Index(base, "iptables")
	if i < 0 {
		return "", fmt.Errorf("iptables program %q: cannot derive the ip6tables program (the name has no \"iptables\")", p)
	}
	return dir + base[:i] + "ip6tables" + base[i+len("iptables"):], nil
}

// open checks one iptables program (and its ip6tables twin) in netns. prog
// is a program name or an absolute path (see trust.Program).
func open(netns, prog string) (resolved, error) {
	var r resolved
	path, err := trust.Program("iptables", prog)
	if err != nil {
		return r, err
	}
	p6, err := ip6Path(path)
	if err != nil {
		return r, err
	}
	if p6, err = trust.Program("ip6tables", p6); err != nil {
		return r, err
	}
	r.path4, r.path6 = path, p6
	if r.v4, err = iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Path(path)); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	if r.v6, err = iptables.New(iptables.IPFamily(iptables.ProtocolIPv6), iptables.Path(p6)); err != nil {
		return r, fmt.Errorf("%s: %w", p6, err)
	}
	err = inNS(netns, func() error {
		for _, t := range []struct {
			ipt  *iptables.IPTables
			path string
		}{{r.v4, path}, {r.v6, p6}} {
			if _, err := t.ipt.ListChains(table); err != nil {
				return fmt.Errorf("%s cannot list the filter table: %w", t.path, err)
			}
		}
		return nil
	})
	return r, err
}

// inNS runs fn on an OS thread inside the network namespace at path ("" =
// the current one). Programs fn starts and sockets it opens belong to that
// namespace.
func inNS(path string, fn func() error) error {
	return nsenter.Do(path, fn)
}

// run runs fn inside the backend's namespace with a netfilter netlink handle
// opened there, one call at a time.
func (b *Backend) run(fn func(h *netlink.Handle) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return inNS(b.opts.NetNS, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("open netlink socket: %w", err)
		}
		defer h.Close()
		return fn(h)
	})
}

// fam is one address family's iptables program.
type fam struct {
	name string // "ipv4" or "ipv6"
	v6   bool
	ipt  *iptables.IPTables
}

func (b *Backend) fams() []fam {
	return []fam{{"ipv4", false, b.v4}, {"ipv6", true, b.v6}}
}

// jumpChains are the built-in chains that may jump to synban's chain.
func jumpChains() []string { return []string{"INPUT", "FORWARD", "DOCKER-USER"} }

// eachChain calls fn for each family with whether synban's chain exists
// there, stopping at the first error or when ctx is done.
func (b *Backend) eachChain(ctx context.Context, fn func(f fam, exists bool) error) error {
	for _, f := range b.fams() {
		if err := ctx.Err(); err != nil {
			return err
		}
		exists, err := f.ipt.ChainExists(table, b.chain)
		if err != nil {
			return fmt.Errorf("%s chain %s: %w", f.name, b.chain, err)
		}
		if err := fn(f, exists); err != nil {
			return err
		}
	}
	return nil
}

// Apply reconciles the kernel with rs: ipsets first (created, or rebuilt
// when their type or size differ), the allow sets' contents, the chain's
// rules (rewritten only where they differ), exactly one jump at the top of
// each hooked chain, then the bans (added, or refreshed when present).
func (b *Backend) Apply(ctx context.Context, rs *rules.Ruleset) (rules.Result, error) {
	var res rules.Result
	if rs == nil {
		return res, errors.New("iptables apply: nil ruleset")
	}
	hooks, err := HookChains(rs)
	if err != nil {
		return res, fmt.Errorf("iptables apply: %w", err)
	}
	for _, ban := range rs.Bans {
		if p := policy.Canonical(ban.Prefix); !ban.Prefix.IsValid() || p.Bits() == 0 {
			return res, fmt.Errorf("iptables apply: invalid ban prefix %v", ban.Prefix)
		}
	}
	err = b.run(func(h *netlink.Handle) error {
		for _, s := range IPSets(rs) {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := b.ensureSet(h, s, &res); err != nil {
				return err
			}
		}
		if err := b.syncAllow(h, rs); err != nil {
			return err
		}
		for _, f := range b.fams() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := b.syncChain(f, ChainRules(rs, f.v6), &res); err != nil {
				return err
			}
			if err := b.syncJumps(f, hooks, &res); err != nil {
				return err
			}
		}
		return b.addBans(ctx, h, rs.Bans, &res)
	})
	if err != nil {
		return res, fmt.Errorf("iptables apply: %w", err)
	}
	b.log.Info("iptables ruleset applied", "created", res.Created, "changed", res.Changed, "added", res.Added, "refreshed", res.Refreshed)
	return res, nil
}

// isNoSet reports whether err says an ipset does not exist.
func isNoSet(err error) bool {
	return errors.Is(err, unix.ENOENT)
}

// createOptions are the netlink options that create s.
func createOptions(s IPSet) (string, netlink.IpsetCreateOptions) {
	o := netlink.IpsetCreateOptions{MaxElements: uint32(s.MaxElem), Family: unix.AF_INET}
	if s.V6 {
		o.Family = unix.AF_INET6
	}
	if s.Timeout {
		zero := uint32(0)
		o.Timeout = &zero
		o.Comments = true
	}
	o.Counters = s.Counters
	if s.Type == "hash:net" {
		// The library has no default revision for hash:net; 4 added comments.
		o.Revision = 4
	}
	return s.Type, o
}

// matches reports whether an existing ipset is what s asks for.
func matches(cur *netlink.IPSetResult, s IPSet) bool {
	wantFam := uint8(unix.AF_INET)
	if s.V6 {
		wantFam = unix.AF_INET6
	}
	comments := cur.CadtFlags&nl.IPSET_FLAG_WITH_COMMENT != 0
	counters := cur.CadtFlags&nl.IPSET_FLAG_WITH_COUNTERS != 0
	return cur.TypeName == s.Type && cur.Family == wantFam &&
		int(cur.MaxElements) == s.MaxElem &&
		(cur.Timeout != nil) == s.Timeout && comments == s.Timeout && counters == s.Counters
}

// ensureSet creates s, or rebuilds it (keeping its entries) when it
// differs.
func (b *Backend) ensureSet(h *netlink.Handle, s IPSet, res *rules.Result) error {
	cur, err := h.IpsetList(s.Name)
	if isNoSet(err) {
		typ, o := createOptions(s)
		if err := h.IpsetCreate(s.Name, typ, o); err != nil {
			return fmt.Errorf("create ipset %s: %w", s.Name, err)
		}
		b.log.Debug("created ipset", "set", s.Name)
		res.Created = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("list ipset %s: %w", s.Name, err)
	}
	if matches(cur, s) {
		return nil
	}
	// Rebuild in a temporary set, then swap: rules referencing the set keep
	// working throughout, and the entries (with their time left) survive.
	tmp := s.Name + "-tmp"
	if err := h.IpsetDestroy(tmp); err != nil && !isNoSet(err) {
		return fmt.Errorf("destroy leftover ipset %s: %w", tmp, err)
	}
	typ, o := createOptions(s)
	if err := h.IpsetCreate(tmp, typ, o); err != nil {
		return fmt.Errorf("create ipset %s: %w", tmp, err)
	}
	for _, e := range cur.Entries {
		e := e
		e.Replace = true
		if !s.Timeout {
			e.Timeout, e.Comment = nil, ""
		}
		if !s.Counters {
			e.Packets, e.Bytes = nil, nil
		}
		if err := h.IpsetAdd(tmp, &e); err != nil {
			return fmt.Errorf("copy %v into ipset %s: %w", e.IP, tmp, err)
		}
	}
	if err := h.IpsetSwap(s.Name, tmp); err != nil {
		return fmt.Errorf("ipset %s is a %s that synban cannot convert to %s (swap: %w); remove it first", s.Name, cur.TypeName, s.Type, err)
	}
	if err := h.IpsetDestroy(tmp); err != nil {
		return fmt.Errorf("destroy replaced ipset %s: %w", tmp, err)
	}
	b.log.Info("rebuilt ipset", "set", s.Name, "type", s.Type, "maxelem", s.MaxElem)
	res.Changed = append(res.Changed, "ipset "+s.Name)
	return nil
}

// entryPrefix is the prefix an ipset entry holds.
func entryPrefix(e netlink.IPSetEntry) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(e.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	bits := int(e.CIDR)
	if bits == 0 {
		bits = a.BitLen()
	}
	return netip.PrefixFrom(a, bits).Masked(), true
}

// entryFor is the ipset entry for p; net says the set is a hash:net.
func entryFor(p netip.Prefix, net_ bool) *netlink.IPSetEntry {
	e := &netlink.IPSetEntry{IP: net.IP(p.Addr().AsSlice()), Replace: true}
	if net_ {
		e.CIDR = uint8(p.Bits())
	}
	return e
}

// members lists a set's entries by prefix; a missing set has none.
func members(h *netlink.Handle, set string) (map[netip.Prefix]netlink.IPSetEntry, error) {
	cur, err := h.IpsetList(set)
	if isNoSet(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list ipset %s: %w", set, err)
	}
	out := make(map[netip.Prefix]netlink.IPSetEntry, len(cur.Entries))
	for _, e := range cur.Entries {
		if p, ok := entryPrefix(e); ok {
			out[p] = e
		}
	}
	return out, nil
}

// syncAllow makes the allow sets hold exactly rs.Allow.
func (b *Backend) syncAllow(h *netlink.Handle, rs *rules.Ruleset) error {
	for _, f := range []struct {
		set string
		v6  bool
	}{{IPSetAllow4, false}, {IPSetAllow6, true}} {
		cur, err := members(h, f.set)
		if err != nil {
			return err
		}
		want := AllowEntries(rs, f.v6)
		for _, p := range want {
			if _, ok := cur[p]; ok {
				delete(cur, p)
				continue
			}
			if err := h.IpsetAdd(f.set, entryFor(p, true)); err != nil {
				return fmt.Errorf("add %v to ipset %s: %w", p, f.set, err)
			}
		}
		for p, e := range cur {
			if err := h.IpsetDel(f.set, &e); err != nil {
				return fmt.Errorf("remove %v from ipset %s: %w", p, f.set, err)
			}
		}
	}
	return nil
}

// chainRules lists chain's rules as `iptables -S` prints them, without the
// leading "-A CHAIN "; ok is false when the chain does not exist.
func chainRules(ipt *iptables.IPTables, chain string) (rs []string, ok bool, err error) {
	exists, err := ipt.ChainExists(table, chain)
	if err != nil || !exists {
		return nil, false, err
	}
	lines, err := ipt.List(table, chain)
	if err != nil {
		return nil, true, err
	}
	prefix := "-A " + chain + " "
	for _, l := range lines {
		if r, ok := strings.CutPrefix(l, prefix); ok {
			rs = append(rs, r)
		}
	}
	return rs, true, nil
}

// syncChain makes synban's chain in one family hold exactly want, in
// order, touching only the rules that differ.
func (b *Backend) syncChain(f fam, want [][]string, res *rules.Result) error {
	wantS := make([]string, len(want))
	for i, r := range want {
		wantS[i] = strings.Join(r, " ")
	}
	key := f.name + "\x00" + strings.Join(wantS, "\n")
	cur, exists, err := chainRules(f.ipt, b.chain)
	if err != nil {
		return fmt.Errorf("list %s chain %s: %w", f.name, b.chain, err)
	}
	if exists && (slices.Equal(cur, wantS) || slices.Equal(cur, b.printed[key])) {
		return nil
	}
	if !exists {
		if err := f.ipt.NewChain(table, b.chain); err != nil {
			return fmt.Errorf("create %s chain %s: %w", f.name, b.chain, err)
		}
		res.Created = true
	} else {
		res.Changed = append(res.Changed, f.name+" chain "+b.chain)
	}
	known := b.printed[key]
	for i, r := range want {
		switch {
		case i < len(cur) && (cur[i] == wantS[i] || i < len(known) && cur[i] == known[i]):
			continue
		case i < len(cur):
			err = f.ipt.Replace(table, b.chain, i+1, r...)
		default:
			err = f.ipt.Append(table, b.chain, r...)
		}
		if err != nil {
			return fmt.Errorf("write %s rule %d of chain %s: %w", f.name, i+1, b.chain, err)
		}
	}
	for n := len(cur); n > len(want); n-- {
		if err := f.ipt.DeleteById(table, b.chain, n); err != nil {
			return fmt.Errorf("delete %s rule %d of chain %s: %w", f.name, n, b.chain, err)
		}
	}
	after, _, err := chainRules(f.ipt, b.chain)
	if err != nil {
		return fmt.Errorf("read back %s chain %s: %w", f.name, b.chain, err)
	}
	if !slices.Equal(after, wantS) {
		b.log.Debug("iptables prints synban's rules differently; remembering its form", "family", f.name, "printed", after)
	}
	b.printed[key] = after
	b.log.Debug("wrote chain", "family", f.name, "chain", b.chain, "rules", len(want))
	return nil
}

// jumpPositions returns the 1-based positions of synban's jumps in a
// built-in chain, and whether the chain exists.
func (b *Backend) jumpPositions(ipt *iptables.IPTables, builtin string) ([]int, bool, error) {
	lines, exists, err := chainRules(ipt, builtin)
	if err != nil || !exists {
		return nil, exists, err
	}
	jump := strings.Join(JumpRule(b.chain), " ")
	var pos []int
	for i, l := range lines {
		if l == jump {
			pos = append(pos, i+1)
		}
	}
	return pos, true, nil
}

// syncJumps leaves exactly one jump at the top of each wanted built-in
// chain and none in the others.
func (b *Backend) syncJumps(f fam, hooks []string, res *rules.Result) error {
	for _, c := range jumpChains() {
		want := slices.Contains(hooks, c) || (c == "DOCKER-USER" && b.opts.DockerUser)
		pos, exists, err := b.jumpPositions(f.ipt, c)
		if err != nil {
			return fmt.Errorf("list %s chain %s: %w", f.name, c, err)
		}
		if !exists {
			continue
		}
		if want && len(pos) == 1 && pos[0] == 1 || !want && len(pos) == 0 {
			continue
		}
		for i := len(pos) - 1; i >= 0; i-- {
			if err := f.ipt.DeleteById(table, c, pos[i]); err != nil {
				return fmt.Errorf("remove %s jump from %s: %w", f.name, c, err)
			}
		}
		if !want {
			res.Changed = append(res.Changed, fmt.Sprintf("%s jump from %s removed", f.name, c))
			continue
		}
		if err := f.ipt.Insert(table, c, 1, JumpRule(b.chain)...); err != nil {
			return fmt.Errorf("insert %s jump into %s: %w", f.name, c, err)
		}
		if len(pos) == 0 {
			res.Created = true
		} else {
			res.Changed = append(res.Changed, fmt.Sprintf("%s jump in %s", f.name, c))
		}
		b.log.Debug("jump placed", "family", f.name, "chain", c, "had", len(pos))
	}
	return nil
}

// banSets are the ipsets holding bans.
var banSets = [...]string{IPSetBan4, IPSetBanNet4, IPSetBan6, IPSetBanNet6}

// addBans adds bans with their timeouts and reasons; ipset's "exist"
// semantics refresh those already present.
func (b *Backend) addBans(ctx context.Context, h *netlink.Handle, bans []rules.Ban, res *rules.Result) error {
	present := map[string]map[netip.Prefix]netlink.IPSetEntry{}
	for _, s := range banSets {
		m, err := members(h, s)
		if err != nil {
			return err
		}
		if m == nil {
			m = map[netip.Prefix]netlink.IPSetEntry{}
		}
		present[s] = m
	}
	for i, ban := range bans {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		p := policy.Canonical(ban.Prefix)
		set := BanIPSet(p)
		e := entryFor(p, set == IPSetBanNet4 || set == IPSetBanNet6)
		t := TimeoutSeconds(ban.Timeout)
		e.Timeout = &t
		e.Comment = Comment(ban.Reason)
		if err := h.IpsetAdd(set, e); err != nil {
			return fmt.Errorf("add ban %v to ipset %s: %w", p, set, err)
		}
		if _, ok := present[set][p]; ok {
			res.Refreshed++
		} else {
			res.Added++
			present[set][p] = *e
		}
	}
	return nil
}

// Bans lists the bans in the ban ipsets with the time each has left.
// Ban.Timeout is also the time left: ipset does not keep the original one.
func (b *Backend) Bans(ctx context.Context) ([]rules.ActiveBan, error) {
	var out []rules.ActiveBan
	err := b.eachBan(ctx, func(p netip.Prefix, e netlink.IPSetEntry) {
		var left time.Duration
		if e.Timeout != nil {
			left = time.Duration(*e.Timeout) * time.Second
		}
		out = append(out, rules.ActiveBan{
			Ban:     rules.Ban{Prefix: p, Timeout: left, Reason: e.Comment},
			Expires: left,
		})
	})
	if err != nil {
		return nil, fmt.Errorf("iptables bans: %w", err)
	}
	slices.SortFunc(out, func(x, y rules.ActiveBan) int { return policy.ComparePrefixes(x.Prefix, y.Prefix) })
	return out, nil
}

var _ rules.DropCounter = (*Backend)(nil)

// BanDrops returns the packets each ban has dropped, from the per-entry
// counters of the ban ipsets (created with counters; sets made by an older
// synban are rebuilt with them by the next Apply). Entries without a
// counter are left out. Refreshing an entry (ipset add -exist) keeps its
// count.
func (b *Backend) BanDrops(ctx context.Context) (map[netip.Prefix]uint64, error) {
	out := map[netip.Prefix]uint64{}
	err := b.eachBan(ctx, func(p netip.Prefix, e netlink.IPSetEntry) {
		if e.Packets != nil {
			out[p] = *e.Packets
		}
	})
	if err != nil {
		return nil, fmt.Errorf("iptables ban drop counters: %w", err)
	}
	return out, nil
}

// eachBan calls fn with every entry of the ban ipsets that exist, and its
// prefix; entries that are not a valid prefix are skipped.
func (b *Backend) eachBan(ctx context.Context, fn func(netip.Prefix, netlink.IPSetEntry)) error {
	return b.run(func(h *netlink.Handle) error {
		for _, s := range banSets {
			if err := ctx.Err(); err != nil {
				return err
			}
			cur, err := h.IpsetList(s)
			if isNoSet(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("list ipset %s: %w", s, err)
			}
			for _, e := range cur.Entries {
				if p, ok := entryPrefix(e); ok {
					fn(p, e)
				}
			}
		}
		return nil
	})
}

// Unban removes the given bans (exact prefixes) and reports how many were
// present.
func (b *Backend) Unban(ctx context.Context, prefixes []netip.Prefix) (int, error) {
	n := 0
	err := b.run(func(h *netlink.Handle) error {
		present := map[string]map[netip.Prefix]netlink.IPSetEntry{}
		for _, p := range prefixes {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !p.IsValid() {
				return fmt.Errorf("invalid prefix %v", p)
			}
			p = policy.Canonical(p)
			set := BanIPSet(p)
			if _, ok := present[set]; !ok {
				m, err := members(h, set)
				if err != nil {
					return err
				}
				present[set] = m
			}
			if _, ok := present[set][p]; !ok {
				continue
			}
			if err := h.IpsetDel(set, entryFor(p, set == IPSetBanNet4 || set == IPSetBanNet6)); err != nil {
				return fmt.Errorf("remove %v from ipset %s: %w", p, set, err)
			}
			delete(present[set], p)
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("iptables unban: %w", err)
	}
	return n, nil
}

// Counters reports the packets and bytes each of the chain's drop rules
// matched, named by their comments (ban_v4, meter_v6, ...); rules split
// over several iptables rules are summed. Chain is synban's chain name.
func (b *Backend) Counters(ctx context.Context) ([]rules.Counter, error) {
	var out []rules.Counter
	err := b.run(func(_ *netlink.Handle) error {
		return b.eachChain(ctx, func(f fam, exists bool) error {
			if !exists {
				return nil
			}
			lines, err := f.ipt.ListWithCounters(table, b.chain)
			if err != nil {
				return fmt.Errorf("list %s chain %s with counters: %w", f.name, b.chain, err)
			}
			for _, l := range lines {
				name, pk, by, ok := parseCounter(l)
				if !ok {
					continue
				}
				i := slices.IndexFunc(out, func(c rules.Counter) bool { return c.Rule == name })
				if i < 0 {
					out = append(out, rules.Counter{Chain: b.chain, Rule: name})
					i = len(out) - 1
				}
				out[i].Packets += pk
				out[i].Bytes += by
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("iptables counters: %w", err)
	}
	return out, nil
}

// parseCounter reads the comment and the "-c PACKETS BYTES" of one line of
// `iptables -v -S`.
func parseCounter(line string) (name string, packets, bytes uint64, ok bool) {
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "-A" {
		return "", 0, 0, false
	}
	haveC := false
	for i := 0; i < len(f); i++ {
		switch {
		case f[i] == "--comment" && i+1 < len(f):
			name = strings.Trim(f[i+1], `"`)
		case f[i] == "-c" && i+2 < len(f):
			p, err1 := strconv.ParseUint(f[i+1], 10, 64)
			by, err2 := strconv.ParseUint(f[i+2], 10, 64)
			if err1 != nil || err2 != nil {
				return "", 0, 0, false
			}
			packets, bytes, haveC = p, by, true
		}
	}
	if name == "" || !haveC {
		return "", 0, 0, false
	}
	return name, packets, bytes, true
}

// Flush removes synban's jumps, its chain in iptables and ip6tables, and
// its ipsets; nothing else.
func (b *Backend) Flush(ctx context.Context) error {
	err := b.run(func(h *netlink.Handle) error {
		err := b.eachChain(ctx, func(f fam, exists bool) error {
			if !exists {
				// No chain, so no jump to it can exist either (and
				// deleting one would fail, not report "absent").
				return nil
			}
			for _, c := range jumpChains() {
				pos, _, err := b.jumpPositions(f.ipt, c)
				if err != nil {
					return fmt.Errorf("list %s chain %s: %w", f.name, c, err)
				}
				for i := len(pos) - 1; i >= 0; i-- {
					if err := f.ipt.DeleteById(table, c, pos[i]); err != nil {
						return fmt.Errorf("remove %s jump from %s: %w", f.name, c, err)
					}
				}
			}
			if err := f.ipt.ClearAndDeleteChain(table, b.chain); err != nil {
				return fmt.Errorf("delete %s chain %s: %w", f.name, b.chain, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, s := range []string{IPSetAllow4, IPSetAllow6, IPSetBan4, IPSetBan6, IPSetBanNet4, IPSetBanNet6} {
			for _, name := range []string{s, s + "-tmp"} {
				if err := h.IpsetDestroy(name); err != nil && !isNoSet(err) {
					return fmt.Errorf("destroy ipset %s: %w", name, err)
				}
			}
		}
		clear(b.printed)
		return nil
	})
	if err != nil {
		return fmt.Errorf("iptables flush: %w", err)
	}
	b.log.Info("iptables backend flushed", "chain", b.chain)
	return nil
}
