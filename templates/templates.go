// Package templates renders synban's backend-neutral rules.Ruleset as text
// in each firewall's own syntax (nft scripts, iptables-restore fragments,
// route commands), for dry runs and for operators who apply it themselves.
// The templates are embedded with go:embed.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/template"
	"time"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/nft/spec"
)

//go:embed *.tmpl
var files embed.FS

// nftData is what nft.tmpl renders: the frame around the objects of Spec,
// which the rules/nft backend builds the same way for Apply.
type nftData struct {
	RS     *rules.Ruleset
	Spec   *spec.Spec
	Source string
	// NoElements leaves the set elements out (the include file).
	NoElements bool
}

// nftFuncs are the helpers nft.tmpl calls.
func nftFuncs() template.FuncMap {
	return template.FuncMap{
		"join":         strings.Join,
		"exampleRules": spec.ExampleRules,
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
	sp, err := spec.Build(rs)
	if err != nil {
		return nftData{}, err
	}
	return nftData{RS: rs, Spec: sp, Source: oneLine(source)}, nil
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
// address (/32, /128), otherwise address/length (spec.Elem).
func Elem(p netip.Prefix) string { return spec.Elem(p) }

// Duration renders d for nft: whole seconds as "600s", otherwise whole
// milliseconds, rounded up, as "1500ms" (spec.Duration).
func Duration(d time.Duration) string { return spec.Duration(d) }

// oneLine makes s safe for a one-line comment.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
