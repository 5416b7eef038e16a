package templates

import (
	"bytes"
	_ "embed" // for the iptables template
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/template"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/ipt"
)

//go:embed iptables.tmpl
var iptablesTmpl string

// iptSet is one ipset as iptables.tmpl renders it.
type iptSet struct {
	Name, Type, Family string
	Timeout, Counters  bool
	MaxElem            int
	// Entries are the arguments of each `add` line after the set name.
	Entries []string
}

// iptFamily is one family's iptables-restore fragment.
type iptFamily struct {
	// Restore is the program that reads the fragment.
	Restore string
	// Rules are the chain's rules after "-A CHAIN".
	Rules []string
}

// iptData is what iptables.tmpl renders.
type iptData struct {
	Chain, Jump, JumpComment string
	Jumps                    []string
	Sets                     []iptSet
	Families                 []iptFamily
}

// IPTables writes rs as the iptables + ipset backend would apply it with
// chain as synban's chain ("" means ipt.DefaultChain): first the ipsets in
// `ipset restore` syntax (create with -exist, the allow sets flushed and
// refilled, each ban added with its timeout in seconds and its reason as
// comment), then an iptables-restore fragment for `--noflush` (*filter,
// declare and flush the chain, its rules, the jumps from the hooked
// built-in chains, COMMIT) for IPv4 and one for ip6tables-restore, each part
// starting with a "### " comment line naming the program that reads it.
func IPTables(w io.Writer, rs *rules.Ruleset, chain string) error {
	if rs == nil {
		return errors.New("render iptables: nil ruleset")
	}
	if chain == "" {
		chain = ipt.DefaultChain
	}
	if strings.ContainsAny(chain, " \t\n") {
		return fmt.Errorf("render iptables: chain name %q has white space", chain)
	}
	hooks, err := ipt.HookChains(rs)
	if err != nil {
		return fmt.Errorf("render iptables: %w", err)
	}
	d := iptData{
		Chain:       chain,
		Jump:        strings.Join(ipt.JumpRule(chain), " "),
		JumpComment: ipt.JumpComment,
		Jumps:       hooks,
	}
	sets := map[string]*iptSet{}
	for _, s := range ipt.IPSets(rs) {
		d.Sets = append(d.Sets, iptSet{Name: s.Name, Type: s.Type, Family: s.Family(), Timeout: s.Timeout, Counters: s.Counters, MaxElem: s.MaxElem})
	}
	for i := range d.Sets {
		sets[d.Sets[i].Name] = &d.Sets[i]
	}
	for _, v6 := range []bool{false, true} {
		set := sets[ipt.IPSetAllow4]
		if v6 {
			set = sets[ipt.IPSetAllow6]
		}
		for _, p := range ipt.AllowEntries(rs, v6) {
			set.Entries = append(set.Entries, p.String())
		}
	}
	for _, b := range rs.Bans {
		if !b.Prefix.IsValid() || b.Prefix.Bits() == 0 {
			return fmt.Errorf("render iptables: invalid ban prefix %v", b.Prefix)
		}
		name, elem := ipt.BanEntry(b.Prefix)
		e := elem + " timeout " + strconv.FormatUint(uint64(ipt.TimeoutSeconds(b.Timeout)), 10)
		if c := ipt.Comment(b.Reason); c != "" {
			e += ` comment "` + c + `"`
		}
		sets[name].Entries = append(sets[name].Entries, e)
	}
	for _, f := range []struct {
		restore string
		v6      bool
	}{{"iptables-restore", false}, {"ip6tables-restore", true}} {
		fam := iptFamily{Restore: f.restore}
		for _, r := range ipt.ChainRules(rs, f.v6) {
			fam.Rules = append(fam.Rules, strings.Join(r, " "))
		}
		d.Families = append(d.Families, fam)
	}
	t, err := template.New("iptables.tmpl").Parse(iptablesTmpl)
	if err != nil {
		return fmt.Errorf("render iptables: parse template: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return fmt.Errorf("render iptables: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("render iptables: write: %w", err)
	}
	return nil
}

// IPTablesString is IPTables into a string.
func IPTablesString(rs *rules.Ruleset, chain string) (string, error) {
	var b strings.Builder
	if err := IPTables(&b, rs, chain); err != nil {
		return "", err
	}
	return b.String(), nil
}
