package nft

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/nft/spec"
)

// banSets are the sets that hold bans, in listing order.
var banSets = []string{rules.SetBan4, rules.SetBanNet4, rules.SetBan6, rules.SetBanNet6}

// element is one address or prefix of a set as the kernel holds it.
type element struct {
	prefix           netip.Prefix
	timeout, expires time.Duration
	comment          string
	// counted is true when the element carries its own counter (a set with
	// the counter flag); packets is then what it counted.
	counted bool
	packets uint64
	// raw are the kernel elements standing for it (the start and, for an
	// interval, the end), reduced to what a delete needs.
	raw []nftables.SetElement
}

// state is what synban's table holds right now.
type state struct {
	table      *nftables.Table // nil when the table does not exist
	sets       map[string]*nftables.Set
	elems      map[string][]element // for the sets asked for
	chains     map[string]*nftables.Chain
	chainOrder []string
	rules      map[string][]*nftables.Rule
	anon       map[string]string // anonymous set name -> its elements, for comparing rules
}

func findTable(c *nftables.Conn, name string, fam nftables.TableFamily) (*nftables.Table, error) {
	tables, err := c.ListTablesOfFamily(fam)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == name && t.Family == fam {
			return t, nil
		}
	}
	return nil, nil
}

// emptyState is the state of a kernel without the table.
func emptyState() *state {
	return &state{
		sets:   map[string]*nftables.Set{},
		elems:  map[string][]element{},
		chains: map[string]*nftables.Chain{},
		rules:  map[string][]*nftables.Rule{},
		anon:   map[string]string{},
	}
}

// readState reads synban's table: sets, chains, rules, the elements of
// anonymous sets and of the named sets.
func readState(ctx context.Context, c *nftables.Conn, name string, fam nftables.TableFamily, elemSets []string) (*state, error) {
	st := emptyState()
	t, err := findTable(c, name, fam)
	if err != nil || t == nil {
		return st, err
	}
	st.table = t
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list sets of %s: %w", name, err)
	}
	for _, s := range sets {
		st.sets[s.Name] = s
		if s.Anonymous {
			els, err := c.GetSetElements(s)
			if err != nil {
				return nil, fmt.Errorf("list elements of %s: %w", s.Name, err)
			}
			st.anon[s.Name] = keysString(els)
		}
	}
	for _, set := range elemSets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s := st.sets[set]
		if s == nil {
			continue
		}
		els, err := stableElements(ctx, c, s)
		if err != nil {
			return nil, fmt.Errorf("list elements of %s: %w", set, err)
		}
		st.elems[set] = decodeElements(s, els)
	}
	chains, err := c.ListChainsOfTableFamily(fam)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != name {
			continue
		}
		ch.Table = t
		st.chains[ch.Name] = ch
		st.chainOrder = append(st.chainOrder, ch.Name)
		rs, err := c.GetRules(t, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
		}
		st.rules[ch.Name] = rs
	}
	return st, ctx.Err()
}

// Dump retries: a hash set the kernel is still resizing (right after a large
// load) can be dumped with some elements twice and others missing, as the
// table walk restarts across the resize. A dump that repeats a key is read
// again, a little later, until it is clean.
const (
	dumpAttempts = 20
	dumpBackoff  = 50 * time.Millisecond
)

// stableElements reads the elements of s until a dump lists no key twice.
func stableElements(ctx context.Context, c *nftables.Conn, s *nftables.Set) ([]nftables.SetElement, error) {
	for attempt := 1; ; attempt++ {
		els, err := c.GetSetElements(s)
		if err != nil {
			return nil, err
		}
		if !repeatsKey(els) {
			return els, nil
		}
		if attempt == dumpAttempts {
			return nil, fmt.Errorf("set %s changed under %d dumps in a row (keys listed twice)", s.Name, attempt)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(dumpBackoff):
		}
	}
}

// repeatsKey reports whether a dump lists one element key twice (an interval
// end shares its key with nothing but the next interval's start, so the
// flag is part of the identity).
func repeatsKey(els []nftables.SetElement) bool {
	seen := make(map[string]struct{}, len(els))
	for _, e := range els {
		k := string(e.Key)
		if e.IntervalEnd {
			k += "/end"
		}
		if _, dup := seen[k]; dup {
			return true
		}
		seen[k] = struct{}{}
	}
	return false
}

// keysString renders the keys of an anonymous set (ports), sorted, so two
// sets with the same members compare equal.
func keysString(els []nftables.SetElement) string {
	var keys []string
	for _, e := range els {
		if e.IntervalEnd {
			continue
		}
		if len(e.Key) == 2 {
			keys = append(keys, strconv.Itoa(int(e.Key[0])<<8|int(e.Key[1])))
		} else {
			keys = append(keys, fmt.Sprintf("%x", e.Key))
		}
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

// decodeElements turns kernel elements into addresses and prefixes; the
// start and end elements of an interval set become one prefix. Ranges that
// are not a prefix (added by someone else) are left out.
func decodeElements(s *nftables.Set, els []nftables.SetElement) []element {
	var out []element
	if !s.Interval {
		for _, e := range els {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				continue
			}
			el := element{
				prefix:  netip.PrefixFrom(a, a.BitLen()),
				timeout: e.Timeout, expires: e.Expires, comment: e.Comment,
				raw: []nftables.SetElement{{Key: e.Key}},
			}
			el.count(e)
			out = append(out, el)
		}
		return out
	}
	els = slices.Clone(els)
	// By key; at equal keys the end of one interval before the start of the next.
	slices.SortFunc(els, func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		switch {
		case a.IntervalEnd && !b.IntervalEnd:
			return -1
		case !a.IntervalEnd && b.IntervalEnd:
			return 1
		}
		return 0
	})
	for i, e := range els {
		if e.IntervalEnd {
			continue
		}
		start, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		var end []byte // nil: the interval runs to the last address
		raw := []nftables.SetElement{{Key: e.Key}}
		for _, f := range els[i+1:] {
			if f.IntervalEnd {
				end = f.Key
				raw = append(raw, nftables.SetElement{Key: f.Key, IntervalEnd: true})
				break
			}
		}
		p, ok := rangePrefix(start, end)
		if !ok {
			continue
		}
		el := element{prefix: p, timeout: e.Timeout, expires: e.Expires, comment: e.Comment, raw: raw}
		el.count(e)
		out = append(out, el)
	}
	return out
}

// count takes the element's counter from the kernel element e, if any.
func (el *element) count(e nftables.SetElement) {
	if e.Counter != nil {
		el.counted, el.packets = true, e.Counter.Packets
	}
}

// rangePrefix returns the prefix covering exactly [start, end), end nil
// meaning past the last address.
func rangePrefix(start netip.Addr, end []byte) (netip.Prefix, bool) {
	for bits := start.BitLen(); bits >= 0; bits-- {
		p := netip.PrefixFrom(start, bits)
		if p.Masked().Addr() != start {
			break
		}
		if bytes.Equal(spec.PrefixEnd(p), end) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// canonical is a prefix the way synban stores it.
func canonical(p netip.Prefix) netip.Prefix { return policy.Canonical(p) }

// ruleComment is the comment nft shows for a rule (its userdata TLV).
func ruleComment(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

func ruleCounter(r *nftables.Rule) *expr.Counter {
	for _, e := range r.Exprs {
		if c, ok := e.(*expr.Counter); ok {
			return c
		}
	}
	return nil
}

// Set attributes the library does not decode (linux/netfilter/nf_tables.h):
// a set's element expressions, one (NFTA_SET_EXPR) or a list of them
// (NFTA_SET_EXPRESSIONS), which is how the counter flag travels.
const (
	nftaSetExpr        = 17
	nftaSetExpressions = 18
)

// fillSetCounters sets Counter on the sets of st that carry a counter for
// each element. google/nftables encodes the flag on AddSet but does not
// decode it on GetSets, so the sets are dumped here over a netlink socket
// of our own, in the backend's namespace.
func (b *Backend) fillSetCounters(st *state) error {
	if st.table == nil || len(st.sets) == 0 {
		return nil
	}
	cfg := &netlink.Config{}
	if b.netns != "" {
		f, err := os.Open(b.netns)
		if err != nil {
			return fmt.Errorf("open network namespace: %w", err)
		}
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return fmt.Errorf("netlink connection: %w", err)
	}
	defer conn.Close()
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_TABLE, st.table.Name)
	attrs, err := ae.Encode()
	if err != nil {
		return fmt.Errorf("encode set dump request: %w", err)
	}
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSET),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{byte(st.table.Family), unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
	msgs, err := conn.Execute(req)
	if err != nil {
		return fmt.Errorf("dump sets of %s: %w", st.table.Name, err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		name, counter, err := decodeSetCounter(m.Data[4:])
		if err != nil {
			return fmt.Errorf("decode set of %s: %w", st.table.Name, err)
		}
		if s := st.sets[name]; s != nil {
			s.Counter = counter
		}
	}
	return nil
}

// decodeSetCounter returns a set message's name and whether one of its
// element expressions is a counter.
func decodeSetCounter(data []byte) (string, bool, error) {
	ad, err := netlink.NewAttributeDecoder(data)
	if err != nil {
		return "", false, err
	}
	var name string
	counter := false
	isCounter := func(b []byte) bool { // one nested expression: NFTA_EXPR_NAME "counter"
		d, err := netlink.NewAttributeDecoder(b)
		if err != nil {
			return false
		}
		for d.Next() {
			if d.Type() == unix.NFTA_EXPR_NAME && d.String() == "counter" {
				return true
			}
		}
		return false
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_SET_NAME:
			name = ad.String()
		case nftaSetExpr:
			counter = counter || isCounter(ad.Bytes())
		case nftaSetExpressions:
			list, err := netlink.NewAttributeDecoder(ad.Bytes())
			if err != nil {
				return "", false, err
			}
			for list.Next() {
				if list.Type() == unix.NFTA_LIST_ELEM && isCounter(list.Bytes()) {
					counter = true
				}
			}
		}
	}
	return name, counter, ad.Err()
}
