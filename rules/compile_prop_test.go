package rules

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/policy"
)

// TestCompileMatchesReference: on random verdicts (duplicates, nested
// prefixes, IPv4-mapped and invalid subjects, forced and too broad bans,
// protected subjects, timeouts over ban.max_duration, reasons already
// capped or too long) and small max_entries, Compile returns exactly what
// the reference returns.
func TestCompileMatchesReference(t *testing.T) {
	subjects := []string{
		"198.51.100.1/32", "198.51.100.2/32", "198.51.100.200/32", "198.51.100.0/24", "198.51.0.0/16", "198.0.0.0/8",
		"203.0.113.5/32", "203.0.113.0/24", "0.0.0.0/0", "::ffff:198.51.100.1/128", "::ffff:198.51.100.0/120", "::ffff:0:0/64",
		"2001:db8::1/128", "2001:db8::2/128", "2001:db8::/64", "2001:db8::/48", "2001:db8::/16", "::/0",
	}
	reasons := []string{"", "restored from state", "old ban" + CappedNote, strings.Repeat("long reason ", 12), "quote \" and \\ tab\t"}
	omittedSeen, merged := 0, 0
	for seed := range 3000 {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		p := testPolicy()
		p.Ban.MaxEntries = 1 + r.IntN(6)
		p.Ban.MaxDuration.Duration = []time.Duration{0, time.Hour, 24 * time.Hour}[r.IntN(3)]
		p.Ban.MinIPv4Length, p.Ban.MinIPv6Length = []int{0, 16}[r.IntN(2)], []int{0, 32}[r.IntN(2)]
		var g *policy.Guard
		if r.IntN(2) == 0 {
			g = policy.NewGuard()
			g.Add(netip.MustParsePrefix("203.0.113.0/28"), "allow list")
		}
		var vs []Offence
		for range r.IntN(20) {
			v := Offence{
				Rule: []string{"", "syn-flood"}[r.IntN(2)], State: policy.StateSynRecv,
				Count: r.IntN(100), Threshold: 50, Sources: 1 + r.IntN(3),
				BanFor: []time.Duration{0, time.Minute, 90 * time.Minute, 48 * time.Hour, 1500 * time.Millisecond}[r.IntN(5)],
				Reason: reasons[r.IntN(len(reasons))], Forced: r.IntN(4) == 0,
			}
			if r.IntN(30) > 0 {
				v.Subject = netip.MustParsePrefix(subjects[r.IntN(len(subjects))])
			}
			vs = append(vs, v)
		}
		rs, om, err := Compile(p, vs, g)
		wrs, wom, werr := refCompile(p, vs, g)
		if !reflect.DeepEqual(rs, wrs) || !reflect.DeepEqual(om, wom) || !reflect.DeepEqual(err, werr) {
			t.Fatalf("seed %d: verdicts %+v\n got %+v %+v %v\nwant %+v %+v %v", seed, vs, rs, om, err, wrs, wom, werr)
		}
		omittedSeen += len(om)
		if rs != nil {
			merged += len(vs) - len(om) - len(rs.Bans)
		}
	}
	if omittedSeen < 3000 || merged < 300 {
		t.Errorf("%d omissions and %d merges over the draws; the generator is too tame", omittedSeen, merged)
	}
	t.Logf("%d omissions, %d merges, all identical", omittedSeen, merged)
}
