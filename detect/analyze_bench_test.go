package detect

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/synban/synban/internal/memtest"
	"github.com/synban/synban/internal/synflood"
)

// The spoofed-flood benchmarks: 1,000,000 distinct IPv4 sources, each
// holding one SYN_RECV entry to 10.0.0.1:80, as a flood from forged
// addresses leaves the table. They report the peak heap growth during the
// measured call ("peak-MiB", the live heap sampled every 2 ms over the heap
// before it) next to B/op and allocs/op; run them one at a time
// (-benchtime=1x or 3x): one iteration takes a second or more.
const spoofSources = 1_000_000

// spoofConns returns n SYN_RECV entries to 10.0.0.1:80, from 100.64.0.0 up.
func spoofConns(n int) []Conn {
	local := netip.MustParseAddrPort("10.0.0.1:80")
	out := make([]Conn, n)
	for i := range out {
		var src [4]byte
		binary.BigEndian.PutUint32(src[:], 0x64400000+uint32(i))
		out[i] = Conn{Local: local, Remote: netip.AddrPortFrom(netip.AddrFrom4(src), uint16(1024+i%60000)), State: SynRecv}
	}
	return out
}

// BenchmarkAnalyzeSpoofed runs Analyze over one sample of spoofConns with
// 1, 16 and 256 rules, once with a first-rule threshold of 1 (every source
// offends: a million verdicts, the worst output) and once with the default
// 50 (no source offends: the analysis alone).
func BenchmarkAnalyzeSpoofed(b *testing.B) {
	samples := []Sample{{Conns: spoofConns(spoofSources)}}
	for _, thr := range []int{50, 1} {
		for _, rules := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("threshold-%d/rules-%d", thr, rules), func(b *testing.B) {
				p := synflood.SpoofedPolicy(rules, thr)
				want := 0
				if thr == 1 {
					want = spoofSources
				}
				var peak uint64
				b.ReportAllocs()
				for b.Loop() {
					stop := memtest.HeapPeak()
					rep := Analyze(p, samples, nil)
					peak = max(peak, stop())
					if rep.Sources != spoofSources || len(rep.Verdicts) != want {
						b.Fatalf("%d sources, %d verdicts; want %d and %d", rep.Sources, len(rep.Verdicts), spoofSources, want)
					}
				}
				b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
			})
		}
	}
}

// BenchmarkAnalyzeClassifySpoofed runs Analyze and Classify, as a run does,
// over one parsed sample of spoofConns (the parse is outside the
// measurement: it holds the Conns, 72 bytes each).
func BenchmarkAnalyzeClassifySpoofed(b *testing.B) {
	samples := []Sample{{Conns: spoofConns(spoofSources)}}
	for _, thr := range []int{50, 1} {
		for _, rules := range []int{1, 16} {
			b.Run(fmt.Sprintf("threshold-%d/rules-%d", thr, rules), func(b *testing.B) {
				p := synflood.SpoofedPolicy(rules, thr)
				var peak uint64
				b.ReportAllocs()
				for b.Loop() {
					stop := memtest.HeapPeak()
					rep := Analyze(p, samples, nil)
					class := Classify(p, samples, TcpExt{})
					peak = max(peak, stop())
					if rep.Sources != spoofSources || class.Kind != KindSpoofed {
						b.Fatalf("%d sources, kind %q", rep.Sources, class.Kind)
					}
				}
				b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
			})
		}
	}
}

// BenchmarkDetectSpoofed runs Detect, as a run does, over one parsed
// sample of spoofConns with 1, 16 and 256 rules, at a first-rule threshold
// of 50 (no source offends) and 1 (every source offends, and the spoof
// filter drops them all: only the worst MaxForgedListed are listed).
func BenchmarkDetectSpoofed(b *testing.B) {
	samples := []Sample{{Conns: spoofConns(spoofSources)}}
	for _, thr := range []int{50, 1} {
		for _, rules := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("threshold-%d/rules-%d", thr, rules), func(b *testing.B) {
				p := synflood.SpoofedPolicy(rules, thr)
				listed := 0
				if thr == 1 {
					listed = MaxForgedListed
				}
				var peak uint64
				b.ReportAllocs()
				for b.Loop() {
					stop := memtest.HeapPeak()
					rep, class := Detect(p, samples, nil, TcpExt{})
					peak = max(peak, stop())
					if rep.Sources != spoofSources || class.Kind != KindSpoofed || len(rep.Verdicts) != 0 ||
						len(rep.Spared) != listed || rep.SparedCount() != listed/MaxForgedListed*spoofSources {
						b.Fatalf("%d sources, kind %q, %d verdicts, %d spared of %d", rep.Sources, class.Kind, len(rep.Verdicts), len(rep.Spared), rep.SparedCount())
					}
				}
				b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
			})
		}
	}
}

// BenchmarkSpoofedPipeline is the whole detection path over a generated
// /proc/net/tcp text of 1,000,000 lines: ParseProcNet, then Analyze and
// Classify ("separate", the public functions one after the other) or Detect
// (as a run does).
func BenchmarkSpoofedPipeline(b *testing.B) {
	for _, way := range []string{"separate", "detect"} {
		for _, thr := range []int{50, 1} {
			b.Run(fmt.Sprintf("%s/threshold-%d", way, thr), func(b *testing.B) {
				p := synflood.SpoofedPolicy(1, thr)
				var peak uint64
				b.ReportAllocs()
				for b.Loop() {
					stop := memtest.HeapPeak()
					conns, st, err := ParseProcNet(synflood.SpoofedProcNet(spoofSources), nil)
					if err != nil || st.Conns != spoofSources {
						b.Fatalf("parsed %d entries (%d malformed): %v", st.Conns, st.Malformed, err)
					}
					samples := []Sample{{Source: "procfs", Conns: conns}}
					var rep Report
					var class Classification
					if way == "detect" {
						rep, class = Detect(p, samples, nil, TcpExt{})
					} else {
						rep = Analyze(p, samples, nil)
						class = Classify(p, samples, TcpExt{})
					}
					peak = max(peak, stop())
					if rep.Sources != spoofSources || class.Kind != KindSpoofed {
						b.Fatalf("%d sources, kind %q", rep.Sources, class.Kind)
					}
				}
				b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
			})
		}
	}
}
