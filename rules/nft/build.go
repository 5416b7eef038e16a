package nft

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"

	"github.com/synban/synban/rules/nft/spec"
)

// ruleFingerprint is the rule r of the Spec as compared with the kernel's
// rules.
func ruleFingerprint(r spec.RuleSpec) string {
	ports := portsString(r.Ports)
	return fingerprint(r.Exprs(), r.UserData(), func(string) string { return ports })
}

func portsString(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	slices.Sort(s)
	return strings.Join(s, ",")
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
