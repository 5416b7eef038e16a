package detect

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/policy"
)

// fixtureSample reads a fixture tree with ProcFS.
func fixtureSample(t *testing.T, name string) Sample {
	t.Helper()
	needLittleEndian(t)
	s, err := ProcFS{Root: filepath.Join(fixtureRoot, name)}.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// brief renders verdicts compactly for comparisons and failure messages.
func brief(vs []Verdict) string {
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "%s %s %d/%d %d/%d src=%d; ", v.Subject, v.Rule, v.Count, v.Threshold, v.Hits, v.Samples, v.Sources)
	}
	return b.String()
}

func synRule(name string, threshold int, ports ...uint16) policy.Rule {
	return policy.Rule{Name: name, State: policy.StateSynRecv, Threshold: threshold, Ports: ports}
}

func sampleOf(conns ...[]Conn) Sample {
	var s Sample
	for _, c := range conns {
		s.Conns = append(s.Conns, c...)
	}
	return s
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestAnalyzeSingleFlood(t *testing.T) {
	s := fixtureSample(t, "single-flood")
	p := policy.Default()
	rep := Analyze(p, []Sample{s}, p.Guard(nil))
	if len(rep.Verdicts) != 1 || len(rep.Spared) != 0 {
		t.Fatalf("verdicts %s spared %v; want only 203.0.113.7", brief(rep.Verdicts), rep.Spared)
	}
	want := Verdict{
		Subject:   netip.MustParsePrefix("203.0.113.7/32"),
		Rule:      "syn-flood",
		State:     policy.StateSynRecv,
		Count:     120,
		Threshold: 50,
		Hits:      1,
		Samples:   1,
		Sources:   1,
		BanFor:    10 * time.Minute,
		Reason:    "120 syn_recv from 203.0.113.7 >= 50 (rule syn-flood, 1/1 samples)",
	}
	if rep.Verdicts[0] != want {
		t.Errorf("verdict\n got %+v\nwant %+v", rep.Verdicts[0], want)
	}
	// Report.Sources counts every distinct connected remote, loopback too.
	remotes := map[netip.Addr]bool{}
	for _, c := range s.Conns {
		if a := c.Remote.Addr(); !a.IsUnspecified() {
			remotes[a] = true
		}
	}
	if rep.Sources != len(remotes) || rep.Samples != 1 || rep.Malformed != 0 {
		t.Errorf("Sources %d Samples %d Malformed %d; want %d, 1, 0", rep.Sources, rep.Samples, rep.Malformed, len(remotes))
	}
}

func TestAnalyzeQuiet(t *testing.T) {
	s := fixtureSample(t, "quiet")
	p := policy.Default()
	rep := Analyze(p, []Sample{s, s, s}, p.Guard(nil))
	if len(rep.Verdicts) != 0 || len(rep.Spared) != 0 || rep.Sources < 90 || rep.Samples != 3 {
		t.Errorf("quiet: verdicts %s, spared %v, %d sources, %d samples", brief(rep.Verdicts), rep.Spared, rep.Sources, rep.Samples)
	}
	// Lowering the threshold to what the busiest client holds catches it:
	// the quiet result is not for lack of counting.
	p.Rules = []policy.Rule{{Name: "any", State: policy.StateAny, Threshold: 4}}
	if rep := Analyze(p, []Sample{s}, nil); len(rep.Verdicts) == 0 {
		t.Error("no client of the quiet fixture holds 4 connections; the fixture or the counting is wrong")
	}
}

func TestAnalyzePrefixFlood(t *testing.T) {
	s := fixtureSample(t, "prefix-flood")
	p := policy.Default()
	rep := Analyze(p, []Sample{s}, p.Guard(nil))
	if len(rep.Verdicts) != 1 {
		t.Fatalf("verdicts %s; want the /24 only", brief(rep.Verdicts))
	}
	v := rep.Verdicts[0]
	want := "400 syn_recv from 200 sources in 198.51.100.0/24 >= 200 (rule syn-flood, prefix /24, 1/1 samples)"
	if v.Subject != netip.MustParsePrefix("198.51.100.0/24") || v.Count != 400 || v.Sources != 200 ||
		v.Threshold != 200 || v.Rule != "syn-flood" || v.BanFor != 10*time.Minute || v.Reason != want {
		t.Errorf("verdict %+v\nwant reason %q", v, want)
	}

	// Prefix aggregation off: nobody offends (2 each < 50).
	p.Prefix.Enabled = false
	if rep := Analyze(p, []Sample{s}, nil); len(rep.Verdicts) != 0 {
		t.Errorf("prefixes off: %s", brief(rep.Verdicts))
	}
	// A /16 threshold of 401 is not reached by 400.
	p.Prefix.Enabled, p.Prefix.IPv4Threshold = true, 401
	if rep := Analyze(p, []Sample{s}, nil); len(rep.Verdicts) != 0 {
		t.Errorf("threshold 401: %s", brief(rep.Verdicts))
	}
}

// TestAnalyzePrefixFolding: addresses inside an offending prefix are folded
// into it, unless the guard protects the prefix, in which case they are
// judged alone.
func TestAnalyzePrefixFolding(t *testing.T) {
	var r rng
	local := netip.MustParseAddrPort("192.0.2.10:80")
	var conns [][]Conn
	for i := 1; i <= 5; i++ {
		conns = append(conns, flood(addr4(198, 51, 100, i), local, 50+i, &r))
	}
	conns = append(conns, flood(mustAddr("203.0.113.9"), local, 60, &r))
	s := sampleOf(conns...)
	p := policy.Default()

	rep := Analyze(p, []Sample{s}, p.Guard(nil))
	if got := brief(rep.Verdicts); got != "198.51.100.0/24 syn-flood 265/200 1/1 src=5; 203.0.113.9/32 syn-flood 60/50 1/1 src=1; " {
		t.Errorf("verdicts %s", got)
	}
	if r := rep.Verdicts[0].Reason; !strings.HasSuffix(r, "; includes 5 offending addresses") {
		t.Errorf("prefix reason %q does not say it folded 5 addresses", r)
	}

	g := p.Guard(nil)
	g.Add(netip.MustParsePrefix("198.51.100.3/32"), "allow list")
	rep = Analyze(p, []Sample{s}, g)
	want := "203.0.113.9/32 syn-flood 60/50 1/1 src=1; " +
		"198.51.100.5/32 syn-flood 55/50 1/1 src=1; 198.51.100.4/32 syn-flood 54/50 1/1 src=1; " +
		"198.51.100.2/32 syn-flood 52/50 1/1 src=1; 198.51.100.1/32 syn-flood 51/50 1/1 src=1; "
	if got := brief(rep.Verdicts); got != want {
		t.Errorf("with 198.51.100.3 protected:\n got %s\nwant %s", got, want)
	}
	var spared []string
	for _, s := range rep.Spared {
		spared = append(spared, s.Verdict.Subject.String()+" "+s.Why)
	}
	if fmt.Sprint(spared) != "[198.51.100.0/24 198.51.100.3/32 is protected (allow list) 198.51.100.3/32 198.51.100.3/32 is protected (allow list)]" {
		t.Errorf("spared %q", spared)
	}
}

// TestAnalyzePrefixSingleSource: one address alone in its prefix is an
// address, never a prefix, however much it sends.
func TestAnalyzePrefixSingleSource(t *testing.T) {
	var r rng
	s := sampleOf(flood(mustAddr("203.0.113.9"), netip.MustParseAddrPort("192.0.2.10:80"), 500, &r),
		flood(mustAddr("2001:db8:9::9"), netip.MustParseAddrPort("[2001:db8::10]:80"), 500, &r))
	p := policy.Default()
	rep := Analyze(p, []Sample{s}, nil)
	if got := brief(rep.Verdicts); got != "203.0.113.9/32 syn-flood 500/50 1/1 src=1; 2001:db8:9::9/128 syn-flood 500/50 1/1 src=1; " {
		t.Errorf("verdicts %s", got)
	}
}

func TestAnalyzeKOfN(t *testing.T) {
	var r rng
	local := netip.MustParseAddrPort("192.0.2.10:80")
	a, b := mustAddr("203.0.113.1"), mustAddr("203.0.113.2")
	samples := []Sample{
		sampleOf(flood(a, local, 60, &r), flood(b, local, 10, &r)),
		sampleOf(flood(a, local, 40, &r), flood(b, local, 90, &r)),
		sampleOf(flood(a, local, 75, &r), flood(b, local, 10, &r)),
	}
	samples[1].Malformed = 3
	samples[2].Malformed = 4
	p := policy.Default()
	p.Prefix.Enabled = false
	p.Sample.Count, p.Sample.MinHits = 3, 2
	rep := Analyze(p, samples, nil)
	if len(rep.Verdicts) != 1 || rep.Verdicts[0].Subject.Addr() != a || rep.Verdicts[0].Count != 75 || rep.Verdicts[0].Hits != 2 {
		t.Fatalf("min_hits 2: %s; want 203.0.113.1 with peak 75 in 2/3", brief(rep.Verdicts))
	}
	if want := "75 syn_recv from 203.0.113.1 >= 50 (rule syn-flood, 2/3 samples)"; rep.Verdicts[0].Reason != want {
		t.Errorf("reason %q, want %q", rep.Verdicts[0].Reason, want)
	}
	if rep.Malformed != 7 || rep.Samples != 3 || rep.Sources != 2 {
		t.Errorf("Malformed %d Samples %d Sources %d", rep.Malformed, rep.Samples, rep.Sources)
	}
	p.Sample.MinHits = 3
	if rep := Analyze(p, samples, nil); len(rep.Verdicts) != 0 {
		t.Errorf("min_hits 3: %s", brief(rep.Verdicts))
	}
	p.Sample.MinHits = 1
	if got := brief(Analyze(p, samples, nil).Verdicts); got != "203.0.113.2/32 syn-flood 90/50 1/3 src=1; 203.0.113.1/32 syn-flood 75/50 2/3 src=1; " {
		t.Errorf("min_hits 1: %s", got)
	}

	// Prefixes follow the same rule: the /24 sums 70, 130, 85.
	p.Prefix.Enabled, p.Prefix.IPv4Threshold, p.Rules[0].Threshold = true, 80, 1000
	p.Sample.MinHits = 2
	if got := brief(Analyze(p, samples, nil).Verdicts); got != "203.0.113.0/24 syn-flood 130/80 2/3 src=2; " {
		t.Errorf("prefix, min_hits 2: %s", got)
	}
	p.Sample.MinHits = 3
	if got := brief(Analyze(p, samples, nil).Verdicts); got != "" {
		t.Errorf("prefix, min_hits 3: %s", got)
	}
}

func TestAnalyzePorts(t *testing.T) {
	var r rng
	src := mustAddr("203.0.113.1")
	s := sampleOf(flood(src, netip.MustParseAddrPort("192.0.2.10:80"), 30, &r),
		flood(src, netip.MustParseAddrPort("192.0.2.10:443"), 30, &r))
	p := policy.Default()
	for _, tc := range []struct {
		ports []uint16
		want  int
	}{{nil, 60}, {[]uint16{80, 443}, 60}, {[]uint16{80}, 0}, {[]uint16{443, 22}, 0}, {[]uint16{22}, 0}} {
		p.Rules = []policy.Rule{synRule("syn-flood", 50, tc.ports...)}
		rep := Analyze(p, []Sample{s}, nil)
		got := 0
		if len(rep.Verdicts) == 1 {
			got = rep.Verdicts[0].Count
		}
		if got != tc.want || len(rep.Verdicts) > 1 {
			t.Errorf("ports %v: %s; want count %d", tc.ports, brief(rep.Verdicts), tc.want)
		}
	}
	p.Rules = []policy.Rule{synRule("web", 30, 80)}
	if got := brief(Analyze(p, []Sample{s}, nil).Verdicts); got != "203.0.113.1/32 web 30/30 1/1 src=1; " {
		t.Errorf("port 80 threshold 30: %s", got)
	}

	// The fixture's flood is to port 80.
	fs := fixtureSample(t, "single-flood")
	p.Rules = []policy.Rule{synRule("ssh", 50, 22)}
	if rep := Analyze(p, []Sample{fs}, nil); len(rep.Verdicts) != 0 {
		t.Errorf("single-flood, port 22: %s", brief(rep.Verdicts))
	}
}

func TestAnalyzeGuard(t *testing.T) {
	s := fixtureSample(t, "single-flood")
	p := policy.Default()
	p.Allow.Addresses = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	rep := Analyze(p, []Sample{s}, p.Guard(nil))
	if len(rep.Verdicts) != 0 || len(rep.Spared) != 1 {
		t.Fatalf("verdicts %s, spared %d; want none and one", brief(rep.Verdicts), len(rep.Spared))
	}
	sp := rep.Spared[0]
	if sp.Verdict.Subject.Addr() != mustAddr("203.0.113.7") || sp.Verdict.Count != 120 || sp.Verdict.Reason == "" ||
		sp.Why != "203.0.113.0/24 is protected (allow list)" {
		t.Errorf("spared %+v", sp)
	}

	// Loopback is protected by every policy guard, even from a flood.
	var r rng
	lo := sampleOf(flood(mustAddr("127.0.0.5"), netip.MustParseAddrPort("127.0.0.1:80"), 100, &r))
	p = policy.Default()
	rep = Analyze(p, []Sample{lo}, p.Guard(nil))
	if len(rep.Verdicts) != 0 || len(rep.Spared) != 1 || !strings.Contains(rep.Spared[0].Why, "loopback") {
		t.Errorf("loopback flood: verdicts %s spared %+v", brief(rep.Verdicts), rep.Spared)
	}
}

func TestAnalyzeSeveralRules(t *testing.T) {
	var r rng
	src := mustAddr("203.0.113.1")
	local := netip.MustParseAddrPort("192.0.2.10:443")
	est := flood(src, local, 300, &r)
	for i := range est {
		est[i].State = Established
	}
	s := sampleOf(flood(src, local, 120, &r), est)
	p := policy.Default() // syn-flood 50 (120/50 = 2.4), conn-flood 200 (300/200 = 1.5)
	p.Rules[1].BanFor = policy.Duration{Duration: time.Hour}
	p.Rules = append(p.Rules, policy.Rule{Name: "any", State: policy.StateAny, Threshold: 400})
	rep := Analyze(p, []Sample{s}, nil)
	if len(rep.Verdicts) != 1 {
		t.Fatalf("verdicts %s; want one", brief(rep.Verdicts))
	}
	v := rep.Verdicts[0]
	want := "120 syn_recv from 203.0.113.1 >= 50 (rule syn-flood, 1/1 samples); also rule conn-flood (300 established >= 200); also rule any (420 connections >= 400)"
	if v.Rule != "syn-flood" || v.BanFor != 10*time.Minute || v.Reason != want {
		t.Errorf("verdict %+v\nwant reason %q", v, want)
	}

	// Make conn-flood the worst: its verdict (and ban length) wins.
	p.Rules[0].Threshold = 100 // 1.2
	rep = Analyze(p, []Sample{s}, nil)
	if len(rep.Verdicts) != 1 || rep.Verdicts[0].Rule != "conn-flood" || rep.Verdicts[0].BanFor != time.Hour ||
		!strings.HasPrefix(rep.Verdicts[0].Reason, "300 established from 203.0.113.1 >= 200 (rule conn-flood, 1/1 samples); also rule syn-flood (120 syn_recv >= 100)") {
		t.Errorf("conn-flood worst: %+v", rep.Verdicts)
	}
}

func TestAnalyzeMixed(t *testing.T) {
	s := fixtureSample(t, "mixed")
	p := policy.Default()
	rep := Analyze(p, []Sample{s}, p.Guard(nil))
	want := "2001:db8:bad:1::/64 syn-flood 300/200 1/1 src=150; " + // 1.5, more
		"2001:db8:66::6/128 syn-flood 75/50 1/1 src=1; " + // 1.5
		"203.0.113.50/32 syn-flood 70/50 1/1 src=1; " + // 40 mapped + 30 native
		"198.51.100.0/24 syn-flood 220/200 1/1 src=220; " // 120 mapped + 100 native
	if got := brief(rep.Verdicts); got != want {
		t.Errorf("mixed:\n got %s\nwant %s", got, want)
	}
	for _, v := range rep.Verdicts {
		if v.Subject.Addr().Is4In6() {
			t.Errorf("IPv4-mapped subject %s", v.Subject)
		}
	}
	if r := rep.Verdicts[0].Reason; r != "300 syn_recv from 150 sources in 2001:db8:bad:1::/64 >= 200 (rule syn-flood, prefix /64, 1/1 samples)" {
		t.Errorf("IPv6 prefix reason %q", r)
	}

	// A /48 aggregation with a higher threshold still sees the /64 flood
	// (under its /48, ratio 1 so last) and nothing else new.
	p.Prefix.IPv6Length, p.Prefix.IPv6Threshold = 48, 300
	if got := brief(Analyze(p, []Sample{s}, nil).Verdicts); got != strings.TrimPrefix(want, "2001:db8:bad:1::/64 syn-flood 300/200 1/1 src=150; ")+"2001:db8:bad::/48 syn-flood 300/300 1/1 src=150; " {
		t.Errorf("/48: %s", got)
	}
}

func TestAnalyzeDeterministic(t *testing.T) {
	s := fixtureSample(t, "mixed")
	var r rng
	// Ties: equal ratios and counts sort by address.
	tied := sampleOf(
		flood(mustAddr("203.0.113.9"), netip.MustParseAddrPort("192.0.2.10:80"), 60, &r),
		flood(mustAddr("2001:db8:77::1"), netip.MustParseAddrPort("[2001:db8::10]:80"), 60, &r),
		flood(mustAddr("192.0.2.200"), netip.MustParseAddrPort("192.0.2.10:80"), 60, &r),
	)
	s.Conns = append(s.Conns, tied.Conns...)
	p := policy.Default()
	g := p.Guard(nil)
	g.Add(netip.MustParsePrefix("2001:db8:bad:1::77/128"), "allow list")
	first := Analyze(p, []Sample{s}, g)
	if len(first.Verdicts) < 5 || len(first.Spared) != 1 {
		t.Fatalf("verdicts %s spared %v", brief(first.Verdicts), first.Spared)
	}
	var order []string
	for _, v := range first.Verdicts {
		if v.Count == 60 {
			order = append(order, v.Subject.Addr().String())
		}
	}
	if fmt.Sprint(order) != "[192.0.2.200 203.0.113.9 2001:db8:77::1]" {
		t.Errorf("tied verdicts in order %v", order)
	}
	for i := range 5 {
		r := rng(i)
		shuffled := Sample{Conns: append([]Conn(nil), s.Conns...)}
		r.shuffle(shuffled.Conns)
		if again := Analyze(p, []Sample{shuffled}, g); !reflect.DeepEqual(again, first) {
			t.Fatalf("shuffle %d changed the report:\n%s\n%s", i, brief(again.Verdicts), brief(first.Verdicts))
		}
	}
}

func TestAnalyzeEdges(t *testing.T) {
	var r rng
	p := policy.Default()
	// Nothing to analyse.
	if rep := Analyze(p, nil, nil); rep.Samples != 0 || rep.Sources != 0 || len(rep.Verdicts) != 0 {
		t.Errorf("no samples: %+v", rep)
	}
	// Unconnected sockets (remote 0.0.0.0 / ::) are nobody's.
	closed := sampleOf(flood(netip.IPv4Unspecified(), netip.MustParseAddrPort("192.0.2.10:80"), 100, &r),
		flood(netip.IPv6Unspecified(), netip.MustParseAddrPort("[2001:db8::10]:80"), 100, &r))
	if rep := Analyze(p, []Sample{closed}, nil); rep.Sources != 0 || len(rep.Verdicts) != 0 {
		t.Errorf("unspecified remotes: %d sources, %s", rep.Sources, brief(rep.Verdicts))
	}
	// A mapped address from another sampler is counted as IPv4.
	mapped := sampleOf(flood(mustAddr("::ffff:203.0.113.4"), netip.MustParseAddrPort("192.0.2.10:80"), 30, &r),
		flood(mustAddr("203.0.113.4"), netip.MustParseAddrPort("192.0.2.10:80"), 30, &r))
	if got := brief(Analyze(p, []Sample{mapped}, nil).Verdicts); got != "203.0.113.4/32 syn-flood 60/50 1/1 src=1; " {
		t.Errorf("mapped remotes: %s", got)
	}
	// A rule's own ban length wins over the default.
	p.Rules[0].BanFor = policy.Duration{Duration: 3 * time.Hour}
	if rep := Analyze(p, []Sample{mapped}, nil); len(rep.Verdicts) != 1 || rep.Verdicts[0].BanFor != 3*time.Hour {
		t.Errorf("ban_for: %+v", rep.Verdicts)
	}
}

// synthConns makes n connections: 70% SYN_RECV from a few hundred heavy
// sources and many light ones, the rest established.
func synthConns(n int) []Conn {
	r := rng(n)
	local := netip.MustParseAddrPort("10.0.0.1:443")
	out := make([]Conn, n)
	for i := range out {
		x := r.next()
		var src netip.Addr
		if x%3 == 0 {
			src = addr4(10, 200, int(x>>8)%4, int(x>>16)%256) // ~1000 heavy sources
		} else {
			src = netip.AddrFrom4([4]byte{10, byte(x >> 24), byte(x >> 32), byte(x >> 40)})
		}
		out[i] = Conn{Local: local, Remote: ap(src, int(x>>48)), State: SynRecv}
		if x%10 < 3 {
			out[i].State = Established
		}
	}
	return out
}

func BenchmarkAnalyze(b *testing.B) {
	p := policy.Default()
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("%dk-conns", n/1000), func(b *testing.B) {
			samples := []Sample{{Conns: synthConns(n)}}
			b.ReportAllocs()
			for b.Loop() {
				if rep := Analyze(p, samples, nil); rep.Sources == 0 {
					b.Fatal("no sources")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/conn")
		})
	}
}
