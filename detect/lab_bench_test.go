package detect

import (
	"context"
	"os"
	"testing"

	"github.com/synban/synban/internal/memtest"
	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/policy"
)

// BenchmarkLabWindow is the sampling and decision path of one `synban run`
// with the default policy, on a network namespace holding a flood that the
// benchmark does not build itself: one window of sock_diag merged with
// conntrack, then Detect. Set SYNBAN_BENCH_NETNS to the namespace's path
// (e.g. /run/netns/NAME) holding, for issue 24's figures, 100,000 half-open
// entries (1,000 forged sources of one /16 x 100, SYN cookies off) and
// 100,000 established connections: a table of that size outlives a
// benchmark's setup budget (the established side needs five processes'
// worth of file descriptors), so it is built once and measured many times.
// It reports the live heap's peak growth ("peak-MiB") and the half-open
// entries classified.
func BenchmarkLabWindow(b *testing.B) {
	ns := os.Getenv("SYNBAN_BENCH_NETNS")
	if ns == "" {
		b.Skip("SYNBAN_BENCH_NETNS names no namespace holding a flood")
	}
	netnstest.RequireRoot(b)
	p := policy.Default()
	p.Allow.Host = false
	g := p.Guard(nil)
	samplers := []Sampler{SockDiag{NetNS: ns, States: StatesFor(p)}, Conntrack{NetNS: ns}}
	ctx := context.Background()
	var peak uint64
	var half, verdicts int
	b.ReportAllocs()
	for b.Loop() {
		stop := memtest.HeapPeak()
		res, err := Window(ctx, samplers, 1, 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		rep, class := Detect(p, res.Samples, g, TcpExt{})
		peak = max(peak, stop())
		half, verdicts = class.HalfOpenEntries, len(rep.Verdicts)
	}
	if verdicts == 0 {
		b.Fatalf("no verdict on %s: is the flood there? (%d half-open)", ns, half)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
	b.ReportMetric(float64(half), "half-open")
}
