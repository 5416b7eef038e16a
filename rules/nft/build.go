package nft

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/rules"
)

type setKind int

const (
	kindAllow setKind = iota
	kindBan
	kindMeter
	kindConn
)

// setSpec is one named set synban's table should have.
type setSpec struct {
	name                       string
	kind                       setKind
	v6                         bool
	interval, timeout, dynamic bool
	// counter gives every element its own packet counter (nft's `counter`
	// set flag): the ban sets carry one, read by BanDrops.
	counter    bool
	size       uint32
	defTimeout time.Duration
}

func (s setSpec) keyType() nftables.SetDatatype {
	if s.v6 {
		return nftables.TypeIP6Addr
	}
	return nftables.TypeIPAddr
}

// nft returns the library's Set for s in table t (no ID: AddSet allocates one).
func (s setSpec) nft(t *nftables.Table) *nftables.Set {
	return &nftables.Set{
		Table:      t,
		Name:       s.name,
		Interval:   s.interval,
		HasTimeout: s.timeout,
		Dynamic:    s.dynamic,
		Counter:    s.counter,
		Timeout:    s.defTimeout,
		KeyType:    s.keyType(),
		Size:       s.size,
	}
}

// same reports whether the kernel's set k has the definition s. k.Counter
// must have been filled in by readState (the library does not decode it).
// A ban set made by an older synban without the counter flag differs, so
// Apply recreates it and carries its elements over.
func (s setSpec) same(k *nftables.Set) bool {
	kt := s.keyType()
	return !k.Anonymous && !k.Constant && !k.IsMap && !k.Concatenation &&
		k.KeyType.Name == kt.Name && k.KeyType.Bytes == kt.Bytes &&
		k.Interval == s.interval && k.HasTimeout == s.timeout && k.Dynamic == s.dynamic &&
		k.Counter == s.counter && k.Size == s.size && k.Timeout == s.defTimeout
}

func (s setSpec) describe() string {
	var flags []string
	if s.dynamic {
		flags = append(flags, "dynamic")
	}
	if s.interval {
		flags = append(flags, "interval")
	}
	if s.timeout {
		flags = append(flags, "timeout")
	}
	counter := ""
	if s.counter {
		counter = ", counter"
	}
	return fmt.Sprintf("%s (%s, flags %s%s, size %d, timeout %s)", s.name, s.keyType().Name, strings.Join(flags, ","), counter, s.size, s.defTimeout)
}

// families says which address families a table family carries.
func families(fam nftables.TableFamily) (v4, v6 bool) {
	switch fam {
	case nftables.TableFamilyIPv4:
		return true, false
	case nftables.TableFamilyIPv6:
		return false, true
	}
	return true, true
}

// desiredSets lists the sets of rs, in the template's order.
func desiredSets(rs *rules.Ruleset, fam nftables.TableFamily) []setSpec {
	v4, v6 := families(fam)
	var out []setSpec
	add := func(ok bool, s setSpec) {
		if ok {
			out = append(out, s)
		}
	}
	size := uint32(rs.MaxEntries)
	add(v4, setSpec{name: rules.SetAllow4, kind: kindAllow, interval: true})
	add(v6, setSpec{name: rules.SetAllow6, kind: kindAllow, v6: true, interval: true})
	add(v4, setSpec{name: rules.SetBan4, kind: kindBan, timeout: true, counter: true, size: size})
	add(v4, setSpec{name: rules.SetBanNet4, kind: kindBan, interval: true, timeout: true, counter: true, size: size})
	add(v6, setSpec{name: rules.SetBan6, kind: kindBan, v6: true, timeout: true, counter: true, size: size})
	add(v6, setSpec{name: rules.SetBanNet6, kind: kindBan, v6: true, interval: true, timeout: true, counter: true, size: size})
	if m := rs.Meter; m != nil {
		add(v4, setSpec{name: rules.SetMeter4, kind: kindMeter, dynamic: true, timeout: true, size: uint32(m.Size), defTimeout: m.Timeout})
		add(v6, setSpec{name: rules.SetMeter6, kind: kindMeter, v6: true, dynamic: true, timeout: true, size: uint32(m.Size), defTimeout: m.Timeout})
	}
	if cl := rs.ConnLimit; cl != nil {
		add(v4, setSpec{name: rules.SetConn4, kind: kindConn, dynamic: true, size: uint32(cl.Size)})
		add(v6, setSpec{name: rules.SetConn6, kind: kindConn, v6: true, dynamic: true, size: uint32(cl.Size)})
	}
	return out
}

// ruleSpec is one rule of a chain.
type ruleSpec struct {
	comment string
	exprs   []expr.Any
	// ports, when more than one, are matched with an anonymous set that
	// the apply step creates and points portLookup at.
	ports      []uint16
	portLookup *expr.Lookup
}

func (r ruleSpec) userData() []byte {
	if r.comment == "" {
		return nil
	}
	return userdata.AppendString(nil, userdata.TypeComment, r.comment)
}

// fingerprint is the rule compared with the kernel's rules.
func (r ruleSpec) fingerprint() string {
	ports := portsString(r.ports)
	return fingerprint(r.exprs, r.userData(), func(string) string { return ports })
}

func portsString(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// desiredRules builds the rules of base chain bc, in the template's order:
// allow, bans, then the meter and the connection cap where bc carries them.
// Each call returns fresh expressions.
func desiredRules(rs *rules.Ruleset, fam nftables.TableFamily, bc rules.BaseChain) []ruleSpec {
	v4, v6 := families(fam)
	inet := fam == nftables.TableFamilyINet
	var out []ruleSpec
	if v4 {
		out = append(out, ruleSpec{exprs: concat(saddr(inet, false), lookup(rules.SetAllow4), verdict(expr.VerdictAccept))})
	}
	if v6 {
		out = append(out, ruleSpec{exprs: concat(saddr(inet, true), lookup(rules.SetAllow6), verdict(expr.VerdictAccept))})
	}
	ban := func(set string, is6 bool) ruleSpec {
		return ruleSpec{comment: set, exprs: concat(saddr(inet, is6), lookup(set), counterDrop())}
	}
	if v4 {
		out = append(out, ban(rules.SetBan4, false), ban(rules.SetBanNet4, false))
	}
	if v6 {
		out = append(out, ban(rules.SetBan6, true), ban(rules.SetBanNet6, true))
	}
	if m := rs.Meter; m != nil && bc.Meter {
		meter := func(set string, is6 bool) ruleSpec {
			r := ruleSpec{comment: set}
			var ports []expr.Any
			ports, r.ports, r.portLookup = tcpPorts(m.Ports)
			key := saddr(inet, is6)
			if is6 && m.IPv6Length > 0 && m.IPv6Length < 128 {
				key = append(key, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16, Mask: v6Mask(m.IPv6Length), Xor: make([]byte, 16)})
			}
			r.exprs = concat(ports, synOnly(), key, []expr.Any{&expr.Dynset{
				SrcRegKey: 1, SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE,
				Exprs: []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(m.Rate), Unit: expr.LimitTimeSecond, Burst: uint32(m.Burst), Over: true}},
			}}, counterDrop())
			return r
		}
		if v4 {
			out = append(out, meter(rules.SetMeter4, false))
		}
		if v6 {
			out = append(out, meter(rules.SetMeter6, true))
		}
	}
	if cl := rs.ConnLimit; cl != nil && bc.ConnLimit {
		conn := func(set string, is6 bool) ruleSpec {
			r := ruleSpec{comment: set}
			var ports []expr.Any
			ports, r.ports, r.portLookup = tcpPorts(cl.Ports)
			r.exprs = concat(ports, ctStateNew(), saddr(inet, is6), []expr.Any{&expr.Dynset{
				SrcRegKey: 1, SetName: set, Operation: unix.NFT_DYNSET_OP_ADD,
				Exprs: []expr.Any{&expr.Connlimit{Count: uint32(cl.Max), Flags: expr.NFT_CONNLIMIT_F_INV}},
			}}, counterDrop())
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

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// saddr loads the source address into register 1; in an inet table it
// first checks the packet's family, as nft does for `ip saddr`.
func saddr(inet, v6 bool) []expr.Any {
	var out []expr.Any
	if inet {
		proto := byte(unix.NFPROTO_IPV4)
		if v6 {
			proto = unix.NFPROTO_IPV6
		}
		out = append(out,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}})
	}
	if v6 {
		return append(out, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16})
	}
	return append(out, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4})
}

func lookup(set string) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: 1, SetName: set}}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func counterDrop() []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
}

// tcpPorts matches TCP, and the destination ports when given: one port
// with a compare, several with an anonymous set (returned lookup).
func tcpPorts(ports []uint16) ([]expr.Any, []uint16, *expr.Lookup) {
	out := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
	if len(ports) == 0 {
		return out, nil, nil
	}
	out = append(out, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	if len(ports) == 1 {
		return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(ports[0])}), nil, nil
	}
	l := &expr.Lookup{SourceRegister: 1, SetName: "__set%d"}
	return append(out, l), slices.Clone(ports), l
}

// synOnly is `tcp flags & (fin | syn | rst | ack) == syn`.
func synOnly() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x17}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
	}
}

// ctStateNew is `ct state new`.
func ctStateNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func v6Mask(bits int) []byte {
	m := make([]byte, 16)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// fingerprint renders a rule's expressions and userdata with only what
// matters for comparison: no counter values, set IDs or handles; anonymous
// sets by their members (anon resolves a set name to them).
func fingerprint(exprs []expr.Any, ud []byte, anon func(name string) string) string {
	var b strings.Builder
	for _, e := range exprs {
		writeExpr(&b, e, anon)
		b.WriteString("; ")
	}
	c, _ := userdata.GetString(ud, userdata.TypeComment)
	fmt.Fprintf(&b, "comment=%q", c)
	return b.String()
}

func writeExpr(b *strings.Builder, e expr.Any, anon func(string) string) {
	switch e := e.(type) {
	case *expr.Counter:
		b.WriteString("counter")
	case *expr.Lookup:
		name := e.SetName
		if strings.HasPrefix(name, "__set") {
			name = "{" + anon(name) + "}"
		}
		fmt.Fprintf(b, "lookup(%s sreg=%d dreg=%d/%v inv=%v)", name, e.SourceRegister, e.DestRegister, e.IsDestRegSet, e.Invert)
	case *expr.Dynset:
		fmt.Fprintf(b, "dynset(%s op=%d sreg=%d/%d timeout=%s inv=%v [", e.SetName, e.Operation, e.SrcRegKey, e.SrcRegData, e.Timeout, e.Invert)
		for _, x := range e.Exprs {
			writeExpr(b, x, anon)
			b.WriteString(" ")
		}
		b.WriteString("])")
	case *expr.Bitwise:
		fmt.Fprintf(b, "bitwise(s=%d d=%d len=%d mask=%x xor=%x)", e.SourceRegister, e.DestRegister, e.Len, e.Mask, e.Xor)
	case *expr.Cmp:
		fmt.Fprintf(b, "cmp(%d r=%d %x)", e.Op, e.Register, e.Data)
	case *expr.Payload:
		fmt.Fprintf(b, "payload(op=%d d=%d s=%d base=%d off=%d len=%d)", e.OperationType, e.DestRegister, e.SourceRegister, e.Base, e.Offset, e.Len)
	case *expr.Meta:
		fmt.Fprintf(b, "meta(%d r=%d src=%v)", e.Key, e.Register, e.SourceRegister)
	case *expr.Ct:
		fmt.Fprintf(b, "ct(%d r=%d src=%v dir=%d)", e.Key, e.Register, e.SourceRegister, e.Direction)
	case *expr.Verdict:
		fmt.Fprintf(b, "verdict(%d %s)", e.Kind, e.Chain)
	case *expr.Limit:
		fmt.Fprintf(b, "limit(%d rate=%d/%d burst=%d over=%v)", e.Type, e.Rate, e.Unit, e.Burst, e.Over)
	case *expr.Connlimit:
		fmt.Fprintf(b, "connlimit(%d flags=%d)", e.Count, e.Flags)
	default:
		fmt.Fprintf(b, "%T%+v", e, e)
	}
}
