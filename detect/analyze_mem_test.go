package detect

import (
	"testing"

	"github.com/synban/synban/internal/memtest"
	"github.com/synban/synban/internal/synflood"
)

// TestDetectSpoofedMemory: Detect on a spoofed flood of 1,000,000 sources
// (one half-open entry each, every one over the SYN rule's threshold of 1,
// so that each is a forged offender) holds at most 256 MiB beyond the
// sample, and 16 rules cost at most twice one rule: the counters are per
// source, not per source and rule, and the forged offenders are counted,
// not built. A bound on memory, not on time (the figures are logged).
func TestDetectSpoofedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("a million sources: not in -short")
	}
	samples := []Sample{{Conns: spoofConns(spoofSources)}}
	peak := map[int]uint64{}
	for _, rules := range []int{1, 16} {
		p := synflood.SpoofedPolicy(rules, 1)
		stop := memtest.HeapPeak()
		rep, class := Detect(p, samples, nil, TcpExt{})
		peak[rules] = stop()
		if class.Kind != KindSpoofed || len(rep.Verdicts) != 0 || rep.SparedCount() != spoofSources || len(rep.Spared) != MaxForgedListed {
			t.Fatalf("%d rules: kind %q, %d verdicts, %d spared (%d listed), want spoofed, 0, %d (%d)",
				rules, class.Kind, len(rep.Verdicts), rep.SparedCount(), len(rep.Spared), spoofSources, MaxForgedListed)
		}
		t.Logf("%d rules: heap peak +%.1f MiB", rules, float64(peak[rules])/(1<<20))
		if peak[rules] > 256<<20 {
			t.Errorf("%d rules: Detect of 1,000,000 spoofed sources grew the heap by %.1f MiB, want <= 256 MiB", rules, float64(peak[rules])/(1<<20))
		}
	}
	if peak[16] > 2*peak[1] {
		t.Errorf("16 rules peaked at %.1f MiB, over twice one rule's %.1f MiB", float64(peak[16])/(1<<20), float64(peak[1])/(1<<20))
	}
}
