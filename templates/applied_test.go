package templates

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/nft"
)

// TestDryRunIsWhatApplySends proves, without root, that the dry run prints
// what Apply sends: for every ruleset the golden tests render (hand-built,
// integration, and every golden policy and fixture through the pipeline),
// it takes the operations Apply would send to a kernel without synban's
// table (nft.FreshPlan), turns those netlink objects back into nft text
// with its own decoder (sets from *nftables.Set fields and the encoded
// elements, chains from *nftables.Chain, rules from their expressions),
// and requires that text to equal the dry run byte for byte.
func TestDryRunIsWhatApplySends(t *testing.T) {
	cases := map[string]*rules.Ruleset{}
	for name, rs := range handRulesets() {
		cases[name] = rs
	}
	for name, rs := range integrationRulesets() {
		cases[name] = rs
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		for _, tc := range pipelineCases() {
			pr := runPipeline(t, tc)
			cases[tc.name] = pr.rs
		}
	}
	for name, rs := range cases {
		t.Run(name, func(t *testing.T) {
			source := "source of " + name
			dry, err := NFTString(rs, source)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := nft.FreshPlan(rs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := planText(rs, plan, source)
			if err != nil {
				t.Fatal(err)
			}
			if rs.SetsMode() {
				// Apply syncs the allow sets element by element where the
				// script flushes them: compare the elements.
				dry = withoutLines(dry, "#", "flush set ")
			}
			if got != dry {
				t.Errorf("the operations Apply sends read back differently from the dry run\n%s", lineDiff(dry, got))
			}
		})
	}
}

func withoutLines(s string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(l, p) }) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// planText renders the operations of plan as an nft script in the dry
// run's layout, reading only the netlink objects Apply would send.
func planText(rs *rules.Ruleset, plan *nft.Plan, source string) (string, error) {
	t := &nftables.Table{Name: rs.Table}
	elems := map[string][]nftables.SetElement{}
	var setOrder []string
	for _, op := range plan.Ops {
		if op.Kind == nft.OpAddElements {
			if elems[op.Name] == nil {
				setOrder = append(setOrder, op.Name)
			}
			elems[op.Name] = append(elems[op.Name], op.Elements...)
		}
	}
	var b strings.Builder
	if rs.SetsMode() {
		for _, name := range setOrder {
			els, err := elementTexts(elems[name])
			if err != nil {
				return "", fmt.Errorf("set %s: %w", name, err)
			}
			fmt.Fprintf(&b, "add element %s %s %s { %s }\n", rs.Family, rs.Table, name, strings.Join(els, ",\n\t"))
		}
		return b.String(), nil
	}
	fmt.Fprintf(&b, "#!/usr/sbin/nft -f\n# synban ruleset for policy %s; apply with: nft -f FILE\n", source)
	fmt.Fprintf(&b, "table %[1]s %[2]s\ndelete table %[1]s %[2]s\ntable %[1]s %[2]s {", rs.Family, rs.Table)
	sets := map[string]*nftables.Set{}
	for _, op := range plan.Ops {
		switch op.Kind {
		case nft.OpAddSet:
			s := op.Set.NFT(t)
			sets[s.Name] = s
			if err := writeSet(&b, s, elems[s.Name]); err != nil {
				return "", err
			}
		case nft.OpAddChain:
			if err := writeChain(&b, op.Chain.NFT(t), plan, sets); err != nil {
				return "", err
			}
		case nft.OpAddTable, nft.OpAddRule, nft.OpAddElements:
		default:
			return "", fmt.Errorf("a fresh plan has a %s operation", op.Kind)
		}
	}
	b.WriteString("\n}\n")
	return b.String(), nil
}

func writeSet(b *strings.Builder, s *nftables.Set, els []nftables.SetElement) error {
	fmt.Fprintf(b, "\n\tset %s {\n\t\ttype %s", s.Name, s.KeyType.Name)
	var flags []string
	for _, f := range []struct {
		on   bool
		name string
	}{{s.Dynamic, "dynamic"}, {s.Interval, "interval"}, {s.HasTimeout, "timeout"}} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	if len(flags) > 0 {
		fmt.Fprintf(b, "\n\t\tflags %s", strings.Join(flags, ","))
	}
	if s.Size > 0 {
		fmt.Fprintf(b, "\n\t\tsize %d", s.Size)
	}
	if s.Counter {
		b.WriteString("\n\t\tcounter")
	}
	if s.Timeout > 0 {
		fmt.Fprintf(b, "\n\t\ttimeout %s", nftDuration(s.Timeout))
	}
	if len(els) > 0 {
		texts, err := elementTexts(els)
		if err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		sep := ",\n\t\t\t     "
		if s.Name == rules.SetAllow4 || s.Name == rules.SetAllow6 {
			sep = ", "
		}
		fmt.Fprintf(b, "\n\t\telements = { %s }", strings.Join(texts, sep))
	}
	b.WriteString("\n\t}")
	return nil
}

// elementTexts decodes kernel elements (an interval as its start and the
// flagged end, or none at the end of the address space) into nft syntax.
func elementTexts(els []nftables.SetElement) ([]string, error) {
	var out []string
	for i := 0; i < len(els); i++ {
		e := els[i]
		if e.IntervalEnd {
			return nil, fmt.Errorf("interval end %x without a start", e.Key)
		}
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			return nil, fmt.Errorf("key %x", e.Key)
		}
		bits := a.BitLen()
		if i+1 < len(els) && els[i+1].IntervalEnd {
			end, _ := netip.AddrFromSlice(els[i+1].Key)
			bits = -1
			for n := 0; n <= a.BitLen(); n++ {
				p := netip.PrefixFrom(a, n)
				if p.Masked().Addr() == a && lastPlusOne(p) == end {
					bits = n
					break
				}
			}
			if bits < 0 {
				return nil, fmt.Errorf("interval %s-%s is no prefix", a, end)
			}
			i++
		} else if a.Is4() && a == netip.IPv4Unspecified() || a.Is6() && a == netip.IPv6Unspecified() {
			// The whole address space is an interval with no end element:
			// only a /0 start can stand alone at the zero address here.
			bits = 0
		}
		text := a.String()
		if bits != a.BitLen() {
			text = netip.PrefixFrom(a, bits).String()
		}
		if e.Timeout > 0 {
			text += " timeout " + nftDuration(e.Timeout)
		}
		if e.Comment != "" {
			text += ` comment "` + e.Comment + `"`
		}
		out = append(out, text)
	}
	return out, nil
}

// lastPlusOne is the address after p (the zero address past the end).
func lastPlusOne(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= p.Bits() {
				b[i] |= 0x80 >> j
			}
		}
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i]++; b[i] != 0 {
			break
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func nftDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	return strconv.Itoa(int(d/time.Millisecond)) + "ms"
}

var hookNames = map[nftables.ChainHook]string{0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting", 5: "ingress"}

func writeChain(b *strings.Builder, c *nftables.Chain, plan *nft.Plan, sets map[string]*nftables.Set) error {
	if c.Type != nftables.ChainTypeFilter || c.Policy == nil || *c.Policy != nftables.ChainPolicyAccept || c.Hooknum == nil || c.Priority == nil {
		return fmt.Errorf("chain %s: not an accepting filter base chain: %+v", c.Name, c)
	}
	dev := ""
	if c.Device != "" {
		dev = ` device "` + c.Device + `"`
	}
	fmt.Fprintf(b, "\n\n\tchain %s {\n\t\ttype filter hook %s%s priority %d; policy accept;", c.Name, hookNames[*c.Hooknum], dev, *c.Priority)
	for _, op := range plan.Ops {
		if op.Kind != nft.OpAddRule || op.Name != c.Name {
			continue
		}
		text, err := ruleText(op.Rule.Exprs(), op.Rule.Ports, sets)
		if err != nil {
			return fmt.Errorf("chain %s: %w", c.Name, err)
		}
		if c, ok := userdata.GetString(op.Rule.UserData(), userdata.TypeComment); ok {
			text += ` comment "` + c + `"`
		}
		b.WriteString("\n\t\t" + text)
	}
	b.WriteString("\n\t}")
	return nil
}

// ruleText decodes the expressions synban's rules use into nft syntax.
// reg is the text of what register 1 holds, until a match consumes it.
func ruleText(exprs []expr.Any, ports []uint16, sets map[string]*nftables.Set) (string, error) {
	var out []string
	reg := ""
	for i := 0; i < len(exprs); i++ {
		next := func() expr.Any {
			if i+1 < len(exprs) {
				return exprs[i+1]
			}
			return nil
		}
		switch e := exprs[i].(type) {
		case *expr.Meta:
			c, ok := next().(*expr.Cmp)
			if !ok || e.Register != 1 || c.Op != expr.CmpOpEq || len(c.Data) != 1 {
				return "", fmt.Errorf("meta %d without a compare", e.Key)
			}
			i++
			switch {
			case e.Key == expr.MetaKeyNFPROTO:
				// nft adds the family check of `ip saddr` in an inet table.
				want := map[byte]int{unix.NFPROTO_IPV4: 12, unix.NFPROTO_IPV6: 8}[c.Data[0]]
				p, ok := next().(*expr.Payload)
				if !ok || int(p.Offset) != want || p.Base != expr.PayloadBaseNetworkHeader {
					return "", fmt.Errorf("nfproto %d check not followed by its saddr", c.Data[0])
				}
			case e.Key == expr.MetaKeyL4PROTO && c.Data[0] == unix.IPPROTO_TCP:
				// Implied by a following tcp header match.
				if p, ok := next().(*expr.Payload); !ok || p.Base != expr.PayloadBaseTransportHeader {
					out = append(out, "meta l4proto tcp")
				}
			default:
				return "", fmt.Errorf("meta %d == %x", e.Key, c.Data)
			}
		case *expr.Payload:
			switch {
			case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 12 && e.Len == 4:
				reg = "ip saddr"
			case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 8 && e.Len == 16:
				reg = "ip6 saddr"
			case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 && e.Len == 2:
				reg = "tcp dport"
			case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 13 && e.Len == 1:
				reg = "tcp flags"
			default:
				return "", fmt.Errorf("payload %+v", e)
			}
		case *expr.Ct:
			if e.Key != expr.CtKeySTATE {
				return "", fmt.Errorf("ct key %d", e.Key)
			}
			reg = "ct state"
		case *expr.Bitwise:
			switch reg {
			case "ip6 saddr":
				m, _ := netip.AddrFromSlice(e.Mask)
				reg += " & " + m.String()
			case "tcp flags":
				reg += " & (" + strings.Join(tcpFlags(e.Mask[0]), " | ") + ")"
			case "ct state":
				if c, ok := next().(*expr.Cmp); !ok || c.Op != expr.CmpOpNeq || binary.NativeEndian.Uint32(e.Mask) != expr.CtStateBitNEW {
					return "", fmt.Errorf("ct state match %+v", e)
				}
				i++
				out = append(out, "ct state new")
				reg = ""
			default:
				return "", fmt.Errorf("bitwise on %q", reg)
			}
		case *expr.Cmp:
			if e.Op != expr.CmpOpEq {
				return "", fmt.Errorf("cmp op %d", e.Op)
			}
			switch {
			case reg == "tcp dport" && len(e.Data) == 2:
				out = append(out, fmt.Sprintf("tcp dport %d", binary.BigEndian.Uint16(e.Data)))
			case strings.HasPrefix(reg, "tcp flags") && len(e.Data) == 1:
				out = append(out, reg+" == "+strings.Join(tcpFlags(e.Data[0]), " | "))
			default:
				return "", fmt.Errorf("compare of %q with %x", reg, e.Data)
			}
			reg = ""
		case *expr.Lookup:
			if strings.HasPrefix(e.SetName, "__set") {
				s := make([]string, len(ports))
				for i, p := range ports {
					s[i] = strconv.Itoa(int(p))
				}
				out = append(out, reg+" { "+strings.Join(s, ", ")+" }")
			} else {
				if sets[e.SetName] == nil {
					return "", fmt.Errorf("lookup in set %s, which the plan does not create before", e.SetName)
				}
				out = append(out, reg+" @"+e.SetName)
			}
			reg = ""
		case *expr.Dynset:
			if sets[e.SetName] == nil || len(e.Exprs) != 1 {
				return "", fmt.Errorf("dynset %+v", e)
			}
			verb := map[uint32]string{unix.NFT_DYNSET_OP_ADD: "add", unix.NFT_DYNSET_OP_UPDATE: "update"}[e.Operation]
			var stmt string
			switch x := e.Exprs[0].(type) {
			case *expr.Limit:
				if !x.Over || x.Unit != expr.LimitTimeSecond || x.Type != expr.LimitTypePkts {
					return "", fmt.Errorf("limit %+v", x)
				}
				stmt = fmt.Sprintf("limit rate over %d/second burst %d packets", x.Rate, x.Burst)
			case *expr.Connlimit:
				if x.Flags != expr.NFT_CONNLIMIT_F_INV {
					return "", fmt.Errorf("connlimit %+v", x)
				}
				stmt = fmt.Sprintf("ct count over %d", x.Count)
			case *expr.Counter:
				stmt = "counter"
			default:
				return "", fmt.Errorf("dynset statement %T", x)
			}
			out = append(out, fmt.Sprintf("%s @%s { %s %s }", verb, e.SetName, reg, stmt))
			reg = ""
		case *expr.Counter:
			out = append(out, "counter")
		case *expr.Verdict:
			v := map[expr.VerdictKind]string{expr.VerdictAccept: "accept", expr.VerdictDrop: "drop"}[e.Kind]
			if v == "" {
				return "", fmt.Errorf("verdict %d", e.Kind)
			}
			out = append(out, v)
		default:
			return "", fmt.Errorf("expression %T", e)
		}
	}
	if reg != "" {
		return "", fmt.Errorf("%q loaded but never matched", reg)
	}
	return strings.Join(out, " "), nil
}

func tcpFlags(m byte) []string {
	var out []string
	for i, n := range []string{"fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"} {
		if m&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}
