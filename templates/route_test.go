package templates

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules"
)

func routeRuleset() *rules.Ruleset {
	return &rules.Ruleset{
		Table: "synban", Family: "inet", Hooks: []string{"input"}, Priority: -10, MaxEntries: 4096,
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("192.0.2.0/24")},
		Bans: []rules.Ban{
			{Prefix: netip.MustParsePrefix("192.0.2.77/32"), Timeout: time.Minute, Reason: "allowed, must be skipped"},
			{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Timeout: time.Hour, Reason: "syn-flood: 4000 syn_recv from 200 sources >= 200"},
			{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Timeout: 10 * time.Minute, Reason: "evil\nroute flush all"},
			{Prefix: netip.MustParsePrefix("2001:db8::7/128"), Timeout: 10 * time.Minute},
			{Prefix: netip.MustParsePrefix("2001:db8:1::/64"), Reason: "no expiry"},
		},
		Meter: &rules.Meter{Rate: 20, Burst: 40},
	}
}

// commands returns the non-comment, non-empty lines of an ip batch script.
func commands(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func TestRouteRender(t *testing.T) {
	rs := routeRuleset()
	out, err := RouteString(rs, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"route replace prohibit 198.51.100.0/24 proto 211",
		"route replace prohibit 203.0.113.7/32 proto 211",
		"route replace prohibit 2001:db8::7/128 proto 211",
		"route replace prohibit 2001:db8:1::/64 proto 211",
	}
	if got := commands(out); !slices.Equal(got, want) {
		t.Fatalf("commands:\n%s\nwant:\n%s\nfull output:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), out)
	}
	for _, w := range []string{"skipped 192.0.2.77/32: overlaps allowed 192.0.2.0/24", "ignored: SYN meter", "syn-flood: 4000 syn_recv from 200 sources >= 200", "evil route flush all"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}

	out, err = RouteString(rs, "blackhole", 199)
	if err != nil {
		t.Fatal(err)
	}
	if got := commands(out); len(got) != 4 || got[0] != "route replace blackhole 198.51.100.0/24 proto 199" {
		t.Errorf("blackhole/199 commands = %q", got)
	}
	for _, bad := range []struct {
		typ   string
		proto int
	}{{"drop", 211}, {"", 2}, {"", 300}} {
		if _, err := RouteString(rs, bad.typ, bad.proto); err == nil {
			t.Errorf("Route(type %q, proto %d) succeeded", bad.typ, bad.proto)
		}
	}
	if _, err := RouteString(nil, "", 0); err == nil {
		t.Error("Route(nil) succeeded")
	}
}

func TestRouteIPBatch(t *testing.T) {
	ns := netnstest.New(t, "tplroute")
	out, err := RouteString(routeRuleset(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // replace: running it twice is fine
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := ns.Command(ctx, "ip", "-batch", "-")
		cmd.Stdin = strings.NewReader(out)
		b, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("ip -batch rejected the rendering: %v: %s\n%s", err, b, out)
		}
	}
	var got []string
	for _, fam := range []string{"-4", "-6"} {
		var routes []struct{ Type, Dst, Protocol string }
		raw := ns.MustRun("ip", "-j", fam, "route", "show", "proto", "211")
		if err := json.Unmarshal([]byte(raw), &routes); err != nil {
			t.Fatalf("parse %q: %v", raw, err)
		}
		for _, r := range routes {
			got = append(got, r.Type+" "+r.Dst)
		}
	}
	slices.Sort(got)
	want := []string{"prohibit 198.51.100.0/24", "prohibit 2001:db8:1::/64", "prohibit 2001:db8::7", "prohibit 203.0.113.7"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("routes tagged proto 211 after ip -batch: %q, want %q", got, want)
	}
}
