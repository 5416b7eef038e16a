package detect

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/synban/synban/policy"
)

// onContract keeps the connections a sampler can return: a remote that is
// set, specified and not IPv4-mapped (samplers unmap it), which every
// connected socket has. The classification counts no other (the reference
// counted them under their raw address).
func onContract(s Sample) Sample {
	var keep []Conn
	for _, c := range s.Conns {
		if a := c.Remote.Addr(); a.IsValid() && !a.IsUnspecified() && !a.Is4In6() {
			keep = append(keep, c)
		}
	}
	s.Conns = keep
	return s
}

// randomSpoof draws spoof settings and TcpExt deltas that make every kind
// reachable on randomSample's small tables.
func randomSpoof(r *rng, p *policy.Policy) TcpExt {
	p.Spoof.Enabled = r.intn(4) > 0
	p.Spoof.MinSources = r.intn(8)
	p.Spoof.MaxPerSource = 1 + r.intn(4)
	p.Spoof.CookieRatio = []float64{0, 0.1, 0.5}[r.intn(3)]
	var d TcpExt
	if r.intn(3) == 0 {
		d.SyncookiesSent = int64(r.intn(20))
		d.SyncookiesRecv = int64(r.intn(20))
	}
	d.TCPReqQFullDrop = int64(r.intn(2))
	return d
}

// forgedBulk draws what a spoofed flood adds to a sample: up to 200
// sources from 100.64.0.0/22 and 2001:db8:ff::/120, one to three
// half-open entries each.
func forgedBulk(r *rng) []Conn {
	local := netip.MustParseAddrPort("192.0.2.10:80")
	var out []Conn
	for range r.intn(200) {
		i := r.intn(1024)
		src := netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)})
		if r.intn(4) == 0 {
			src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0xff, 15: byte(i)})
		}
		for range 1 + r.intn(3) {
			out = append(out, Conn{Local: local, Remote: netip.AddrPortFrom(src, uint16(1024+r.intn(60000))), State: SynRecv})
		}
	}
	return out
}

// randomWindow draws a policy, its spoof settings, a window and a guard.
func randomWindow(r *rng) (*policy.Policy, []Sample, *policy.Guard, TcpExt) {
	n := 1 + r.intn(4)
	p := randomPolicy(r, n)
	delta := randomSpoof(r, p)
	var samples []Sample
	bulk := r.intn(2) == 0
	for range n {
		s := onContract(randomSample(r))
		if bulk {
			s.Conns = append(s.Conns, forgedBulk(r)...)
		}
		samples = append(samples, s)
	}
	var g *policy.Guard
	switch r.intn(3) {
	case 1:
		g = p.Guard(nil)
	case 2:
		g = policy.NewGuard()
		g.Add(netip.MustParsePrefix([]string{"203.0.113.2/32", "198.51.100.0/24", "2001:db8:1::/64", "203.0.113.0/30"}[r.intn(4)]), "allow list")
	}
	return p, samples, g, delta
}

// TestClassifyMatchesReference: on random policies, spoof settings,
// windows and counters, Classify (counting as Analyze does) returns exactly
// the Classification of the reference (a map per sample and per rule).
func TestClassifyMatchesReference(t *testing.T) {
	kinds := map[string]int{}
	for seed := range 3000 {
		r := rng(seed)
		p, samples, _, delta := randomWindow(&r)
		got := Classify(p, samples, delta)
		want := refClassify(p, samples, delta)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: rules %+v prefix %+v spoof %+v\n got %+v\nwant %+v", seed, p.Rules, p.Prefix, p.Spoof, got, want)
		}
		kinds[got.Kind]++
	}
	for _, k := range FloodKinds() {
		if k == KindCookieStorm {
			continue // only RefineClassification names it, from evidence the samples lack
		}
		if kinds[k] < 20 {
			t.Errorf("only %d draws of kind %q: %v; the generator is too tame", kinds[k], k, kinds)
		}
	}
	t.Logf("kinds %v, all identical", kinds)
}

// TestDetectMatchesPipeline: Detect returns what Analyze, Classify and
// FilterSpoofed return together. Listing at most listMax forged offenders,
// Spared holds the worst of them in the same order and SparedUnlisted
// counts the others.
func TestDetectMatchesPipeline(t *testing.T) {
	spoofed, forged, cut := 0, 0, 0
	for seed := range 3000 {
		r := rng(seed)
		p, samples, g, delta := randomWindow(&r)
		listMax := []int{0, 1, 3, MaxForgedListed}[r.intn(4)]
		rep, class := detect(p, samples, g, delta, listMax)
		wantClass := refClassify(p, samples, delta)
		analyzed := Analyze(p, samples, g)
		want := FilterSpoofed(analyzed, wantClass)
		if !reflect.DeepEqual(class, wantClass) {
			t.Fatalf("seed %d: classification\n got %+v\nwant %+v", seed, class, wantClass)
		}
		if class.Kind == KindSpoofed {
			spoofed++
			n := len(want.Spared) - len(analyzed.Spared) // forged
			forged += n
			if unlisted := n - min(n, listMax); unlisted > 0 {
				cut++
				if want.Spared = want.Spared[:len(want.Spared)-unlisted]; len(want.Spared) == 0 {
					want.Spared = nil // none listed: as when none is spared
				}
				want.SparedUnlisted = unlisted
			}
		}
		if !reflect.DeepEqual(rep, want) {
			t.Fatalf("seed %d (list %d, kind %s): rules %+v prefix %+v spoof %+v\n got %s spared %v (+%d)\nwant %s spared %v (+%d)",
				seed, listMax, class.Kind, p.Rules, p.Prefix, p.Spoof, brief(rep.Verdicts), rep.Spared, rep.SparedUnlisted,
				brief(want.Verdicts), want.Spared, want.SparedUnlisted)
		}
		if rep.SparedCount() != len(FilterSpoofed(analyzed, wantClass).Spared) {
			t.Fatalf("seed %d: SparedCount %d", seed, rep.SparedCount())
		}
	}
	if spoofed < 300 || forged < 1000 || cut < 100 {
		t.Errorf("%d spoofed windows, %d forged offenders, %d lists cut; the generator is too tame", spoofed, forged, cut)
	}
	t.Logf("%d spoofed windows, %d forged offenders, %d lists cut, all identical", spoofed, forged, cut)
}
