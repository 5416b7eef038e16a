package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/nft"
	"github.com/synban/synban/state"
	"github.com/synban/synban/templates"
)

// benchPolicy is the policy of the apply and steady-state benchmarks: the
// default, with ban sets large enough for every size measured.
const benchPolicy = `# synban benchmark policy: the defaults, with room for 100,000+ bans.
[ban]
max_entries = 262144
`

// banAddr is the i-th banned address: 10.100.0.0 upwards, in the harness's
// own namespaces only.
func banAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(100 + i>>16), byte(i >> 8), byte(i)})
}

// banRuleset compiles n single-address bans with the benchmark policy.
func banRuleset(p *policy.Policy, n int) (*rules.Ruleset, error) {
	verdicts := make([]rules.Offence, n)
	for i := range verdicts {
		verdicts[i] = rules.Offence{Subject: netip.PrefixFrom(banAddr(i), 32), Rule: "syn-flood", State: policy.StateSynRecv,
			Count: 120, Threshold: 50, Sources: 1, BanFor: 10 * time.Minute}
	}
	rs, omitted, err := rules.Compile(p, verdicts, p.Guard(nil))
	if err != nil {
		return nil, err
	}
	if len(rs.Bans) != n || len(omitted) != 0 {
		return nil, fmt.Errorf("compiled %d bans with %d omitted, want %d", len(rs.Bans), len(omitted), n)
	}
	return rs, nil
}

// Columns of the apply table.
const (
	colApplyLib = iota
	colApplyNFTFile
	colApplyLoop
	numApplyCols
)

var applyColNames = [numApplyCols]string{
	"synban (rules/nft Apply, one netlink transaction)",
	"`nft -f` of the same ruleset (templates.NFT)",
	"one `nft add element` process per address",
}

// applyRow is the apply results for one ban count.
type applyRow struct {
	bans int
	cols [numApplyCols]*series
}

// applyBans times loading n bans into a fresh namespace three ways.
func (b *bench) applyBans(ctx context.Context) error {
	p, err := policy.Parse("bench.toml", []byte(benchPolicy))
	if err != nil {
		return err
	}
	var loopBase *applyRow // the largest size measured with the loop
	for _, n := range b.cfg.bans {
		rs, err := banRuleset(p, n)
		if err != nil {
			return err
		}
		script, err := templates.NFTString(rs, "bench")
		if err != nil {
			return err
		}
		file := filepath.Join(b.tmp, fmt.Sprintf("bans-%d.nft", n))
		if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
			return err
		}
		empty := *rs
		empty.Bans = nil
		emptyScript, err := templates.NFTString(&empty, "bench")
		if err != nil {
			return err
		}
		emptyFile := filepath.Join(b.tmp, fmt.Sprintf("empty-%d.nft", n))
		if err := os.WriteFile(emptyFile, []byte(emptyScript), 0o600); err != nil {
			return err
		}
		row := applyRow{bans: n}
		for i := range row.cols {
			row.cols[i] = &series{}
		}
		loop := n <= b.cfg.loopMax
		for r := 0; r < b.cfg.runs; r++ {
			// synban's library.
			d, err := b.inFreshNS(ctx, "apply", func(ns *netns) (time.Duration, error) {
				be, err := nft.New(nft.Options{NetNS: ns.path(), Table: rs.Table, Family: rs.Family})
				if err != nil {
					return 0, err
				}
				start := time.Now()
				res, err := be.Apply(ctx, rs)
				d := time.Since(start)
				if err != nil {
					return 0, err
				}
				if res.Added != n {
					return 0, fmt.Errorf("Apply added %d bans, want %d", res.Added, n)
				}
				return d, nil
			})
			if err != nil {
				return fmt.Errorf("%s, %d bans: %w", applyColNames[colApplyLib], n, err)
			}
			row.cols[colApplyLib].walls = append(row.cols[colApplyLib].walls, d)

			// nft -f, checked by reading the bans back once.
			d, err = b.inFreshNS(ctx, "nftf", func(ns *netns) (time.Duration, error) {
				d, err := timeCmd(ctx, ns, "nft", "-f", file)
				if err != nil || r > 0 {
					return d, err
				}
				return d, checkBans(ctx, ns, rs, n)
			})
			if err != nil {
				return fmt.Errorf("%s, %d bans: %w", applyColNames[colApplyNFTFile], n, err)
			}
			row.cols[colApplyNFTFile].walls = append(row.cols[colApplyNFTFile].walls, d)

			// One process per address, into the same structure loaded empty.
			if loop && r < b.cfg.loopRuns {
				d, err = b.inFreshNS(ctx, "loop", func(ns *netns) (time.Duration, error) {
					if _, err := ns.run(ctx, "nft", "-f", emptyFile); err != nil {
						return 0, err
					}
					d, err := addElementLoop(ctx, ns, rs)
					if err != nil || r > 0 {
						return d, err
					}
					return d, checkBans(ctx, ns, rs, n)
				})
				if err != nil {
					return fmt.Errorf("%s, %d bans: %w", applyColNames[colApplyLoop], n, err)
				}
				row.cols[colApplyLoop].walls = append(row.cols[colApplyLoop].walls, d)
			}
		}
		if loop {
			loopBase = &row
		} else if loopBase != nil {
			// Extrapolate linearly from the largest size measured.
			per := loopBase.cols[colApplyLoop].median() / time.Duration(loopBase.bans)
			s := row.cols[colApplyLoop]
			s.walls = []time.Duration{per * time.Duration(n)}
			s.extrapolated = true
			s.note = fmt.Sprintf("linear from %d", loopBase.bans)
		} else {
			row.cols[colApplyLoop].note = fmt.Sprintf("over -loop-max %d", b.cfg.loopMax)
		}
		b.log.Info("apply measured", "bans", n, "synban", row.cols[colApplyLib].cell(),
			"nft_f", row.cols[colApplyNFTFile].cell(), "loop", row.cols[colApplyLoop].cell())
		b.apply = append(b.apply, row)
	}
	return nil
}

// inFreshNS runs fn in a namespace made for it and deletes the namespace
// afterwards.
func (b *bench) inFreshNS(ctx context.Context, role string, fn func(*netns) (time.Duration, error)) (time.Duration, error) {
	ns, err := b.nss.add(ctx, role)
	if err != nil {
		return 0, err
	}
	d, err := fn(ns)
	if derr := b.nss.del(ns); derr != nil && err == nil {
		err = derr
	}
	return d, err
}

// addElementLoop adds rs's bans one `nft add element` process each, the way
// many ban scripts and tools do, and returns the total wall time.
func addElementLoop(ctx context.Context, ns *netns, rs *rules.Ruleset) (time.Duration, error) {
	var d time.Duration
	err := nsenter.Do(ns.path(), func() error {
		start := time.Now()
		for _, ban := range rs.Bans {
			elem := fmt.Sprintf("{ %s timeout %s comment \"%s\" }", templates.Elem(ban.Prefix), templates.Duration(ban.Timeout), ban.Reason)
			cmd := execCommand(ctx, "nft", "add", "element", rs.Family, rs.Table, rules.BanSet(ban.Prefix), elem)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("nft add element %s: %w: %s", elem, err, out)
			}
		}
		d = time.Since(start)
		return nil
	})
	return d, err
}

// checkBans reads the bans in ns back through the nftables backend and
// checks there are n of them, all of rs's.
func checkBans(ctx context.Context, ns *netns, rs *rules.Ruleset, n int) error {
	be, err := nft.New(nft.Options{NetNS: ns.path(), Table: rs.Table, Family: rs.Family})
	if err != nil {
		return err
	}
	bans, err := be.Bans(ctx)
	if err != nil {
		return fmt.Errorf("read bans back: %w", err)
	}
	if len(bans) != n {
		return fmt.Errorf("read %d bans back, want %d", len(bans), n)
	}
	got := make(map[netip.Prefix]int, len(bans))
	for _, ab := range bans {
		got[ab.Prefix]++
	}
	var missing, extra, dup []netip.Prefix
	want := make(map[netip.Prefix]bool, len(rs.Bans))
	for _, w := range rs.Bans {
		want[w.Prefix] = true
		if got[w.Prefix] == 0 {
			missing = append(missing, w.Prefix)
		}
	}
	for p, c := range got {
		if !want[p] {
			extra = append(extra, p)
		}
		if c > 1 {
			dup = append(dup, p)
		}
	}
	if len(missing)+len(extra)+len(dup) > 0 {
		return fmt.Errorf("bans read back differ: %d missing (first %v), %d unexpected (first %v), %d listed twice (first %v)",
			len(missing), first(missing), len(extra), first(extra), len(dup), first(dup))
	}
	return nil
}

// steadyRow is the synban run results for one ban count.
type steadyRow struct {
	bans int
	// first and steady are the engine's cycles, in-process (time and
	// allocations); binFirst and binSteady the synban binary's, for their
	// peak RSS.
	first, steady, binFirst, binSteady *series
}

// steadyState measures synban's run cycle in a namespace holding no
// connections, with a state store of n active bans: the first run creates
// the table and restores the bans; the second finds nothing to change.
// The cycle's time and allocations come from the engine called in-process
// (engineRun); the peak memory from the synban binary's `run`, in another
// fresh namespace, since a process's peak resident set is the point there.
func (b *bench) steadyState(ctx context.Context) error {
	policyFile := filepath.Join(b.tmp, "bench.toml")
	if err := os.WriteFile(policyFile, []byte(benchPolicy), 0o600); err != nil {
		return err
	}
	p, err := policy.Load(policyFile)
	if err != nil {
		return err
	}
	for _, n := range b.cfg.bans {
		row := steadyRow{bans: n, first: &series{}, steady: &series{}, binFirst: &series{}, binSteady: &series{}}
		for r := 0; r < b.cfg.runs; r++ {
			dir := filepath.Join(b.tmp, fmt.Sprintf("state-%d-%d", n, r))
			if err := writeState(dir, n); err != nil {
				return err
			}
			_, err := b.inFreshNS(ctx, "run", func(ns *netns) (time.Duration, error) {
				for i, s := range []*series{row.first, row.steady} {
					c, err := engineRun(ctx, ns, p, dir, n, i == 0)
					if err != nil {
						return 0, err
					}
					s.add(c)
				}
				return 0, nil
			})
			if err != nil {
				return fmt.Errorf("engine run, %d bans: %w", n, err)
			}
			_ = os.RemoveAll(dir)

			if err := writeState(dir, n); err != nil {
				return err
			}
			_, err = b.inFreshNS(ctx, "runbin", func(ns *netns) (time.Duration, error) {
				for i, s := range []*series{row.binFirst, row.binSteady} {
					d, rss, out, err := b.synbanRun(ctx, ns, policyFile, dir)
					if err != nil {
						return 0, err
					}
					var res struct {
						Added     int  `json:"added"`
						Refreshed int  `json:"refreshed"`
						Created   bool `json:"created"`
						Restored  int  `json:"restored"`
					}
					if err := json.Unmarshal([]byte(out), &res); err != nil {
						return 0, fmt.Errorf("synban run --json output %q: %w", out, err)
					}
					if res.Restored != n || (i == 0 && (res.Added != n || !res.Created)) || (i == 1 && (res.Added != 0 || res.Created)) {
						return 0, fmt.Errorf("synban run %d of 2 with %d stored bans: %s", i+1, n, strings.TrimSpace(out))
					}
					s.walls = append(s.walls, d)
					s.rss = append(s.rss, rss)
				}
				return 0, nil
			})
			if err != nil {
				return fmt.Errorf("synban run, %d bans: %w", n, err)
			}
			_ = os.RemoveAll(dir)
		}
		b.log.Info("synban run measured", "bans", n, "first", row.first.cell(), "steady", row.steady.cell(),
			"steady_allocs", row.steady.medianAllocs(), "steady_rss", fmtKiB(row.binSteady.medianRSS()))
		b.steady = append(b.steady, row)
	}
	return nil
}

// synbanRun runs `synban run --json` in ns and returns its wall time, peak
// RSS in KiB and output. The peak comes from GNU time (-f %M) when
// /usr/bin/time exists: the rusage of a child this process starts directly
// would count this process's own resident set, which the child shares
// until it execs (Linux records the old memory's high-water mark at exec).
func (b *bench) synbanRun(ctx context.Context, ns *netns, policyFile, dir string) (time.Duration, int64, string, error) {
	argv := []string{b.synban, "run", "--json", "-c", policyFile, "--state-dir", dir}
	rssFile := ""
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		rssFile = filepath.Join(b.tmp, "maxrss")
		argv = append([]string{"/usr/bin/time", "-f", "%M", "-o", rssFile}, argv...)
	}
	var out, errb strings.Builder
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := ns.exec(cmd)
	d := time.Since(start)
	if err != nil {
		return 0, 0, "", fmt.Errorf("synban run: %w: %s", err, errb.String())
	}
	if rssFile == "" {
		return d, maxRSS(cmd), out.String(), nil
	}
	data, err := os.ReadFile(rssFile)
	if err != nil {
		return 0, 0, "", err
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, 0, "", fmt.Errorf("GNU time's output %q: %w", data, err)
	}
	return d, kib, out.String(), nil
}

// writeState writes a state store in dir holding n active bans.
func writeState(dir string, n int) error {
	st, err := state.Open(dir)
	if err != nil {
		return err
	}
	now := time.Now()
	return st.Update(func(s *state.State) error {
		s.Bans = make([]state.Ban, n)
		for i := range s.Bans {
			s.Bans[i] = state.Ban{Prefix: netip.PrefixFrom(banAddr(i), 32), Since: now, Until: now.Add(time.Hour),
				Reason: "syn-flood: 120 syn_recv >= 50", Rule: "syn-flood", Backend: "nftables"}
		}
		return nil
	})
}

func first(ps []netip.Prefix) []netip.Prefix { return ps[:min(len(ps), 3)] }
