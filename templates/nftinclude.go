package templates

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/synban/synban/rules"
)

// NFTInclude writes the file `synban render nft-include` prints, for
// /etc/nftables.conf to include (`include "/etc/nftables.d/synban.nft"`) so
// that synban's nftables structure survives `systemctl restart nftables`;
// the next run refills the sets from the state store. Elements (bans,
// allow entries) are never in it.
//
// In table mode it is synban's whole table (sets and base chains with their
// rules), written so that loading it again keeps the sets' elements. In sets
// mode (rs.SetsMode) it declares synban's sets inside the operator's table
// rs.Table and shows, commented out, the rules the operator pastes into
// their own chains.
func NFTInclude(w io.Writer, rs *rules.Ruleset, source string) error {
	d, err := newNFTData(rs, source)
	if err != nil {
		return fmt.Errorf("render nft include: %w", err)
	}
	d.NoElements = true
	name := "nftinclude"
	if rs.SetsMode() {
		name = "setsinclude"
	}
	return execute(w, name, d, "render nft include")
}

// setElementsData is what the "elements" template renders: per set, its
// elements in nft syntax.
type setElementsData struct {
	// T is "FAMILY TABLE".
	T    string
	Sets []setElems
}

type setElems struct {
	Name string
	// Allow marks an allow set, which is replaced (flushed first).
	Allow bool
	Elems []string
}

// setElements lists the allow and ban sets of d with their elements.
func setElements(d nftData) setElementsData {
	out := setElementsData{T: d.RS.Family + " " + d.RS.Table}
	add := func(ok bool, name string, allow bool) {
		if !ok {
			return
		}
		s := setElems{Name: name, Allow: allow}
		if allow {
			for _, p := range d.RS.AllowIn(name) {
				s.Elems = append(s.Elems, Elem(p))
			}
		} else {
			for _, b := range d.RS.BansIn(name) {
				e := Elem(b.Prefix)
				if b.Timeout > 0 {
					e += " timeout " + Duration(b.Timeout)
				}
				if c := rules.CommentSafe(b.Reason); c != "" {
					e += ` comment "` + c + `"`
				}
				s.Elems = append(s.Elems, e)
			}
		}
		out.Sets = append(out.Sets, s)
	}
	add(d.V4, d.N.Allow4, true)
	add(d.V6, d.N.Allow6, true)
	add(d.V4, d.N.Ban4, false)
	add(d.V4, d.N.BanNet4, false)
	add(d.V6, d.N.Ban6, false)
	add(d.V6, d.N.BanNet6, false)
	return out
}

// exampleRules renders the rules of one base chain carrying everything rs
// has (allow, bans, meter, connection cap), one per line without the
// leading tabs, for the sets-mode include file to show as comments.
func exampleRules(d nftData) ([]string, error) {
	t, err := parse()
	if err != nil {
		return nil, err
	}
	c := rules.BaseChain{Meter: true, ConnLimit: true}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "chainrules", nftChain{D: d, C: c}); err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, "\t"+l)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no example rules")
	}
	return out, nil
}
