package templates

import (
	"strings"
	"testing"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
)

// TestRulesetFormats: the dry run's dispatch renders each format with the
// policy's settings for that backend, exactly as the format's own renderer,
// and refuses an unknown one.
func TestRulesetFormats(t *testing.T) {
	p := policy.Default()
	rs, _, err := rules.Compile(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	nft, _ := NFTString(rs, p.Source)
	ipt, _ := IPTablesString(rs, p.IPTables.Chain)
	route, _ := RouteString(rs, p.Route.Type, p.Route.Protocol)
	for format, want := range map[string]string{FormatNFT: nft, FormatIPTables: ipt, FormatRoute: route} {
		var b strings.Builder
		if err := Ruleset(&b, rs, p, format); err != nil || b.String() != want || want == "" {
			t.Errorf("Ruleset(%s) = %v, differs from its renderer:\n%s\nwant\n%s", format, err, b.String(), want)
		}
		if err := CheckFormat(format); err != nil {
			t.Errorf("CheckFormat(%s): %v", format, err)
		}
	}
	for backend, want := range map[string]string{"nftables": FormatNFT, "iptables": FormatIPTables, "route": FormatRoute} {
		if got := FormatFor(backend); got != want {
			t.Errorf("FormatFor(%s) = %s, want %s", backend, got, want)
		}
	}
	if FormatFor("") != FormatNFT || CheckFormat("") != nil {
		t.Error("no backend: want the nft format, and \"\" accepted")
	}
	if err := CheckFormat("xml"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("CheckFormat(xml) = %v, want an error naming it", err)
	}
	if err := Ruleset(&strings.Builder{}, rs, p, "xml"); err == nil {
		t.Error("Ruleset(xml): no error")
	}
}
