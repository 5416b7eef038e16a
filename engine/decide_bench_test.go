package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/memtest"
	"github.com/synban/synban/internal/synflood"
)

// pipelineSources is the size of the spoofed table the whole-pipeline
// benchmark decides on.
const pipelineSources = 1_000_000

// spoofedWindow returns a one-sample window of n SYN_RECV entries to
// 10.0.0.1:80, each from its own address of 100.64.0.0/10, as a spoofed
// flood leaves the table.
func spoofedWindow(n int) *Window {
	local := netip.MustParseAddrPort("10.0.0.1:80")
	conns := make([]detect.Conn, n)
	for i := range conns {
		var src [4]byte
		binary.BigEndian.PutUint32(src[:], 0x64400000+uint32(i))
		conns[i] = detect.Conn{Local: local, Remote: netip.AddrPortFrom(netip.AddrFrom4(src), uint16(1024+i%60000)), State: detect.SynRecv}
	}
	return &Window{Samplers: []string{"procfs"}, Result: detect.WindowResult{Samples: []detect.Sample{{Source: "procfs", Conns: conns}}}}
}

// BenchmarkDecideSpoofed is the whole detection pipeline a run goes
// through on a spoofed flood of 1,000,000 sources, one half-open entry
// each, already sampled: analysis, classification, the spoof filter and
// the compiled ruleset (decideWindow without a state store). It reports
// the peak heap growth over the heap holding the sample ("peak-MiB"), with
// the SYN rule at threshold 50 (no source offends) and 1 (every source
// offends, and the spoof filter spares them all), alone or among 16 rules
// (the others on other states and port sets, none firing on one entry):
// the memory must not grow with the rules.
func BenchmarkDecideSpoofed(b *testing.B) {
	w := spoofedWindow(pipelineSources)
	e := New(nil, Options{})
	for _, thr := range []int{50, 1} {
		for _, rules := range []int{1, 16} {
			b.Run(fmt.Sprintf("threshold-%d/rules-%d", thr, rules), func(b *testing.B) {
				p := synflood.SpoofedPolicy(rules, thr)
				g := p.Guard(nil)
				var peak uint64
				b.ReportAllocs()
				for b.Loop() {
					stop := memtest.HeapPeak()
					d, err := e.decideWindow(context.Background(), &cycle{p: p, g: g, now: time.Now()}, w)
					peak = max(peak, stop())
					if err != nil {
						b.Fatal(err)
					}
					if d.Class.Kind != detect.KindSpoofed || d.Report.Sources != pipelineSources || len(d.Ruleset.Bans) != 0 {
						b.Fatalf("kind %s, %d sources, %d bans", d.Class.Kind, d.Report.Sources, len(d.Ruleset.Bans))
					}
				}
				b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
			})
		}
	}
}
