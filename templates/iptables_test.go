package templates

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/ipt"
)

// checkGoldenIPT compares got with testdata/golden/name.iptables, or
// rewrites it under SYNBAN_UPDATE_GOLDEN=1.
func checkGoldenIPT(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(goldenDir, name+".iptables")
	if updating() {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run SYNBAN_UPDATE_GOLDEN=1 go test ./templates/ to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("rendering differs from %s (SYNBAN_UPDATE_GOLDEN=1 go test ./templates/ rewrites it)\n%s", path, lineDiff(string(want), string(got)))
	}
}

// iptParts splits a rendering at its "### " lines into the ipset part and
// the IPv4 and IPv6 restore fragments, checking each part's heading.
func iptParts(t *testing.T, s string) (ipset, v4, v6 string) {
	t.Helper()
	parts := strings.Split(s, "\n### ")
	if len(parts) != 4 {
		t.Fatalf("want a header and 3 parts, got %d pieces:\n%s", len(parts), s)
	}
	for i, head := range []string{"ipset restore\n", "iptables-restore --noflush\n", "ip6tables-restore --noflush\n"} {
		if !strings.HasPrefix(parts[i+1], head) {
			t.Fatalf("part %d starts %q, want %q", i+1, strings.SplitN(parts[i+1], "\n", 2)[0], head)
		}
		// Splitting took the newline ending the part before each "### ".
		parts[i+1] = strings.TrimSuffix(strings.TrimPrefix(parts[i+1], head), "\n") + "\n"
	}
	return parts[1], parts[2], parts[3]
}

func TestIPTablesHandRulesets(t *testing.T) {
	for name, rs := range handRulesets() {
		if rs.Family != "inet" {
			continue // the iptables backend has no table family
		}
		t.Run(name, func(t *testing.T) {
			got, err := IPTablesString(rs, "")
			if err != nil {
				t.Fatal(err)
			}
			checkGoldenIPT(t, name, []byte(got))
			_, v4, v6 := iptParts(t, got)
			for _, h := range rs.Hooks {
				jump := "-I " + strings.ToUpper(h) + " 1 -m comment --comment synban -j SYNBAN\n"
				if !strings.Contains(v4, jump) || !strings.Contains(v6, jump) {
					t.Errorf("hook %s: no %q in both fragments", h, jump)
				}
			}
		})
	}
}

func TestIPTablesErrors(t *testing.T) {
	var b bytes.Buffer
	if err := IPTables(&b, nil, ""); err == nil {
		t.Error("nil ruleset accepted")
	}
	rs := handRulesets()["hand-empty"]
	rs.Hooks = []string{"prerouting"}
	if err := IPTables(&b, rs, ""); err == nil {
		t.Error("hook prerouting accepted")
	}
	rs.Hooks = []string{"input"}
	if err := IPTables(&b, rs, "MY CHAIN"); err == nil {
		t.Error("chain name with a space accepted")
	}
	rs.Bans = []rules.Ban{{Prefix: netip.MustParsePrefix("0.0.0.0/0")}}
	if err := IPTables(&b, rs, ""); err == nil {
		t.Error("ban of 0.0.0.0/0 accepted")
	}
	if b.Len() != 0 {
		t.Errorf("errors still wrote %q", b.String())
	}
}

// TestIPTablesRestores feeds the three parts to ipset restore and to
// iptables-restore --noflush (nf_tables and legacy builds) in a throwaway
// namespace, twice for the ipsets, then has the rules/ipt backend apply the
// same ruleset there: it must find nothing to create or change, which shows
// the dry run and the backend build the same thing.
func TestIPTablesRestores(t *testing.T) {
	rs := handRulesets()["hand-full"]
	rs.Hooks = []string{"input"}
	for i := range rs.Bans {
		// Long enough not to expire between the restore and the Apply.
		rs.Bans[i].Timeout = max(rs.Bans[i].Timeout, time.Hour)
	}
	text, err := IPTablesString(rs, "")
	if err != nil {
		t.Fatal(err)
	}
	sets, v4, v6 := iptParts(t, text)
	for _, prog := range []string{"iptables", "iptables-legacy"} {
		t.Run(prog, func(t *testing.T) {
			netnstest.RequireRoot(t)
			netnstest.RequireCommand(t, "ipset")
			netnstest.RequireCommand(t, prog)
			ns := netnstest.New(t, "iptrender")
			feed := func(input string, argv ...string) {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				cmd := ns.Command(ctx, argv...)
				cmd.Stdin = strings.NewReader(input)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s rejected its part: %v\n%s\ninput:\n%s", strings.Join(argv, " "), err, out, input)
				}
			}
			restore4 := strings.Replace(prog, "iptables", "iptables-restore", 1)
			if prog == "iptables-legacy" {
				restore4 = "iptables-legacy-restore"
			}
			restore6 := strings.Replace(restore4, "iptables", "ip6tables", 1)
			feed(sets, "ipset", "restore")
			feed(sets, "ipset", "restore") // -exist: a second run is fine
			feed(v4, restore4, "--noflush", "--test")
			feed(v4, restore4, "--noflush")
			feed(v6, restore6, "--noflush")

			b, err := ipt.New(ipt.Options{NetNS: ns.Path(), Path: prog})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := b.Apply(ctx, rs)
			if err != nil {
				t.Fatalf("Apply over the restored ruleset: %v", err)
			}
			if res.Created || len(res.Changed) != 0 || res.Added != 0 || res.Refreshed != len(rs.Bans) {
				t.Errorf("the backend differs from the rendering: Apply over it gave %+v, want only %d refreshed", res, len(rs.Bans))
			}
			bans, err := b.Bans(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(bans) != len(rs.Bans) {
				t.Errorf("restored %d bans, want %d: %+v", len(bans), len(rs.Bans), bans)
			}
		})
	}
}
