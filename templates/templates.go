// Package templates renders synban's backend-neutral rules.Ruleset as text
// in each firewall's own syntax (nft scripts, iptables-restore fragments,
// route commands), for dry runs and for operators who apply it themselves.
// The templates are embedded with go:embed.
package templates

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/template"
	"time"

	"github.com/synban/synban/rules"
)

//go:embed *.tmpl
var files embed.FS

// nftNames are the set names the nft template uses, from rules' constants.
type nftNames struct {
	Allow4, Allow6, Ban4, Ban6, BanNet4, BanNet6, Meter4, Meter6, Conn4, Conn6 string
}

// nftData is what nft.tmpl renders.
type nftData struct {
	RS     *rules.Ruleset
	Source string
	// V4 and V6 say which address families the table's family carries.
	V4, V6 bool
	N      nftNames
	// Chains are the base chains of synban's table (RS.BaseChains).
	Chains []rules.BaseChain
	// NoElements leaves the set elements out (the include file).
	NoElements bool
}

// nftChain is what the "chainrules" template renders: one base chain of
// the ruleset d.
type nftChain struct {
	D nftData
	C rules.BaseChain
}

// nftFuncs are the helpers nft.tmpl calls.
func nftFuncs() template.FuncMap {
	return template.FuncMap{
		"elem":    Elem,
		"dur":     Duration,
		"comment": rules.CommentSafe,
		"dports":  dports,
		"v6key":   v6key,
		"chainData": func(d nftData, c rules.BaseChain) nftChain {
			return nftChain{D: d, C: c}
		},
		"setElements":  setElements,
		"exampleRules": exampleRules,
	}
}

// NFT writes rs as an nft script that `nft -f` accepts as it is and that
// atomically replaces synban's table (declare, delete, re-create, in one
// transaction). source names the policy the ruleset came from; it appears in
// a comment. In sets mode (rs.SetsMode) the script touches only synban's
// sets in the operator's table: it replaces the allow sets' elements and
// adds the bans, as the backend does.
func NFT(w io.Writer, rs *rules.Ruleset, source string) error {
	d, err := newNFTData(rs, source)
	if err != nil {
		return fmt.Errorf("render nft: %w", err)
	}
	name := "nft.tmpl"
	if rs.SetsMode() {
		name = "nftsets"
	}
	return execute(w, name, d, "render nft")
}

// newNFTData checks rs and builds what the nft templates render.
func newNFTData(rs *rules.Ruleset, source string) (nftData, error) {
	if rs == nil {
		return nftData{}, errors.New("nil ruleset")
	}
	d := nftData{
		RS:     rs,
		Source: oneLine(source),
		N: nftNames{
			Allow4: rules.SetAllow4, Allow6: rules.SetAllow6,
			Ban4: rules.SetBan4, Ban6: rules.SetBan6,
			BanNet4: rules.SetBanNet4, BanNet6: rules.SetBanNet6,
			Meter4: rules.SetMeter4, Meter6: rules.SetMeter6,
			Conn4: rules.SetConn4, Conn6: rules.SetConn6,
		},
		Chains: rs.BaseChains(),
	}
	switch rs.Family {
	case "inet":
		d.V4, d.V6 = true, true
	case "ip":
		d.V4 = true
	case "ip6":
		d.V6 = true
	default:
		return d, fmt.Errorf("table family %q: want inet, ip or ip6", rs.Family)
	}
	if rs.Table == "" {
		return d, errors.New("empty table name")
	}
	return d, nil
}

// parse parses the nft templates (nft.tmpl and nftinclude.tmpl).
func parse() (*template.Template, error) {
	return template.New("nft.tmpl").Funcs(nftFuncs()).ParseFS(files, "nft.tmpl", "nftinclude.tmpl")
}

// execute renders the template called name (from nft.tmpl and
// nftinclude.tmpl) with d into w; what prefixes errors.
func execute(w io.Writer, name string, d any, what string) error {
	t, err := parse()
	if err != nil {
		return fmt.Errorf("%s: parse template: %w", what, err)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, d); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("%s: write: %w", what, err)
	}
	return nil
}

// NFTString is NFT into a string.
func NFTString(rs *rules.Ruleset, source string) (string, error) {
	var b strings.Builder
	if err := NFT(&b, rs, source); err != nil {
		return "", err
	}
	return b.String(), nil
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

// dports renders a destination-port match followed by a space: "" for no
// ports, "tcp dport 80 " for one, "tcp dport { 80, 443 } " for several.
func dports(ports []uint16) string {
	switch len(ports) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("tcp dport %d ", ports[0])
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return "tcp dport { " + strings.Join(s, ", ") + " } "
}

// v6key is the IPv6 meter key: the source address, masked to bits unless
// bits is 128 (or out of range, taken as per address).
func v6key(bits int) string {
	if bits <= 0 || bits >= 128 {
		return "ip6 saddr"
	}
	var a [16]byte
	for i := 0; i < bits; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return "ip6 saddr & " + netip.AddrFrom16(a).String()
}

// oneLine makes s safe for a one-line comment.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
