package reliability

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/engine"
	"github.com/synban/synban/internal/memtest"
	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/synflood"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/nft"
)

// TestMillionSpoofedSources samples a table of 1,000,000 half-open entries
// from as many distinct (spoofed) sources: parsing, analysis, the
// spoofed-flood classification and compilation complete with bounded
// memory, the ban set never exceeds max_entries, and, as root, the compiled
// ruleset applies in a namespace with the kernel's set within its size.
func TestMillionSpoofedSources(t *testing.T) {
	const n = 1_000_000
	const maxEntries = 65536
	// threshold 1: every source offends, so the cap is what stops the set.
	p, err := policy.Parse("million.toml", []byte(fmt.Sprintf(`[[rule]]
name = "syn-flood"
state = "syn_recv"
threshold = 1
[prefix]
enabled = false
[ban]
max_entries = %d
`, maxEntries)))
	if err != nil {
		t.Fatal(err)
	}
	// The heap is measured over the whole run and, separately, over each
	// phase, from the heap the phase starts with: the parse (which holds
	// the Conns, 72 bytes each), Analyze on the parsed sample, Classify,
	// and the compilation with the spoof filter.
	stopAll := memtest.HeapPeak()
	began := time.Now()
	stop := memtest.HeapPeak()
	conns, st, err := detect.ParseProcNet(synflood.SpoofedProcNet(n), nil)
	if err != nil {
		t.Fatal(err)
	}
	parsePeak := stop()
	if st.Conns != n || st.Malformed != 0 {
		t.Fatalf("parsed %d entries, %d malformed, want %d and 0: %v", st.Conns, st.Malformed, n, st.Errors)
	}
	parsed := time.Since(began)
	samples := []detect.Sample{{Time: time.Now(), Source: "procfs", Conns: conns}}
	// Analyze's bound is on what it holds, not on when the collector runs:
	// a low GOGC during the phase keeps garbage from counting as peak.
	gc := debug.SetGCPercent(20)
	stop = memtest.HeapPeak()
	rep := detect.Analyze(p, samples, p.Guard(nil))
	analyzePeak := stop()
	debug.SetGCPercent(gc)
	if rep.Sources != n {
		t.Fatalf("Analyze saw %d sources, want %d", rep.Sources, n)
	}
	stop = memtest.HeapPeak()
	class := detect.Classify(p, samples, detect.TcpExt{})
	classifyPeak := stop()
	stop = memtest.HeapPeak()
	rs, omitted, err := rules.Compile(p, engine.Offences(rep.Verdicts), p.Guard(nil))
	if err != nil {
		t.Fatal(err)
	}
	filtered := detect.FilterSpoofed(rep, class)
	rsFiltered, _, err := rules.Compile(p, engine.Offences(filtered.Verdicts), p.Guard(nil))
	if err != nil {
		t.Fatal(err)
	}
	compilePeak := stop()
	took := time.Since(began)
	peak := stopAll()

	if len(rs.Bans) > maxEntries {
		t.Fatalf("Compile kept %d bans, max_entries is %d", len(rs.Bans), maxEntries)
	}
	if len(rs.Bans)+len(omitted) != len(rep.Verdicts) {
		t.Fatalf("%d bans + %d omitted != %d verdicts", len(rs.Bans), len(omitted), len(rep.Verdicts))
	}
	if class.Kind != detect.KindSpoofed {
		t.Errorf("1,000,000 sources with one half-open entry each classified %q, want %q: %s", class.Kind, detect.KindSpoofed, class.Why)
	}
	if len(rsFiltered.Bans) > maxEntries {
		t.Fatalf("after the spoof filter: %d bans over max_entries %d", len(rsFiltered.Bans), maxEntries)
	}
	// Analyze keeps a few int32s per source and a record per source that
	// may offend; with threshold 1 every source does, and the million
	// verdicts it returns (128 bytes each, plus a 64-byte reason: 183 MiB)
	// are most of its peak: 223 to 245 MiB was measured (about 620 MiB
	// before the streaming analysis). Its memory does not depend on the
	// number of rules (detect's BenchmarkAnalyzeSpoofed). Classify and
	// the compilation are measured and reported, bounded only by the
	// whole run's limit below.
	// The bound leaves room for the sampling of the peak (measured 223 to
	// 248 MiB); it guards against a return of the per-rule copies. This
	// test feeds every verdict to Compile on purpose, to prove the cap; the
	// engine's own pipeline, which never builds the forged verdicts, is
	// bounded by TestMillionSpoofedPipeline.
	if analyzePeak > 320<<20 {
		t.Errorf("Analyze of 1,000,000 parsed sources grew the heap by %s, want <= 320 MiB", mib(analyzePeak))
	}
	// The whole run: the Conns (~70 MiB), the verdicts, the omissions
	// (each a copy of its verdict), the classification and the spoof
	// filter's Spared add a linear amount. 2 GiB catches worse growth.
	if peak > 2<<30 {
		t.Errorf("heap grew by %s, want < 2 GiB", mib(peak))
	}
	if took > 90*time.Second {
		t.Errorf("took %s, want < 90s", took)
	}
	report(t, "1,000,000 spoofed sources: parsed in %s, whole pipeline %s, heap peak +%s (%d bytes per source; parse +%s, Analyze +%s, Classify +%s, Compile and spoof filter +%s); %d verdicts -> %d bans (max %d), %d omitted; classified %s -> %d bans after the spoof filter",
		parsed.Round(time.Millisecond), took.Round(time.Millisecond), mib(peak), peak/n, mib(parsePeak), mib(analyzePeak), mib(classifyPeak), mib(compilePeak),
		len(rep.Verdicts), len(rs.Bans), maxEntries, len(omitted), class.Kind, len(rsFiltered.Bans))

	if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
		t.Log("not root: the kernel part (apply the capped ruleset) is skipped")
		return
	}
	netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, "million")
	be, err := nft.New(nft.Options{NetNS: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	res, err := be.Apply(context.Background(), rs)
	if err != nil {
		t.Fatalf("apply the capped ruleset: %v", err)
	}
	got, ok := nftSetAddrs(t, ns, rs.Table, rules.SetBan4)
	if !ok || len(got) != len(rs.Bans) || len(got) > maxEntries {
		t.Fatalf("kernel ban set holds %d, want %d (<= %d)", len(got), len(rs.Bans), maxEntries)
	}
	for _, a := range got[:10] {
		if !netip.MustParsePrefix("100.64.0.0/10").Contains(a) {
			t.Fatalf("unexpected ban %s", a)
		}
	}
	report(t, "applied %d bans in %s (added %d); the kernel's set holds %d <= %d", len(rs.Bans), time.Since(began).Round(time.Millisecond), res.Added, len(got), maxEntries)
}

// TestMillionSpoofedPipeline runs the engine's decision pipeline on
// 1,000,000 spoofed sources: parse, detect.Detect (analysis,
// classification and the spoof filter in one pass) and rules.Compile of
// what survives. The decision's peak heap over the parsed table stays
// within issue 14's 256 MiB and does not grow with the number of rules.
// The parse is reported beside it: its peak (about 230 MiB for 75 MiB of
// entries) is the slice's growth garbage before a collection, which the
// whole pipeline's guard below allows for.
func TestMillionSpoofedPipeline(t *testing.T) {
	const n = 1_000_000
	peaks := map[int]uint64{}
	for _, nrules := range []int{1, 16} {
		var doc string
		for i := range nrules {
			// threshold 1 and up: every forged source offends; the filter
			// must still keep them from becoming verdicts.
			doc += fmt.Sprintf("[[rule]]\nname = \"r%d\"\nstate = \"syn_recv\"\nthreshold = %d\n", i, 1+i)
		}
		p, err := policy.Parse("pipeline.toml", []byte(doc+"[prefix]\nenabled = false\n"))
		if err != nil {
			t.Fatal(err)
		}
		proc := synflood.SpoofedProcNet(n)
		stopAll := memtest.HeapPeak()
		stop := memtest.HeapPeak()
		conns, _, err := detect.ParseProcNet(proc, nil)
		if err != nil {
			t.Fatal(err)
		}
		parsePeak := stop()
		samples := []detect.Sample{{Time: time.Now(), Source: "procfs", Conns: conns}}
		stop = memtest.HeapPeak()
		rep, class := detect.Detect(p, samples, p.Guard(nil), detect.TcpExt{})
		rs, _, err := rules.Compile(p, engine.Offences(rep.Verdicts), p.Guard(nil))
		if err != nil {
			t.Fatal(err)
		}
		peak := stop()
		all := stopAll()
		peaks[nrules] = peak
		if class.Kind != detect.KindSpoofed {
			t.Errorf("%d rules: classified %q, want spoofed: %s", nrules, class.Kind, class.Why)
		}
		if len(rs.Bans) != 0 || rep.SparedCount() != n {
			t.Errorf("%d rules: %d bans, %d spared; want 0 bans and all %d forged sources spared", nrules, len(rs.Bans), rep.SparedCount(), n)
		}
		if peak > 256<<20 {
			t.Errorf("%d rules: Detect and Compile grew the heap by %s, want <= 256 MiB", nrules, mib(peak))
		}
		if all > 384<<20 {
			t.Errorf("%d rules: parse, Detect and Compile grew the heap by %s, want <= 384 MiB", nrules, mib(all))
		}
		report(t, "1,000,000 spoofed sources, %d rule(s): Detect + Compile peak heap +%s over the parsed table; with the parse +%s (parse alone +%s); %d bans, %d spared (%d listed)",
			nrules, mib(peak), mib(all), mib(parsePeak), len(rs.Bans), rep.SparedCount(), len(rep.Spared))
		runtime.KeepAlive(conns)
	}
	if peaks[16] > 2*peaks[1] {
		t.Errorf("16 rules peaked at %s, one rule at %s: more than 2x", mib(peaks[16]), mib(peaks[1]))
	}
}
