// Package spec builds synban's nftables objects for a rules.Ruleset once,
// in both forms: the netlink objects the rules/nft backend sends (sets,
// chains, rule expressions, set elements) and the nft text the dry run
// prints (package templates). Every builder yields both from one decision,
// so a plan cannot differ from what the kernel gets.
package spec

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
)

// Spec is synban's nftables objects for one Ruleset: the sets, with the
// elements the Ruleset puts in them, and the base chains with their rules.
// It is the one source of truth for both renderings: Apply sends its
// netlink form (SetSpec.nft, ChainSpec.nft, RuleSpec exprs, Element.encode)
// and the dry run (package templates) prints its nft text (SetSpec.Decl,
// SetSpec.Elements, ChainSpec.Head, RuleSpec.Text). Each builder below yields
// both forms from one decision.
type Spec struct {
	// Family and Table name synban's table (or, in sets mode, the
	// operator's table holding synban's sets).
	Family, Table string
	// Sets are the named sets, in the order the dry run declares them.
	Sets []SetSpec
	// Chains are the base chains of synban's table (none in sets mode).
	Chains []ChainSpec

	// Fam is the table's family.
	Fam nftables.TableFamily
}

// Build returns the Spec of rs. It checks only what it needs to name
// objects (table family and name); Apply checks the rest.
func Build(rs *rules.Ruleset) (*Spec, error) {
	if rs == nil {
		return nil, errors.New("nil ruleset")
	}
	fam, err := ParseFamily(rs.Family)
	if err != nil {
		return nil, err
	}
	if rs.Table == "" {
		return nil, errors.New("empty table name")
	}
	sp := &Spec{Family: rs.Family, Table: rs.Table, Fam: fam, Sets: sets(rs, fam)}
	for _, bc := range rs.BaseChains() {
		sp.Chains = append(sp.Chains, ChainSpec{Base: bc, Rules: chainRules(rs, fam, bc)})
	}
	return sp, nil
}

// ExampleRules are the rules of one base chain carrying everything rs has
// (allow, bans, meter, connection cap): what the sets-mode include file
// shows the operator to paste into their own chains.
func ExampleRules(rs *rules.Ruleset) ([]RuleSpec, error) {
	sp, err := Build(rs)
	if err != nil {
		return nil, err
	}
	return chainRules(rs, sp.Fam, rules.BaseChain{Meter: true, ConnLimit: true}), nil
}

// Filled returns the sets of sp that synban fills with elements (the allow
// and ban sets): the sets of sets mode.
func (sp *Spec) Filled() []SetSpec {
	var out []SetSpec
	for _, s := range sp.Sets {
		if s.Filled() {
			out = append(out, s)
		}
	}
	return out
}

// Kind is what a set is for.
type Kind int

// The kinds of synban's sets.
const (
	KindAllow Kind = iota
	KindBan
	KindMeter
	KindConn
	// KindHot is the sensor's set: the sources over the meter, each with
	// a counter of its SYNs over the limit.
	KindHot
)

// SetSpec is one named set synban's table should have, with the elements
// the Ruleset puts in it.
type SetSpec struct {
	Name string
	Kind Kind
	// V6 says the set holds IPv6 addresses, else IPv4.
	V6                         bool
	Interval, Timeout, Dynamic bool
	// Counter gives every element its own packet counter (nft's `counter`
	// set flag): the ban sets carry one, read by BanDrops.
	Counter    bool
	Size       uint32
	DefTimeout time.Duration
	// Elems are the elements of the Ruleset for an allow or ban set, in
	// the Ruleset's order.
	Elems []Element
}

// Allow reports whether s is an allow set (its elements are replaced on
// every run; ban sets only gain elements).
func (s SetSpec) Allow() bool { return s.Kind == KindAllow }

// Filled reports whether synban fills s with elements (allow and ban sets),
// as opposed to the meter and connection-cap sets the rules fill.
func (s SetSpec) Filled() bool { return s.Kind == KindAllow || s.Kind == KindBan }

// KeyType is the set's key type.
func (s SetSpec) KeyType() nftables.SetDatatype {
	if s.V6 {
		return nftables.TypeIP6Addr
	}
	return nftables.TypeIPAddr
}

// NFT returns the library's Set for s in table t (no ID: AddSet allocates one).
func (s SetSpec) NFT(t *nftables.Table) *nftables.Set {
	return &nftables.Set{
		Table:      t,
		Name:       s.Name,
		Interval:   s.Interval,
		HasTimeout: s.Timeout,
		Dynamic:    s.Dynamic,
		Counter:    s.Counter,
		Timeout:    s.DefTimeout,
		KeyType:    s.KeyType(),
		Size:       s.Size,
	}
}

// flags are the set's nft flags, in nft's order.
func (s SetSpec) flags() []string {
	var flags []string
	if s.Dynamic {
		flags = append(flags, "dynamic")
	}
	if s.Interval {
		flags = append(flags, "interval")
	}
	if s.Timeout {
		flags = append(flags, "timeout")
	}
	return flags
}

// Decl is the body of the set's nft declaration, one statement a line and
// without elements: the same fields nft sends as s.NFT.
func (s SetSpec) Decl() []string {
	out := []string{"type " + s.KeyType().Name}
	if f := s.flags(); len(f) > 0 {
		out = append(out, "flags "+strings.Join(f, ","))
	}
	if s.Size > 0 {
		out = append(out, fmt.Sprintf("size %d", s.Size))
	}
	if s.Counter {
		out = append(out, "counter")
	}
	if s.DefTimeout > 0 {
		out = append(out, "timeout "+Duration(s.DefTimeout))
	}
	return out
}

// Elements are the set's elements in nft syntax, in the Ruleset's order.
func (s SetSpec) Elements() []string {
	out := make([]string, len(s.Elems))
	for i, e := range s.Elems {
		out[i] = e.Text()
	}
	return out
}

// Same reports whether the kernel's set k has the definition s. k.Counter
// must have been filled in by the reader (the library does not decode it).
// A ban set made by an older synban without the counter flag differs, so
// Apply recreates it and carries its elements over.
func (s SetSpec) Same(k *nftables.Set) bool {
	kt := s.KeyType()
	return !k.Anonymous && !k.Constant && !k.IsMap && !k.Concatenation &&
		k.KeyType.Name == kt.Name && k.KeyType.Bytes == kt.Bytes &&
		k.Interval == s.Interval && k.HasTimeout == s.Timeout && k.Dynamic == s.Dynamic &&
		k.Counter == s.Counter && k.Size == s.Size && k.Timeout == s.DefTimeout
}

// Describe says what s is, for logs.
func (s SetSpec) Describe() string {
	counter := ""
	if s.Counter {
		counter = ", counter"
	}
	return fmt.Sprintf("%s (%s, flags %s%s, size %d, timeout %s)", s.Name, s.KeyType().Name, strings.Join(s.flags(), ","), counter, s.Size, s.DefTimeout)
}

// Element is one element synban puts in a set: Encode is what Apply sends,
// Text what the dry run prints.
type Element struct {
	Prefix  netip.Prefix
	Timeout time.Duration
	Comment string
}

// NewElem makes the element for prefix p (made canonical), banned for
// timeout (0: no timeout of its own; otherwise rounded up to whole
// milliseconds, the kernel's unit) with reason made safe for a comment.
func NewElem(p netip.Prefix, timeout time.Duration, reason string) Element {
	if r := timeout % time.Millisecond; r != 0 {
		timeout += time.Millisecond - r
	}
	return Element{Prefix: policy.Canonical(p), Timeout: timeout, Comment: rules.CommentSafe(reason)}
}

// Text is e in nft syntax.
func (e Element) Text() string {
	s := Elem(e.Prefix)
	if e.Timeout > 0 {
		s += " timeout " + Duration(e.Timeout)
	}
	if e.Comment != "" {
		s += ` comment "` + e.Comment + `"`
	}
	return s
}

// Encode returns the kernel elements of e in set s.
func (e Element) Encode(s SetSpec) []nftables.SetElement {
	return Encode(s, e.Prefix, e.Timeout, e.Comment)
}

// AppendEncode appends the kernel elements of e in set s to dst.
func (e Element) AppendEncode(dst []nftables.SetElement, s SetSpec) []nftables.SetElement {
	return AppendEncode(dst, s, e.Prefix, e.Timeout, e.Comment)
}

// Elem renders a prefix as an nft set element: a bare address for a single
// address (/32, /128), otherwise address/length.
func Elem(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// Duration renders d for nft: whole seconds as "600s", otherwise whole
// milliseconds, rounded up, as "1500ms".
func Duration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", (d+time.Millisecond-1)/time.Millisecond)
}

// Families says which address families a table family carries.
func Families(fam nftables.TableFamily) (v4, v6 bool) {
	switch fam {
	case nftables.TableFamilyIPv4:
		return true, false
	case nftables.TableFamilyIPv6:
		return false, true
	}
	return true, true
}

// sets lists the sets of rs, in the dry run's order, with their
// elements.
func sets(rs *rules.Ruleset, fam nftables.TableFamily) []SetSpec {
	v4, v6 := Families(fam)
	var out []SetSpec
	var setOf []string       // rules.BanSet of each of rs.Bans
	var count map[string]int // bans per set
	add := func(ok bool, s SetSpec) {
		if !ok {
			return
		}
		switch s.Kind {
		case KindAllow:
			for _, p := range rs.AllowIn(s.Name) {
				s.Elems = append(s.Elems, NewElem(p, 0, ""))
			}
		case KindBan:
			// The bans go straight into Elems, sized once: rs.BansIn
			// would copy them first, and grow its copy.
			if setOf == nil {
				setOf, count = banSets(rs.Bans)
			}
			if count[s.Name] == 0 {
				break
			}
			s.Elems = make([]Element, 0, count[s.Name])
			for i, b := range rs.Bans {
				if setOf[i] == s.Name {
					s.Elems = append(s.Elems, NewElem(b.Prefix, b.Timeout, b.Reason))
				}
			}
		}
		out = append(out, s)
	}
	size := uint32(rs.MaxEntries)
	add(v4, SetSpec{Name: rules.SetAllow4, Kind: KindAllow, Interval: true})
	add(v6, SetSpec{Name: rules.SetAllow6, Kind: KindAllow, V6: true, Interval: true})
	add(v4, SetSpec{Name: rules.SetBan4, Kind: KindBan, Timeout: true, Counter: true, Size: size})
	add(v4, SetSpec{Name: rules.SetBanNet4, Kind: KindBan, Interval: true, Timeout: true, Counter: true, Size: size})
	add(v6, SetSpec{Name: rules.SetBan6, Kind: KindBan, V6: true, Timeout: true, Counter: true, Size: size})
	add(v6, SetSpec{Name: rules.SetBanNet6, Kind: KindBan, V6: true, Interval: true, Timeout: true, Counter: true, Size: size})
	if m := rs.Meter; m != nil {
		add(v4, SetSpec{Name: rules.SetMeter4, Kind: KindMeter, Dynamic: true, Timeout: true, Size: uint32(m.Size), DefTimeout: m.Timeout})
		add(v6, SetSpec{Name: rules.SetMeter6, Kind: KindMeter, V6: true, Dynamic: true, Timeout: true, Size: uint32(m.Size), DefTimeout: m.Timeout})
		add(v4, SetSpec{Name: rules.SetHot4, Kind: KindHot, Dynamic: true, Timeout: true, Size: uint32(m.Size), DefTimeout: rules.SensorTimeout})
		add(v6, SetSpec{Name: rules.SetHot6, Kind: KindHot, V6: true, Dynamic: true, Timeout: true, Size: uint32(m.Size), DefTimeout: rules.SensorTimeout})
	}
	if cl := rs.ConnLimit; cl != nil {
		add(v4, SetSpec{Name: rules.SetConn4, Kind: KindConn, Dynamic: true, Size: uint32(cl.Size)})
		add(v6, SetSpec{Name: rules.SetConn6, Kind: KindConn, V6: true, Dynamic: true, Size: uint32(cl.Size)})
	}
	return out
}

// banSets returns the ban set of each ban (rules.BanSet) and how many bans
// each set gets.
func banSets(bans []rules.Ban) ([]string, map[string]int) {
	setOf := make([]string, len(bans))
	count := map[string]int{}
	for i, b := range bans {
		setOf[i] = rules.BanSet(b.Prefix)
		count[setOf[i]]++
	}
	return setOf, count
}

// ChainSpec is one base chain of synban's table with its rules.
type ChainSpec struct {
	Base  rules.BaseChain
	Rules []RuleSpec
}

// Name is the chain's name.
func (c ChainSpec) Name() string { return c.Base.Name }

// Head is the chain's nft declaration (type, hook, device, priority,
// policy): the same fields as c.NFT.
func (c ChainSpec) Head() string {
	dev := ""
	if c.Base.Device != "" {
		dev = ` device "` + c.Base.Device + `"`
	}
	return fmt.Sprintf("type filter hook %s%s priority %d; policy accept;", c.Base.Hook, dev, c.Base.Priority)
}

// NFT returns the library's Chain for c in table t.
func (c ChainSpec) NFT(t *nftables.Table) *nftables.Chain {
	h := Hooks[c.Base.Hook]
	prio := nftables.ChainPriority(c.Base.Priority)
	pol := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name: c.Base.Name, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: &h, Priority: &prio, Policy: &pol, Device: c.Base.Device,
	}
}

// frag is a piece of a rule in both forms: its nft text and the
// expressions nft compiles that text to.
type frag struct {
	text  string
	exprs []expr.Any
}

// seq joins fragments: texts with a space (empty ones left out),
// expressions in order.
func seq(fs ...frag) frag {
	var out frag
	var texts []string
	for _, f := range fs {
		if f.text != "" {
			texts = append(texts, f.text)
		}
		out.exprs = append(out.exprs, f.exprs...)
	}
	out.text = strings.Join(texts, " ")
	return out
}

// RuleSpec is one rule of a chain.
type RuleSpec struct {
	// Comment is the rule's comment ("" for none).
	Comment string
	body    frag
	// Ports, when more than one, are matched with an anonymous set that
	// the apply step creates and points PortLookup at.
	Ports      []uint16
	PortLookup *expr.Lookup
}

// Text is the rule in nft syntax.
func (r RuleSpec) Text() string {
	if r.Comment == "" {
		return r.body.text
	}
	return r.body.text + ` comment "` + r.Comment + `"`
}

// Exprs are the rule's expressions.
func (r RuleSpec) Exprs() []expr.Any { return r.body.exprs }

// UserData is the rule's userdata: its comment.
func (r RuleSpec) UserData() []byte {
	if r.Comment == "" {
		return nil
	}
	return userdata.AppendString(nil, userdata.TypeComment, r.Comment)
}

// chainRules builds the rules of base chain bc, in the dry run's order:
// allow, bans, then the meter and the connection cap where bc carries them.
// Each call returns fresh expressions.
func chainRules(rs *rules.Ruleset, fam nftables.TableFamily, bc rules.BaseChain) []RuleSpec {
	v4, v6 := Families(fam)
	inet := fam == nftables.TableFamilyINet
	var out []RuleSpec
	if v4 {
		out = append(out, RuleSpec{body: seq(saddr(inet, false), lookup(rules.SetAllow4), verdict(expr.VerdictAccept))})
	}
	if v6 {
		out = append(out, RuleSpec{body: seq(saddr(inet, true), lookup(rules.SetAllow6), verdict(expr.VerdictAccept))})
	}
	ban := func(set string, is6 bool) RuleSpec {
		return RuleSpec{Comment: set, body: seq(saddr(inet, is6), lookup(set), counterDrop())}
	}
	if v4 {
		out = append(out, ban(rules.SetBan4, false), ban(rules.SetBanNet4, false))
	}
	if v6 {
		out = append(out, ban(rules.SetBan6, true), ban(rules.SetBanNet6, true))
	}
	if m := rs.Meter; m != nil && bc.Meter {
		// The meter's rule is also the sensor: on the over-limit path only,
		// the source (keyed like the meter) is counted in the hot set.
		meter := func(set, hot string, is6 bool) RuleSpec {
			r := RuleSpec{Comment: set}
			var ports frag
			// `tcp flags` implies the protocol match: nft prints none.
			ports, r.Ports, r.PortLookup = tcpPorts(m.Ports, true)
			key := func() frag {
				k := saddr(inet, is6)
				if is6 && m.IPv6Length > 0 && m.IPv6Length < 128 {
					k = seq(k, v6Mask(m.IPv6Length))
				}
				return k
			}
			limit := frag{
				text:  fmt.Sprintf("limit rate over %d/second burst %d packets", m.Rate, m.Burst),
				exprs: []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(m.Rate), Unit: expr.LimitTimeSecond, Burst: uint32(m.Burst), Over: true}},
			}
			count := frag{text: "counter", exprs: []expr.Any{&expr.Counter{}}}
			r.body = seq(ports, synOnly(), dynset(unix.NFT_DYNSET_OP_UPDATE, set, key(), limit),
				dynset(unix.NFT_DYNSET_OP_UPDATE, hot, hotKey(key(), inet), count), counterDrop())
			return r
		}
		if v4 {
			out = append(out, meter(rules.SetMeter4, rules.SetHot4, false))
		}
		if v6 {
			out = append(out, meter(rules.SetMeter6, rules.SetHot6, true))
		}
	}
	if cl := rs.ConnLimit; cl != nil && bc.ConnLimit {
		conn := func(set string, is6 bool) RuleSpec {
			r := RuleSpec{Comment: set}
			var ports frag
			ports, r.Ports, r.PortLookup = tcpPorts(cl.Ports, false)
			count := frag{
				text:  fmt.Sprintf("ct count over %d", cl.Max),
				exprs: []expr.Any{&expr.Connlimit{Count: uint32(cl.Max), Flags: expr.NFT_CONNLIMIT_F_INV}},
			}
			r.body = seq(ports, ctStateNew(), dynset(unix.NFT_DYNSET_OP_ADD, set, saddr(inet, is6), count), counterDrop())
			return r
		}
		if v4 {
			out = append(out, conn(rules.SetConn4, false))
		}
		if v6 {
			out = append(out, conn(rules.SetConn6, true))
		}
	}
	return out
}

// saddr loads the source address into register 1 (`ip saddr`, `ip6
// saddr`); in an inet table it first checks the packet's family, as nft
// does.
func saddr(inet, v6 bool) frag {
	f := frag{text: "ip saddr"}
	if v6 {
		f.text = "ip6 saddr"
	}
	if inet {
		proto := byte(unix.NFPROTO_IPV4)
		if v6 {
			proto = unix.NFPROTO_IPV6
		}
		f.exprs = append(f.exprs,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}})
	}
	if v6 {
		f.exprs = append(f.exprs, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16})
	} else {
		f.exprs = append(f.exprs, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4})
	}
	return f
}

// hotKey is the sensor's key: the meter's key, loaded again (its text is
// the same). In an inet table the family check already passed, so only the
// address load (and mask) is repeated, as nft compiles it.
func hotKey(k frag, inet bool) frag {
	if inet {
		k.exprs = k.exprs[2:]
	}
	return k
}

// lookup is `@set`: register 1 is in the named set.
func lookup(set string) frag {
	return frag{text: "@" + set, exprs: []expr.Any{&expr.Lookup{SourceRegister: 1, SetName: set}}}
}

func verdict(k expr.VerdictKind) frag {
	text := map[expr.VerdictKind]string{expr.VerdictAccept: "accept", expr.VerdictDrop: "drop"}[k]
	return frag{text: text, exprs: []expr.Any{&expr.Verdict{Kind: k}}}
}

// counterDrop is `counter drop`.
func counterDrop() frag {
	return seq(frag{text: "counter", exprs: []expr.Any{&expr.Counter{}}}, verdict(expr.VerdictDrop))
}

// dynset is `update @set { KEY STMT }` (op update) or `add @set { KEY STMT }`
// (op add): key loads register 1, stmt is the per-element statement.
func dynset(op uint32, set string, key, stmt frag) frag {
	verb := "add"
	if op == unix.NFT_DYNSET_OP_UPDATE {
		verb = "update"
	}
	return frag{
		text: fmt.Sprintf("%s @%s { %s %s }", verb, set, key.text, stmt.text),
		exprs: append(slices.Clone(key.exprs), &expr.Dynset{
			SrcRegKey: 1, SetName: set, Operation: op, Exprs: stmt.exprs,
		}),
	}
}

// tcpPorts matches TCP, and the destination ports when given: one port
// with a compare (`tcp dport 80`), several with an anonymous set (`tcp
// dport { 80, 443 }`, returned lookup). Without ports the text is `meta
// l4proto tcp`, or nothing when implied: a later tcp match implies it.
func tcpPorts(ports []uint16, implied bool) (frag, []uint16, *expr.Lookup) {
	f := frag{exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}}
	if len(ports) == 0 {
		if !implied {
			f.text = "meta l4proto tcp"
		}
		return f, nil, nil
	}
	f.exprs = append(f.exprs, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	if len(ports) == 1 {
		f.text = fmt.Sprintf("tcp dport %d", ports[0])
		f.exprs = append(f.exprs, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(ports[0])})
		return f, nil, nil
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	f.text = "tcp dport { " + strings.Join(s, ", ") + " }"
	l := &expr.Lookup{SourceRegister: 1, SetName: "__set%d"}
	f.exprs = append(f.exprs, l)
	return f, slices.Clone(ports), l
}

// synOnly is `tcp flags & (fin | syn | rst | ack) == syn`.
func synOnly() frag {
	return frag{text: "tcp flags & (fin | syn | rst | ack) == syn", exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x17}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
	}}
}

// ctStateNew is `ct state new`.
func ctStateNew() frag {
	return frag{text: "ct state new", exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}}
}

// v6Mask is `& MASK`: register 1 masked to its first bits bits.
func v6Mask(bits int) frag {
	m := make([]byte, 16)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return frag{
		text:  "& " + netip.AddrFrom16([16]byte(m)).String(),
		exprs: []expr.Any{&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16, Mask: m, Xor: make([]byte, 16)}},
	}
}

// Hooks maps the hook names of rules.BaseChain to the kernel's hooks.
var Hooks = map[string]nftables.ChainHook{
	"ingress":     nfINetIngress,
	"prerouting":  *nftables.ChainHookPrerouting,
	"input":       *nftables.ChainHookInput,
	"forward":     *nftables.ChainHookForward,
	"output":      *nftables.ChainHookOutput,
	"postrouting": *nftables.ChainHookPostrouting,
}

// nfINetIngress is the inet family's ingress hook, NF_INET_INGRESS (5);
// the library's ChainHookIngress is the netdev family's (0).
const nfINetIngress nftables.ChainHook = 5

// ParseFamily returns the table family named f (inet, ip or ip6).
func ParseFamily(f string) (nftables.TableFamily, error) {
	switch f {
	case "inet":
		return nftables.TableFamilyINet, nil
	case "ip":
		return nftables.TableFamilyIPv4, nil
	case "ip6":
		return nftables.TableFamilyIPv6, nil
	}
	return 0, fmt.Errorf("table family %q: want inet, ip or ip6", f)
}

// MaxComment is the longest element comment nft accepts, without its NUL.
const MaxComment = 127

// Encode returns the kernel elements for one address or prefix: a single
// key, or for an interval set the start (carrying timeout and comment) and
// the end (first address after the prefix, flagged as interval end; none
// when the prefix runs to the last address), as nft sends them.
func Encode(s SetSpec, pfx netip.Prefix, timeout time.Duration, comment string) []nftables.SetElement {
	return AppendEncode(nil, s, pfx, timeout, comment)
}

// AppendEncode appends the kernel elements of pfx in set s (see Encode) to
// dst and returns the extended slice: a caller encoding many elements
// sizes dst once (EncodedLen) instead of a slice per element, and uses
// Keys.AppendEncode to carve their keys from a few blocks as well.
func AppendEncode(dst []nftables.SetElement, s SetSpec, pfx netip.Prefix, timeout time.Duration, comment string) []nftables.SetElement {
	return (*Keys)(nil).AppendEncode(dst, s, pfx, timeout, comment)
}

// keyBlock is the size of one of Keys' blocks: 4,096 IPv4 keys.
const keyBlock = 16 << 10

// Keys hands out the key bytes of encoded elements from blocks of
// keyBlock bytes: a restore of 100,000 bans otherwise allocates each
// 4- or 16-byte key on its own. The zero value is ready; a nil *Keys
// allocates every key. Keys handed out stay valid (a full block is left
// to the elements that use it).
type Keys struct {
	block []byte
}

// take returns n zeroed bytes.
func (k *Keys) take(n int) []byte {
	if k == nil {
		return make([]byte, n)
	}
	if cap(k.block)-len(k.block) < n {
		k.block = make([]byte, 0, max(keyBlock, n))
	}
	i := len(k.block)
	k.block = k.block[:i+n]
	return k.block[i : i+n : i+n]
}

// AppendEncode is the package's AppendEncode with the keys taken from k.
func (k *Keys) AppendEncode(dst []nftables.SetElement, s SetSpec, pfx netip.Prefix, timeout time.Duration, comment string) []nftables.SetElement {
	if len(comment) > MaxComment {
		comment = comment[:MaxComment]
	}
	if timeout > 0 && timeout < time.Millisecond {
		timeout = time.Millisecond
	}
	a := pfx.Masked().Addr()
	key := k.take(a.BitLen() / 8)
	if a.Is4() {
		b := a.As4()
		copy(key, b[:])
	} else {
		b := a.As16()
		copy(key, b[:])
	}
	dst = append(dst, nftables.SetElement{Key: key, Timeout: timeout, Comment: comment})
	if !s.Interval {
		return dst
	}
	if end := prefixEnd(k.take(len(key)), key, pfx.Bits()); end != nil {
		dst = append(dst, nftables.SetElement{Key: end, IntervalEnd: true})
	}
	return dst
}

// EncodedLen is the most kernel elements n entries of set s encode to:
// two per entry in an interval set (start and end), else one.
func (s SetSpec) EncodedLen(n int) int {
	if s.Interval {
		return 2 * n
	}
	return n
}

// PrefixEnd is the first address after p, as key bytes; nil when p runs to
// the last address.
func PrefixEnd(p netip.Prefix) []byte {
	start := p.Masked().Addr().AsSlice()
	return prefixEnd(make([]byte, len(start)), start, p.Bits())
}

// prefixEnd writes into b (len(start) bytes) the first address after the
// prefix of bits bits that starts at start, and returns b; nil when the
// prefix runs to the last address.
func prefixEnd(b, start []byte, bits int) []byte {
	copy(b, start)
	// Set the host bits, then add one.
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return b
		}
	}
	return nil
}
