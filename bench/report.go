package main

import (
	"fmt"
	"strings"
	"time"
)

// markdown renders the whole BENCHMARKS.md: what was measured, on which
// machine, the tables, and how to reproduce them.
func (b *bench) markdown() string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("# synban benchmarks\n\n")
	p("Produced by the harness in [`bench/`](bench/) with `%s` on %s; the whole run took %s. ",
		b.cfg.commandLine, b.began.UTC().Format("2006-01-02 15:04 MST"), b.took.Round(time.Second))
	p("Every figure is the median of %d runs (the one-process-per-address loop: %d runs); ratios divide a column's median by synban's.\n\n", b.cfg.runs, b.cfg.loopRuns)
	p("## Machine\n\n")
	if b.cfg.rev != "" {
		p("- synban: %s\n", b.cfg.rev)
	}
	for _, e := range b.env {
		p("- %s\n", e)
	}
	p("\nThe machine is shared: other jobs may have run at the same time, so read the figures as ratios more than absolutes.\n")

	if len(b.detect) > 0 {
		p("\n## Detection: counting half-open connections per source\n\n")
		p("A victim namespace holds the given number of half-open (SYN_RECV) entries, from a bounded raw-socket SYN flood forged from 10.202.0.0/16 "+
			"(100 SYNs per source, inside the lab only), plus %.0f established connection(s) per half-open entry from a real client. "+
			"Each tool runs inside the victim namespace and produces the per-source counts an operator acts on. "+
			"The synban library columns time one sample plus `detect.Analyze` with the default policy, in-process; the engine columns "+
			"call the engine in-process on a thread inside the victim namespace, as `synban sample` and `synban plan` do (a whole sampling window with conntrack merged in, "+
			"host-address discovery; `plan` also the backend probe and the rendered ruleset), without the process start and output.\n\n", b.cfg.estRatio)
		p("| tool |")
		for _, r := range b.detect {
			p(" %d half-open + %d established | ratio |", r.halfOpen, r.established)
		}
		p("\n|---|")
		for range b.detect {
			p("---:|---:|")
		}
		p("\n")
		order := []int{colFloor, colFloorBoth, colLibSockDiag, colLibAnalyze, colLibSynRecv, colLibProcFS, colEngSample, colEngPlan, colSS, colNetstat}
		for _, c := range order {
			p("| %s |", strings.ReplaceAll(detectColNames[c], "|", "\\|"))
			for _, r := range b.detect {
				p(" %s | %s |", r.cols[c].cell(), ratio(r.cols[c], r.cols[colLibSockDiag]))
			}
			p("\n")
		}
		p("\nChecks: ")
		for i, r := range b.detect {
			if i > 0 {
				p("; ")
			}
			p("at %d half-open, the ss pipeline listed %d sources, the netstat pipeline %d, synban's Analyze saw %d sources and gave %d verdicts; %d half-open entries were left after measuring",
				r.halfOpen, r.sources[colSS], r.sources[colNetstat], r.sources[colLibSockDiag], r.verdicts, r.after)
		}
		p(".\n")
		p("\nThe fair floor: synban's library detection with the default policy reads the same two states as " +
			"`ss -tan state syn-recv state established`; its time over that dump's: ")
		for i, r := range b.detect {
			if i > 0 {
				p("; ")
			}
			p("%s at %d half-open + %d established", ratio(r.cols[colLibSockDiag], r.cols[colFloorBoth]), r.halfOpen, r.established)
		}
		p(" (goal: at most 1.1×).\n")
	}

	if len(b.apply) > 0 {
		p("\n## Applying bans\n\n")
		p("N single IPv4 bans with a 10 min timeout and a comment, compiled by `rules.Compile` with the default policy (max_entries raised to 262144), "+
			"loaded into a fresh namespace each run. `nft -f` loads the same ruleset rendered by `templates.NFT` (what `synban plan --format nft` prints). "+
			"The loop adds each address with its own `nft add element` process into the same table loaded empty; counts above -loop-max %d are extrapolated linearly "+
			"from the largest measured count and marked so. The first runs of `nft -f` and the loop are checked by reading every ban back.\n\n", b.cfg.loopMax)
		p("| bans |")
		for c := range numApplyCols {
			p(" %s |", strings.ReplaceAll(applyColNames[c], "|", "\\|"))
			if c != colApplyLib {
				p(" ratio |")
			}
		}
		p("\n|---:|")
		for c := range numApplyCols {
			p("---:|")
			if c != colApplyLib {
				p("---:|")
			}
		}
		p("\n")
		for _, r := range b.apply {
			p("| %d |", r.bans)
			for c := range numApplyCols {
				p(" %s |", r.cols[c].cell())
				if c != colApplyLib {
					p(" %s |", ratio(r.cols[c], r.cols[colApplyLib]))
				}
			}
			p("\n")
		}
	}

	if len(b.steady) > 0 {
		p("\n## `synban run`: first run and steady state\n\n")
		p("synban's run cycle in a fresh namespace without connections, its state store holding N active bans: the first run samples, " +
			"creates the table and restores the N bans; the second run right after it finds nothing to change (each run checks its outcome: added N, then 0). " +
			"Times and heap allocations are the engine's `Run`, called in-process on a thread inside the namespace (median allocations: count and bytes). " +
			"Peak memory is the synban binary's `run --json`, repeated in another fresh namespace: the process's maximum resident set size, from GNU time (`/usr/bin/time -f %%M`).\n\n")
		p("| bans | first run | first run allocations | first run peak RSS (binary) | steady-state run | steady-state allocations | steady-state peak RSS (binary) |\n|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range b.steady {
			p("| %d | %s | %s | %s | %s | %s | %s |\n", r.bans, r.first.cell(), r.first.medianAllocs(), fmtKiB(r.binFirst.medianRSS()),
				r.steady.cell(), r.steady.medianAllocs(), fmtKiB(r.binSteady.medianRSS()))
		}
	}

	if len(b.pipeline) > 0 {
		b.pipelineMarkdown(p)
	}

	p("\n## Reproduce\n\n")
	p("As root on Linux with nftables (`nft`), iproute2 (`ip`, `ss`, `tc`), procps (`sysctl`) and, for the netstat column, net-tools " +
		"(`apt-get install nftables iproute2 procps net-tools`; without netstat that column says n/a):\n\n")
	p("```sh\n%s\n```\n\n", b.cfg.commandLine)
	p("Flags: `-sizes` (half-open entries, comma-separated), `-established` (established connections per half-open entry), `-bans` (ban counts), `-pipeline` (spoofed sources of the decision benchmarks), " +
		"`-runs`, `-loop-max` and `-loop-runs` (the per-process loop), `-skip-detect`, `-skip-apply`, `-skip-steady`, `-skip-pipeline`, `-synban BINARY`, `-out FILE`. " +
		"The harness builds its namespaces with `ip netns add` under names starting `sbbench-`, sends traffic only between them, and deletes them on exit, on error and on Ctrl-C; " +
		"it changes nothing in the root namespace.\n")
	return w.String()
}
