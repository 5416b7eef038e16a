package spec

import "testing"

// TestFragmentText checks the nft text of the builders whose expressions
// depend on their arguments: the IPv6 meter key's mask and the port match.
func TestFragmentText(t *testing.T) {
	keys := map[int]string{
		64:  "& ffff:ffff:ffff:ffff::",
		56:  "& ffff:ffff:ffff:ff00::",
		48:  "& ffff:ffff:ffff::",
		17:  "& ffff:8000::",
		127: "& ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
	}
	for bits, want := range keys {
		if got := v6Mask(bits).text; got != want {
			t.Errorf("v6Mask(%d) = %q, want %q", bits, got, want)
		}
	}
	ports := []struct {
		in      []uint16
		implied bool
		want    string
		lookup  bool
		nexprs  int
	}{
		{nil, true, "", false, 2},
		{nil, false, "meta l4proto tcp", false, 2},
		{[]uint16{80}, true, "tcp dport 80", false, 4},
		{[]uint16{80, 443}, false, "tcp dport { 80, 443 }", true, 4},
	}
	for _, tc := range ports {
		f, anon, l := tcpPorts(tc.in, tc.implied)
		if f.text != tc.want || (l != nil) != tc.lookup || len(f.exprs) != tc.nexprs || (l != nil && len(anon) != len(tc.in)) {
			t.Errorf("tcpPorts(%v, %v) = %q, %d exprs, lookup %v; want %q, %d, %v", tc.in, tc.implied, f.text, len(f.exprs), l != nil, tc.want, tc.nexprs, tc.lookup)
		}
	}
}
