package templates

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/engine"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
)

// goldenHost is the fixed host the pipeline cases protect, standing in for
// the addresses of the machine running synban.
var goldenHost = []policy.Protected{
	{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Why: "host address"},
	{Prefix: netip.MustParsePrefix("2001:db8::1/128"), Why: "host address"},
}

// pipelineCase runs fixtures through the whole dry-run pipeline: the procfs
// sampler, detect.Analyze, rules.Compile and templates.NFT.
type pipelineCase struct {
	name string
	// policy is "default" for the embedded default, else a file name under
	// testdata/policy.
	policy string
	// fixtures are directories under testdata/proc; their connections are
	// merged into one reading, as if one host's table held them all, and
	// the window holds policy.Sample.Count copies of that reading.
	fixtures []string
}

func pipelineCases() []pipelineCase {
	return []pipelineCase{
		{"default-single-flood", "default", []string{"single-flood"}},
		{"default-prefix-flood", "default", []string{"prefix-flood"}},
		{"default-mixed", "default", []string{"mixed"}},
		{"default-malformed", "default", []string{"malformed"}},
		{"default-quiet", "default", []string{"quiet"}},
		{"default-single-and-mixed", "default", []string{"single-flood", "mixed"}},
		{"example-all-floods", "example.toml", []string{"single-flood", "prefix-flood", "mixed"}},
		{"meter-ports-single-flood", "golden-meter-ports.toml", []string{"single-flood"}},
		{"meter-off-prefix-flood", "golden-meter-off.toml", []string{"prefix-flood"}},
		{"connlimit-mixed", "golden-connlimit.toml", []string{"mixed"}},
		{"connlimit-ports-quiet", "golden-connlimit-ports.toml", []string{"quiet"}},
		{"forward-single-and-prefix", "golden-forward.toml", []string{"single-flood", "prefix-flood"}},
		{"meter-v6-128-mixed", "golden-meter-v6-128.toml", []string{"mixed"}},
		{"custom-table-all-floods", "golden-custom-table.toml", []string{"single-flood", "prefix-flood", "mixed"}},
	}
}

func loadGoldenPolicy(t *testing.T, name string) *policy.Policy {
	t.Helper()
	if name == "default" {
		return policy.Default()
	}
	p, err := policy.Load(filepath.Join("..", "testdata", "policy", name))
	if err != nil {
		t.Fatalf("load policy: %v", err)
	}
	// A stable source name, whatever the working directory.
	p.Source = "testdata/policy/" + name
	return p
}

func TestNFTGoldenPipeline(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the testdata/proc fixtures hold addresses as a little-endian kernel prints them")
	}
	// What the goldens must show, over all cases.
	var sawV6Ban, sawMappedAsV4, saw24, sawMulti, sawOmitted bool
	for _, tc := range pipelineCases() {
		t.Run(tc.name, func(t *testing.T) {
			pr := runPipeline(t, tc)
			p, g, rep, rs, om, mappedV4 := pr.policy, pr.guard, pr.report, pr.rs, pr.omitted, pr.mappedV4
			if got := len(rs.Bans) + len(om); got != len(rep.Verdicts) {
				t.Errorf("%d bans + %d omitted != %d verdicts", len(rs.Bans), len(om), len(rep.Verdicts))
			}
			for _, b := range rs.Bans {
				if why, ok := g.Protects(b.Prefix); ok {
					t.Errorf("ban %s touches a protected prefix: %s", b.Prefix, why)
				}
				sawV6Ban = sawV6Ban || b.Prefix.Addr().Is6()
				sawMappedAsV4 = sawMappedAsV4 || (b.Prefix.Bits() == 32 && mappedV4[b.Prefix.Addr()])
				sawMappedAsV4 = sawMappedAsV4 || (b.Prefix.Addr().Is4() && b.Prefix.Bits() < 32 && containsAny(b.Prefix, mappedV4))
				saw24 = saw24 || (b.Prefix.Addr().Is4() && b.Prefix.Bits() == 24)
			}
			for _, set := range []string{rules.SetBan4, rules.SetBan6, rules.SetBanNet4, rules.SetBanNet6} {
				sawMulti = sawMulti || len(rs.BansIn(set)) > 1
			}
			sawOmitted = sawOmitted || slices.ContainsFunc(om, func(o rules.Omission) bool {
				return strings.HasPrefix(o.Why, "over max_entries")
			})

			script, err := NFTString(rs, p.Source)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tc.name, []byte(script))
			nftCheck(t, []byte(script))
		})
	}
	if !sawV6Ban || !sawMappedAsV4 || !saw24 || !sawMulti || !sawOmitted {
		t.Errorf("the goldens miss a required feature: IPv6 ban %v, IPv4-mapped source banned as IPv4 %v, /24 ban %v, ban set with >1 element %v, max_entries omission %v",
			sawV6Ban, sawMappedAsV4, saw24, sawMulti, sawOmitted)
	}
}

// pipelineResult is what runPipeline computes for one case.
type pipelineResult struct {
	policy  *policy.Policy
	guard   *policy.Guard
	report  detect.Report
	rs      *rules.Ruleset
	omitted []rules.Omission
	// mappedV4 are the IPv4 sources read from tcp6 files.
	mappedV4 map[netip.Addr]bool
}

// runPipeline samples the case's fixtures, analyzes the window and
// compiles the verdicts, as the dry run does.
func runPipeline(t *testing.T, tc pipelineCase) pipelineResult {
	t.Helper()
	p := loadGoldenPolicy(t, tc.policy)
	g := p.Guard(goldenHost)
	var merged detect.Sample
	mappedV4 := map[netip.Addr]bool{}
	for _, fx := range tc.fixtures {
		root := filepath.Join("..", "testdata", "proc", fx)
		s, err := detect.ProcFS{Root: root}.Sample(context.Background())
		if err != nil {
			t.Fatalf("sample %s: %v", fx, err)
		}
		merged.Conns = append(merged.Conns, s.Conns...)
		merged.Malformed += s.Malformed
		for _, a := range tcp6Mapped(t, root) {
			mappedV4[a] = true
		}
	}
	// The reading repeats over the policy's whole window: the flood
	// persists, so K-of-N policies see it too.
	window := make([]detect.Sample, max(p.Sample.Count, 1))
	for i := range window {
		window[i] = merged
	}
	rep := detect.Analyze(p, window, g)
	rs, om, err := rules.Compile(p, engine.Offences(rep.Verdicts), g)
	if err != nil {
		t.Fatal(err)
	}
	return pipelineResult{policy: p, guard: g, report: rep, rs: rs, omitted: om, mappedV4: mappedV4}
}

// tcp6Mapped returns the IPv4 remotes that a fixture's tcp6 file holds as
// IPv4-mapped IPv6 addresses.
func tcp6Mapped(t *testing.T, root string) []netip.Addr {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "net", "tcp6"))
	if err != nil {
		return nil // no tcp6 in this fixture
	}
	defer f.Close()
	conns, _, err := detect.ParseProcNet(f, nil)
	if err != nil {
		t.Fatalf("parse %s: %v", f.Name(), err)
	}
	var out []netip.Addr
	for _, c := range conns {
		if c.Remote.Addr().Is4() {
			out = append(out, c.Remote.Addr())
		}
	}
	return out
}

func containsAny(p netip.Prefix, addrs map[netip.Addr]bool) bool {
	for a := range addrs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
