package rules_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/templates"
)

// TestMaxTimeoutIsWhatNFTAccepts renders, through rules.Compile and the nft
// template, a ruleset whose ban and meter timeouts sit at policy.MaxTimeout
// (a stored ban until 2099, capped) and loads it with nft into a throwaway
// namespace; then the same script with one more second, which nft must
// refuse. So the constant is exactly the limit of the rendering synban uses.
func TestMaxTimeoutIsWhatNFTAccepts(t *testing.T) {
	netnstest.RequireRoot(t)
	nft := netnstest.RequireCommand(t, "nft")
	p := policy.Default()
	p.Ban.MaxDuration.Duration = policy.MaxTimeout
	p.Meter.IdleTimeout.Duration = policy.MaxTimeout
	if err := p.Validate(); err != nil {
		t.Fatalf("a policy at the limit does not validate: %v", err)
	}
	until2099 := time.Until(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))
	vs := []rules.Offence{{Subject: netip.MustParsePrefix("203.0.113.7/32"), BanFor: until2099, Reason: "manual ban", Sources: 1}}
	rs, om, err := rules.Compile(p, vs, nil)
	if err != nil || len(om) != 0 {
		t.Fatalf("Compile: %v, omitted %v", err, om)
	}
	if rs.Bans[0].Timeout != policy.MaxTimeout || rs.Meter.Timeout != policy.MaxTimeout {
		t.Fatalf("timeouts %s and %s, want %s", rs.Bans[0].Timeout, rs.Meter.Timeout, policy.MaxTimeout)
	}
	script, err := templates.NFTString(rs, "limit test")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(script, "timeout 99999999s"); n != 3 {
		t.Fatalf("script has %d timeouts of 99999999s, want 3 (one ban, two meters):\n%s", n, script)
	}
	ns := netnstest.New(t, "maxto")
	dir := t.TempDir()
	load := func(text string) (string, error) {
		f := filepath.Join(dir, "s.nft")
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return ns.Run(nft, "-f", f)
	}
	if out, err := load(script); err != nil {
		t.Fatalf("nft refused timeouts at policy.MaxTimeout: %v\n%s", err, out)
	}
	if out := ns.MustRun(nft, "list", "set", "inet", "synban", rules.SetBan4); !regexp.MustCompile(`203\.0\.113\.7 (counter packets 0 bytes 0 )?timeout 1157d9h46m39s`).MatchString(out) {
		t.Errorf("the kernel does not hold the ban at the limit:\n%s", out)
	}
	over := strings.ReplaceAll(script, "timeout 99999999s", "timeout 100000000s")
	out, err := load(over)
	if err == nil || !strings.Contains(out, "value too large") {
		t.Fatalf("nft accepted (or refused for another reason) a timeout one second over policy.MaxTimeout: %v\n%s", err, out)
	}
}
