package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/engine"
	"github.com/synban/synban/internal/memtest"
	"github.com/synban/synban/internal/synflood"
	"github.com/synban/synban/rules"
)

// The spoofed-flood pipeline rows measure synban's decision on a spoofed
// flood's table without a namespace: a generated, already parsed sample of
// N half-open entries, each from its own address, goes through what
// engine.decideWindow does (detect.Detect: analysis, classification and the
// spoof filter in one pass; then rules.Compile), in-process. The peak heap
// is the live heap's growth over the heap holding the sample, sampled every
// 2 ms (internal/memtest), so the sample itself (72 bytes an entry) is not
// counted: the goal is about what the decision holds.

// pipelineRow is the results for one table size, rule count and threshold.
type pipelineRow struct {
	sources, rules, threshold int
	cost                      series
	peaks                     []uint64
	// A check of the outcome (the same every run).
	kind                     string
	verdicts, listed, unlist int
	bans                     int
}

// peak is the highest peak heap growth over the runs, in bytes.
func (r *pipelineRow) peak() uint64 { return slices.Max(r.peaks) }

// pipelineThresholds are the SYN rule's thresholds measured: 50, the
// default (no spoofed source offends), and 1 (every one does, and the
// spoof filter must drop them all).
var pipelineThresholds = []int{50, 1}

// pipelineRules are the rule counts measured: memory must not grow with them.
var pipelineRules = []int{1, 16}

// spoofedPipeline measures every size of -pipeline with every rule count
// and threshold.
func (b *bench) spoofedPipeline() error {
	for _, n := range b.cfg.pipeline {
		b.log.Info("spoofed-flood pipeline", "sources", n)
		samples := []detect.Sample{{Source: "generated", Conns: spoofedConns(n)}}
		for _, thr := range pipelineThresholds {
			for _, nr := range pipelineRules {
				row := pipelineRow{sources: n, rules: nr, threshold: thr}
				p := synflood.SpoofedPolicy(nr, thr)
				g := p.Guard(nil)
				for range b.cfg.runs {
					var before, after runtime.MemStats
					runtime.ReadMemStats(&before)
					stop := memtest.HeapPeak()
					start := time.Now()
					rep, class := detect.Detect(p, samples, g, detect.TcpExt{})
					rs, _, err := rules.Compile(p, engine.Offences(rep.Verdicts), g)
					wall := time.Since(start)
					peak := stop()
					runtime.ReadMemStats(&after)
					if err != nil {
						return fmt.Errorf("compile: %w", err)
					}
					row.cost.add(cost{wall: wall, allocs: after.Mallocs - before.Mallocs, bytes: after.TotalAlloc - before.TotalAlloc})
					row.peaks = append(row.peaks, peak)
					row.kind, row.verdicts, row.listed, row.unlist, row.bans = class.Kind, len(rep.Verdicts), len(rep.Spared), rep.SparedUnlisted, len(rs.Bans)
					if rep.Sources != n {
						return fmt.Errorf("%d sources counted, want %d", rep.Sources, n)
					}
				}
				b.log.Info("spoofed-flood pipeline measured", "sources", n, "rules", nr, "threshold", thr,
					"peak_heap_mib", fmt.Sprintf("%.1f", float64(row.peak())/(1<<20)), "wall", row.cost.cell(), "kind", row.kind, "bans", row.bans)
				b.pipeline = append(b.pipeline, row)
			}
		}
	}
	return nil
}

// spoofedConns returns n SYN_RECV entries to 10.0.0.1:80, each from its own
// address of 100.64.0.0/10 and up, as a spoofed flood leaves the table.
func spoofedConns(n int) []detect.Conn {
	local := netip.MustParseAddrPort("10.0.0.1:80")
	out := make([]detect.Conn, n)
	for i := range out {
		var src [4]byte
		binary.BigEndian.PutUint32(src[:], 0x64400000+uint32(i))
		out[i] = detect.Conn{Local: local, Remote: netip.AddrPortFrom(netip.AddrFrom4(src), uint16(1024+i%60000)), State: detect.SynRecv}
	}
	return out
}

// pipelineMarkdown renders the pipeline rows.
func (b *bench) pipelineMarkdown(p func(format string, args ...any)) {
	p("\n## Spoofed flood: the whole decision's memory\n\n")
	p("A generated, already parsed table of N half-open entries, each from its own address (a spoofed flood), goes through synban's decision "+
		"in-process as a run makes it: `detect.Detect` (analysis, classification and the spoof filter in one pass) and `rules.Compile`, "+
		"with the default policy's prefix aggregation off and its SYN rule at threshold 50 (no source offends) or 1 (every source offends and the spoof filter drops them all), "+
		"alone or among 16 rules. Peak heap is the live heap's growth over the heap holding the table, sampled every 2 ms, the highest of %d runs "+
		"(goal: at most 256 MiB at 1,000,000 sources, and 16 rules at most 2× one rule); time and allocations are medians.\n\n", b.cfg.runs)
	p("| sources | rules | SYN threshold | peak heap | time | allocations | outcome |\n|---:|---:|---:|---:|---:|---:|---|\n")
	for i := range b.pipeline {
		r := &b.pipeline[i]
		p("| %d | %d | %d | %.1f MiB | %s | %s | %s: %d verdicts, %d bans, %d spared listed + %d counted |\n",
			r.sources, r.rules, r.threshold, float64(r.peak())/(1<<20), r.cost.cell(), r.cost.medianAllocs(), r.kind, r.verdicts, r.bans, r.listed, r.unlist)
	}
	p("\nPeak heap of 16 rules over 1 rule: ")
	first := true
	for i := range b.pipeline {
		one := &b.pipeline[i]
		if one.rules != 1 {
			continue
		}
		for j := range b.pipeline {
			many := &b.pipeline[j]
			if many.rules == 16 && many.sources == one.sources && many.threshold == one.threshold {
				if !first {
					p("; ")
				}
				first = false
				p("%.2f× at %d sources, threshold %d", float64(many.peak())/float64(max(one.peak(), 1)), one.sources, one.threshold)
			}
		}
	}
	p(".\n")
}
