package main

// The one-pass scenario (`-pass SIZES`, issue 24): what one cron start of
// synban costs on a host under a SYN flood, as whole processes, beside the
// `ss | wc -l` an operator's script runs. A victim namespace holds N
// half-open entries (the detection lab of lab.go: 100 per source from
// 10.202.0.0/16, so 1,000 sources at 100,000), and optionally established
// connections; each row is one process (or pipeline) run inside it, the rows
// of one round back to back, their order reversed every other round, and
// every figure a median over the rounds.
//
// Peak RSS comes from GNU time (`/usr/bin/time -f %M`), not from the rusage
// this process gets for a child it starts itself: Go starts children with
// CLONE_VM|CLONE_VFORK, so the child runs on this process's memory until it
// execs, and Linux folds that memory's high-water mark into the child's
// maxrss at exec. The harness, holding the lab's counts, would show as the
// floor of every row. GNU time forks a copy of its own small self instead.
// CPU (user + system) is the rusage of GNU time's process, which includes
// the waited-for command (and, for a pipeline, every process of it) and GNU
// time's own fraction of a millisecond.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/engine"
	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/state"
	"github.com/synban/synban/templates"
)

// Rows of the pass table, in the order of the first round.
const (
	passSSSyn = iota
	passSSBoth
	passVersion
	passPlan
	passRun
	// passInit is `synban version` under GODEBUG=inittrace=1: only its
	// summed initialisation clock is reported.
	passInit
	numPassRows
)

var passRowNames = [numPassRows]string{
	"`ss -tan state syn-recv | wc -l`",
	"`ss -tan state syn-recv state established | wc -l` (floor)",
	"`synban version`",
	"`synban plan`",
	"`synban run`",
	"`GODEBUG=inittrace=1 synban version`",
}

// passFloor is the row the ratios divide by: the kernel dump of the two
// states the default policy reads.
const passFloor = passSSBoth

// passEhash is the size of the lab namespaces' own TCP established hash
// (namespaces.ownEhash): room for 100,000 half-open and as many
// established entries.
const passEhash = 1 << 18

// gnuTime is GNU time, which reports a child's peak RSS uncontaminated by
// the harness's (see above).
const gnuTime = "/usr/bin/time"

// synbanTable is the nftables table synban's default policy creates, deleted
// after every run so that each run is a first run under attack.
const synbanTable = "inet synban"

// proc is one whole-process measurement.
type proc struct {
	wall, cpu      time.Duration
	rss            int64 // peak resident set, KiB
	stdout, stderr string
}

// passCell is the measurements of one row at one size.
type passCell struct {
	wall, cpu []time.Duration
	rss       []int64
	// ratios are the wall and CPU over the floor's of the same round.
	wallRatio, cpuRatio []float64
}

func (c *passCell) add(p proc) {
	c.wall = append(c.wall, p.wall)
	c.cpu = append(c.cpu, p.cpu)
	c.rss = append(c.rss, p.rss)
}

// passRow is the results at one size.
type passRow struct {
	halfOpen, established int // entries before measuring
	after, afterEst       int // entries after measuring
	cells                 [numPassRows]passCell
	// initClock is the summed package-initialisation clock of each
	// inittrace run; initPkgs the packages it listed.
	initClock []time.Duration
	initPkgs  int
	// wcLines is what `ss -tan state syn-recv | wc -l` printed each round
	// (the entries plus ss's header line), a check that the table held.
	wcLines []int
	// bans is what each `synban run` stored, as "4 × /24" and the like.
	bans []string
	// profile is the in-process profile's top entries, at the largest size
	// with -pass-profile.
	profile []profileTop
}

// profileTop is one profile's `go tool pprof -top` excerpt.
type profileTop struct {
	title, command, text string
}

// passScenario builds the lab, fills it to each size in turn (ascending)
// and measures the rows there.
func (b *bench) passScenario(ctx context.Context) error {
	if _, err := os.Stat(gnuTime); err != nil {
		return fmt.Errorf("the pass scenario reads peak RSS from GNU time: apt-get install time: %w", err)
	}
	if err := passCommands(); err != nil {
		return err
	}
	if err := settleBinary(b.synban); err != nil {
		return err
	}
	l, err := newLab(ctx, b.nss)
	if err != nil {
		return err
	}
	defer l.close()
	sizes := slices.Sorted(slices.Values(b.cfg.pass))
	for i, size := range sizes {
		est := int(float64(size) * b.cfg.passEst)
		b.log.Info("filling the victim's table", "half_open", size, "established", est)
		began := time.Now()
		half, gotEst, err := l.fill(ctx, size, est)
		if err != nil {
			return err
		}
		b.log.Info("table filled", "half_open", half, "established", gotEst, "took", time.Since(began).Round(time.Millisecond))
		row := &passRow{halfOpen: half, established: gotEst}
		if err := b.passRounds(ctx, l, row); err != nil {
			return err
		}
		if b.cfg.passProfile != "" && i == len(sizes)-1 {
			if row.profile, err = b.passProfiles(ctx, l, size); err != nil {
				return fmt.Errorf("profile: %w", err)
			}
		}
		if row.after, row.afterEst, err = l.count(ctx); err != nil {
			return err
		}
		b.log.Info("pass measured", "half_open", half, "after", row.after,
			"floor", fmtDur(median(row.cells[passFloor].wall)), "plan", fmtDur(median(row.cells[passPlan].wall)),
			"run", fmtDur(median(row.cells[passRun].wall)), "run_rss", fmtKiB(median(row.cells[passRun].rss)))
		b.pass = append(b.pass, row)
	}
	return nil
}

// passRounds measures every row -pass-runs times, reversing the order every
// other round so that neither end of a round is always the same row.
func (b *bench) passRounds(ctx context.Context, l *lab, row *passRow) error {
	noState := filepath.Join(b.tmp, "pass-no-state") // plan reads no store: it holds none
	for r := range b.cfg.passRuns {
		order := make([]int, numPassRows)
		for i := range order {
			order[i] = i
		}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		var round [numPassRows]proc
		for _, c := range order {
			var p proc
			var err error
			switch c {
			case passSSSyn, passSSBoth:
				pipe := "ss -tan state syn-recv | wc -l"
				if c == passSSBoth {
					pipe = "ss -tan state syn-recv state established | wc -l"
				}
				p, err = b.timeProc(ctx, l.victim, nil, "sh", "-c", pipe)
				if err == nil && c == passSSSyn {
					n, perr := strconv.Atoi(strings.TrimSpace(p.stdout))
					if perr != nil {
						return fmt.Errorf("%s printed %q", pipe, p.stdout)
					}
					row.wcLines = append(row.wcLines, n)
				}
			case passVersion:
				p, err = b.timeProc(ctx, l.victim, nil, b.synban, "version")
			case passInit:
				p, err = b.timeProc(ctx, l.victim, []string{"GODEBUG=inittrace=1"}, b.synban, "version")
				if err == nil {
					total, n, perr := initClock(p.stderr)
					if perr != nil {
						return perr
					}
					row.initClock, row.initPkgs = append(row.initClock, total), n
				}
			case passPlan:
				p, err = b.timeProc(ctx, l.victim, nil, b.synban, "plan", "--state-dir", noState)
			case passRun:
				dir := filepath.Join(b.tmp, fmt.Sprintf("pass-state-%d-%d", row.halfOpen, r))
				p, err = b.timeProc(ctx, l.victim, nil, b.synban, "run", "--state-dir", dir)
				if err == nil {
					err = b.checkRun(ctx, l.victim, dir, row)
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %w", passRowNames[c], err)
			}
			round[c] = p
			row.cells[c].add(p)
		}
		floor := round[passFloor]
		for c := range numPassRows {
			if floor.wall > 0 && floor.cpu > 0 {
				row.cells[c].wallRatio = append(row.cells[c].wallRatio, float64(round[c].wall)/float64(floor.wall))
				row.cells[c].cpuRatio = append(row.cells[c].cpuRatio, float64(round[c].cpu)/float64(floor.cpu))
			}
		}
	}
	return nil
}

// checkRun checks what a `synban run` left: bans in its store, which it
// records for the report, and then removes its table from the victim so
// that the next run starts as the first did.
func (b *bench) checkRun(ctx context.Context, ns *netns, dir string, row *passRow) error {
	st, err := state.Open(dir)
	if err != nil {
		return err
	}
	s, err := st.Load()
	if err != nil {
		return fmt.Errorf("load the run's store: %w", err)
	}
	if len(s.Bans) == 0 {
		return errors.New("the run banned nothing")
	}
	row.bans = append(row.bans, describeBans(s.Bans))
	if _, err := ns.run(ctx, "nft", "delete table "+synbanTable); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// describeBans counts bans per prefix length: "4 × /24".
func describeBans(bans []state.Ban) string {
	per := map[int]int{}
	for _, b := range bans {
		per[b.Prefix.Bits()]++
	}
	lens := slices.Sorted(func(yield func(int) bool) {
		for k := range per {
			if !yield(k) {
				return
			}
		}
	})
	var parts []string
	for _, n := range lens {
		parts = append(parts, fmt.Sprintf("%d × /%d", per[n], n))
	}
	return strings.Join(parts, " + ")
}

// settleBinary writes the binary at path back to disk and drops it from
// the page cache, so that the first row to start it reads it back as a
// process reads an installed binary. A binary `go build` has just written
// sits in the page cache in large folios, and a process starting from it
// maps more of it at each fault: on the machine this was written on,
// `synban version` peaked at 28 MB from a fresh build and at 19 MB from the
// same file written back and read again.
func settleBinary(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s back: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop %s from the page cache: %w", path, err)
	}
	return nil
}

// timeProc runs argv (with env added to this process's environment) inside
// ns under GNU time and returns its wall time (from fork to exit, taken on
// the thread inside ns), CPU, peak RSS and output.
func (b *bench) timeProc(ctx context.Context, ns *netns, env []string, argv ...string) (proc, error) {
	rssFile := filepath.Join(b.tmp, "pass-maxrss")
	full := append([]string{gnuTime, "-f", "%M", "-o", rssFile}, argv...)
	cmd := execCommand(ctx, full[0], full[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	var p proc
	err := nsenter.Do(ns.path(), func() error {
		start := time.Now()
		err := cmd.Run()
		p.wall = time.Since(start)
		return err
	})
	p.stdout, p.stderr = out.String(), errb.String()
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	if err != nil {
		return p, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, lastLines(p.stderr, 5))
	}
	data, err := os.ReadFile(rssFile)
	if err != nil {
		return p, fmt.Errorf("GNU time's output: %w", err)
	}
	// The last line: GNU time writes a note above it when the command
	// fails, which the exit status has already reported.
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return p, fmt.Errorf("GNU time wrote nothing to %s", rssFile)
	}
	if p.rss, err = strconv.ParseInt(fields[len(fields)-1], 10, 64); err != nil {
		return p, fmt.Errorf("GNU time's output %q: %w", data, err)
	}
	return p, nil
}

// lastLines is the last n lines of s, for error messages.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// initClock sums the clock times of the package initialisations that
// GODEBUG=inittrace=1 prints on standard error, one line each:
//
//	init internal/bytealg @0.008 ms, 0 ms clock, 0 bytes, 0 allocs
//
// and returns the sum and the number of packages. Other lines are ignored.
func initClock(trace string) (time.Duration, int, error) {
	var total time.Duration
	n := 0
	for _, line := range strings.Split(trace, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "init ")
		if !ok {
			continue
		}
		// "PKG @START ms, CLOCK ms clock, BYTES bytes, ALLOCS allocs"
		_, rest, ok = strings.Cut(rest, " ms, ")
		if !ok {
			continue
		}
		clock, _, ok := strings.Cut(rest, " ms clock")
		if !ok {
			continue
		}
		ms, err := strconv.ParseFloat(strings.TrimSpace(clock), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("inittrace line %q: %w", line, err)
		}
		total += time.Duration(ms * float64(time.Millisecond))
		n++
	}
	if n == 0 {
		return 0, 0, fmt.Errorf("no inittrace lines in %q", lastLines(trace, 3))
	}
	return total, n, nil
}

// median is the median of xs (the mean of the middle two for an even
// count); zero for none.
func median[T int64 | float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// passProfiles profiles the engine's plan and run at the lab's current
// table: a child process (this program re-executed with profileFlag) started
// inside the victim namespace calls them in-process, as `synban plan` and
// `synban run` do, under runtime/pprof, and writes the profiles to
// -pass-profile DIR; passProfiles returns `go tool pprof -top` excerpts of
// them. A child rather than a thread of this process entered into the
// namespace: the engine's netlink reads then run on unlocked threads as in
// the synban binary, not on one locked OS thread whose every wake-up is a
// hand-off between threads (a quarter of the CPU samples, in futex, when
// profiled that way), and the heap holds nothing of the harness's.
func (b *bench) passProfiles(ctx context.Context, l *lab, size int) ([]profileTop, error) {
	dir := b.cfg.passProfile
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := execCommand(ctx, self, profileFlag, dir, strconv.Itoa(size), b.tmp)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := l.victim.exec(cmd); err != nil {
		return nil, fmt.Errorf("the profiling child: %w: %s", err, lastLines(errb.String(), 10))
	}
	peaks := map[string]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if name, v, ok := strings.Cut(line, " "); ok {
			if n, err := strconv.ParseUint(v, 10, 64); err == nil {
				peaks[name] = n
			}
		}
	}
	var tops []profileTop
	for _, name := range profiledCalls {
		base := filepath.Join(dir, fmt.Sprintf("pass-%d-%s", size, name))
		cpuFile, allocFile, peakFile := base+".cpu.pprof", base+".alloc.pprof", base+".inuse-peak.pprof"
		for _, q := range []struct {
			title string
			args  []string
		}{
			{name + ": CPU, by own time", []string{"-top", "-nodecount=8", cpuFile}},
			// Only the module's and its libraries' functions: the harness's
			// and the runtime's frames above them add nothing.
			{name + ": CPU, by cumulative time (functions of github.com/ modules only)", []string{"-top", "-cum", "-show=^github\\.com/", "-nodecount=14", cpuFile}},
			{name + ": bytes allocated (alloc_space), by own allocations", []string{"-top", "-sample_index=alloc_space", "-nodecount=8", allocFile}},
			{fmt.Sprintf("%s: live heap at its peak (inuse_space; %.1f MiB live at the largest forced GC, over the heap before the call)", name, float64(peaks[name])/(1<<20)),
				[]string{"-top", "-sample_index=inuse_space", "-nodecount=8", peakFile}},
		} {
			text, err := pprofTop(ctx, q.args...)
			if err != nil {
				return nil, err
			}
			tops = append(tops, profileTop{title: q.title, command: "go tool pprof " + strings.Join(relArgs(q.args, dir), " "), text: text})
		}
	}
	return tops, nil
}

// profileFlag makes this program the profiling child of passProfiles:
// `bench -pass-profile-child DIR SIZE TMP`, started inside the victim
// namespace, writes DIR/pass-SIZE-{plan,run}.{cpu,alloc,inuse-peak}.pprof,
// keeps state directories under TMP, and prints "NAME PEAK" lines: the live
// heap's growth at its peak in bytes.
const profileFlag = "-pass-profile-child"

// profiledCalls are the engine calls profiled, in order.
var profiledCalls = []string{"plan", "run"}

// profileMain is the profiling child's main.
func profileMain(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: bench -pass-profile-child DIR SIZE TMP")
		return 2
	}
	// Finer than the default 512 KiB, so the live heap's profile at its
	// peak (tens of MiB) has samples enough to rank its allocation sites.
	runtime.MemProfileRate = 32 << 10
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	peaks, err := profileEngine(ctx, args[0], args[1], args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "pass-profile-child:", err)
		return 1
	}
	for _, name := range profiledCalls {
		fmt.Printf("%s %d\n", name, peaks[name])
	}
	return 0
}

// profileEngine profiles each of the engine's calls three ways, in separate
// passes so that one profile's cost does not show in another: CPU (over at
// least 10 calls and 3 s, for samples enough), the bytes allocated (heap
// alloc_space, the difference over 5 calls) and the live heap at its peak
// (inuse_space, from a GC forced every 20 ms while one call runs). Each run
// has a fresh state directory, and its table is deleted after it, so that
// every run is a first run under attack.
func profileEngine(ctx context.Context, dir, size, tmp string) (map[string]uint64, error) {
	p := policy.Default()
	seq := 0
	call := map[string]func() error{
		"plan": func() error {
			e := engine.New(nil, engine.Options{StateDir: filepath.Join(tmp, "pass-no-state")})
			d, choice, err := e.Plan(ctx, p, time.Now())
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			return templates.Ruleset(&buf, d.Ruleset, d.Policy, templates.FormatFor(choice.Name))
		},
		"run": func() error {
			seq++
			sdir := filepath.Join(tmp, fmt.Sprintf("pass-profile-state-%d", seq))
			e := engine.New(nil, engine.Options{StateDir: sdir})
			out, err := e.Run(ctx, p, time.Now())
			if err != nil {
				return err
			}
			if out.Result.Added == 0 {
				return errors.New("the run added no ban")
			}
			if msg, err := execCommand(ctx, "nft", "delete table "+synbanTable).CombinedOutput(); err != nil {
				return fmt.Errorf("nft delete table %s: %w: %s", synbanTable, err, msg)
			}
			return os.RemoveAll(sdir)
		},
	}
	peaks := map[string]uint64{}
	for _, name := range profiledCalls {
		fn := call[name]
		base := filepath.Join(dir, fmt.Sprintf("pass-%s-%s", size, name))
		if err := cpuProfile(base+".cpu.pprof", fn, 10, 3*time.Second); err != nil {
			return nil, fmt.Errorf("%s CPU profile: %w", name, err)
		}
		if err := allocProfile(ctx, base+".alloc.pprof", fn, 5); err != nil {
			return nil, fmt.Errorf("%s alloc profile: %w", name, err)
		}
		peak, err := peakProfile(ctx, base+".inuse-peak.pprof", fn)
		if err != nil {
			return nil, fmt.Errorf("%s peak heap profile: %w", name, err)
		}
		peaks[name] = peak
	}
	return peaks, nil
}

// relArgs shows the profile files of args by their base names.
func relArgs(args []string, dir string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if strings.HasPrefix(a, dir) {
			out[i] = filepath.Base(a)
		}
	}
	return out
}

// cpuProfile profiles fn, called at least n times and for at least d.
func cpuProfile(file string, fn func() error, n int, d time.Duration) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	start := time.Now()
	for i := 0; i < n || time.Since(start) < d; i++ {
		if err := fn(); err != nil {
			pprof.StopCPUProfile()
			return err
		}
	}
	pprof.StopCPUProfile()
	return f.Close()
}

// allocProfile writes the heap profile's difference over n calls of fn to
// file (go tool pprof -base): what the calls allocated, not the harness.
func allocProfile(ctx context.Context, file string, fn func() error, n int) error {
	before := file + ".before"
	if err := writeHeap(before); err != nil {
		return err
	}
	defer os.Remove(before)
	for range n {
		if err := fn(); err != nil {
			return err
		}
	}
	after := file + ".after"
	if err := writeHeap(after); err != nil {
		return err
	}
	defer os.Remove(after)
	cmd := execCommand(ctx, "go", "tool", "pprof", "-proto", "-base", before, after)
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("go tool pprof -base: %w", err)
	}
	return os.WriteFile(file, out, 0o644)
}

// writeHeap writes the heap profile after a GC, so it is up to date.
func writeHeap(file string) error {
	runtime.GC()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		return err
	}
	return f.Close()
}

// peakProfile calls fn once while forcing a GC every 20 ms and keeping the
// heap profile taken after the GC that found the most live heap; it writes
// that profile's difference over the heap before the call to file (so the
// harness's own live data drops out) and returns that live heap's growth
// over the start, in bytes. A GC marks what is reachable at that moment, so
// the profile's inuse_space is what fn held then.
func peakProfile(ctx context.Context, file string, fn func() error) (uint64, error) {
	before := file + ".before"
	if err := writeHeap(before); err != nil {
		return 0, err
	}
	defer os.Remove(before)
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	base := live[0].Value.Uint64()
	var (
		mu   sync.Mutex
		best []byte
		top  uint64
	)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			runtime.GC()
			s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > top {
				var buf bytes.Buffer
				if err := pprof.Lookup("heap").WriteTo(&buf, 0); err == nil {
					mu.Lock()
					best, top = buf.Bytes(), v
					mu.Unlock()
				}
			}
		}
	}()
	err := fn()
	close(done)
	<-finished
	if err != nil {
		return 0, err
	}
	if best == nil {
		return 0, errors.New("the call ended before the first forced GC")
	}
	at := file + ".at-peak"
	if err := os.WriteFile(at, best, 0o644); err != nil {
		return 0, err
	}
	defer os.Remove(at)
	cmd := execCommand(ctx, "go", "tool", "pprof", "-proto", "-base", before, at)
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("go tool pprof -base: %w", err)
	}
	if top < base {
		top = base
	}
	return top - base, os.WriteFile(file, out, 0o644)
}

// pprofTop runs `go tool pprof` with args and returns its table, without
// the lines naming the file and the build.
func pprofTop(ctx context.Context, args ...string) (string, error) {
	cmd := execCommand(ctx, "go", append([]string{"tool", "pprof"}, args...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool pprof %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	var keep []string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if strings.HasPrefix(line, "File: ") || strings.HasPrefix(line, "Build ID: ") || strings.HasPrefix(line, "Time: ") {
			continue
		}
		keep = append(keep, shortenShapes(line))
	}
	return strings.Join(keep, "\n"), nil
}

// shortenShapes replaces the type arguments pprof prints for generic
// functions ("chunked[go.shape.struct { addr [16]uint8; ... }].add") with
// "[…]", keeping the lines of the table readable.
func shortenShapes(line string) string {
	const open = "[go.shape."
	var b strings.Builder
	for {
		i := strings.Index(line, open)
		if i < 0 {
			b.WriteString(line)
			return b.String()
		}
		b.WriteString(line[:i])
		depth, j := 0, i
		for ; j < len(line); j++ {
			if line[j] == '[' {
				depth++
			} else if line[j] == ']' {
				depth--
				if depth == 0 {
					break
				}
			}
		}
		if j == len(line) { // unbalanced: leave the rest as it is
			b.WriteString(line[i:])
			return b.String()
		}
		b.WriteString("[…]")
		line = line[j+1:]
	}
}

// passMarkdown renders the pass section.
func (b *bench) passMarkdown() string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("## One pass under attack: whole processes beside `ss | wc -l`\n\n")
	p("Produced by `%s` on %s (synban %s); the whole run took %s.\n\n", b.cfg.commandLine, b.began.UTC().Format("2006-01-02 15:04 MST"),
		b.cfg.rev, b.took.Round(time.Second))
	for _, e := range b.env {
		p("- %s\n", e)
	}
	p("\nA victim namespace holds N half-open (SYN_RECV) entries from a bounded raw-socket SYN flood forged from 10.202.0.0/16 "+
		"(100 SYNs per source, so %s; SYN cookies off, backlogs raised, inside the lab only), plus %g established connection(s) per half-open entry. "+
		"Each row is one process (or shell pipeline) started inside the victim namespace, from a thread that entered it: "+
		"`synban plan` and `synban run` with the embedded default policy (no `-c`), `plan` with an empty `--state-dir`, "+
		"each `run` with a fresh `--state-dir` and the `%s` table deleted after it, so every run is a first run under attack that must ban "+
		"(checked: exit status 0 and bans in its store). "+
		"Wall is from fork to exit of the whole pipeline; CPU is user + system of every process in it (rusage); peak RSS is the largest "+
		"process's maximum resident set (GNU time's %%M; for the pipelines, ss's). Every row runs under GNU time (it adds well under a millisecond of wall "+
		"and CPU to each): the rusage of a child the harness started itself would report the harness's own resident set as the child's peak "+
		"(Go starts children with CLONE_VM, and Linux records the old memory's high-water mark at exec). "+
		"Before the first row the synban binary is written back and dropped from the page cache (fsync, POSIX_FADV_DONTNEED), so it is read "+
		"back as an installed binary is: started straight from `go build`'s fresh page cache, whose large folios map more per fault, "+
		"`synban version` peaked about 9 MB higher. "+
		"The lab's namespaces have TCP established hashes of their own (net.ipv4.tcp_child_ehash_entries = %d in a parent namespace they are created from), "+
		"so every dump walks the lab's sockets only: with the hash all namespaces share, each dump also walked the sockets other jobs' namespaces held "+
		"(when this scenario was written, another job's 200,000 sockets cost every `ss` on the machine 0.12 s of system time, even in an empty namespace). "+
		"All rows run back to back in each of %d rounds, in reverse order every other round; figures are medians over the rounds, and the "+
		"ratios are medians of each round's figure over the floor's in the same round (the floor is the kernel dump of the two states the default policy reads).\n\n",
		passSourcesNote(b.pass), b.cfg.passEst, synbanTable, passEhash, b.cfg.passRuns)
	p("The machine was shared with other jobs compiling and testing on the same %d cores while this ran: absolutes are noisy, "+
		"read the side-by-side ratios.\n\n", runtime.NumCPU())
	p("| entries | pass | wall | CPU | peak RSS | wall × floor | CPU × floor | RSS × floor |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range b.pass {
		label := fmt.Sprintf("%d half-open", r.halfOpen)
		if r.established > 0 {
			label += fmt.Sprintf(" + %d established", r.established)
		}
		floorRSS := median(r.cells[passFloor].rss)
		for c := range passInit {
			cell := &r.cells[c]
			rss := median(cell.rss)
			p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", label, strings.ReplaceAll(passRowNames[c], "|", "\\|"),
				fmtDur(median(cell.wall)), fmtDur(median(cell.cpu)), fmtKiB(rss),
				fmtX(median(cell.wallRatio)), fmtX(median(cell.cpuRatio)), fmtX(float64(rss)/float64(max(floorRSS, 1))))
		}
	}
	p("\n")
	for _, r := range b.pass {
		p("- At %d half-open: `synban version`'s package initialisation (GODEBUG=inittrace=1, the `ms clock` of its %d `init` lines summed): "+
			"median %s (rounds: %s). ", r.halfOpen, r.initPkgs, fmtDur(median(r.initClock)), fmtDurs(r.initClock))
		p("`ss -tan state syn-recv | wc -l` printed %s lines (entries + the header) over the rounds; sock_diag counted %d half-open + %d established before and %d + %d after. ",
			spanInts(r.wcLines), r.halfOpen, r.established, r.after, r.afterEst)
		p("Each `synban run` stored %s.\n", strings.Join(slices.Compact(slices.Clone(r.bans)), "; "))
	}
	for _, r := range b.pass {
		if len(r.profile) == 0 {
			continue
		}
		p("\n### Profiles at %d half-open (in-process)\n\n", r.halfOpen)
		p("With `-pass-profile DIR` a child process of the harness, started inside the victim namespace, calls the engine's `Plan` (and renders the ruleset) "+
			"and `Run` in-process with the default policy, as `synban plan` and `synban run` do, under runtime/pprof: CPU over at least 10 calls and 3 s; bytes allocated over 5 calls "+
			"(the heap profile's difference, `-base`; MemProfileRate 32 KiB); the live heap at its peak during one call (a GC forced every 20 ms, the profile after the one "+
			"that found the most live heap, less the heap before the call). Each `Run` has a fresh state directory and its table is deleted after it. "+
			"CPU samples count the kernel's time in system calls against the call that made it (the sock_diag dump runs in `recvmsg`). "+
			"The profiles are in DIR (%s).\n", filepath.Base(b.cfg.passProfile))
		for _, t := range r.profile {
			p("\n%s:\n\n```\n$ %s\n%s\n```\n", t.title, t.command, t.text)
		}
	}
	p("\nRegenerate (as root, with iproute2, nftables and GNU time; `-pass-established R` adds R established connections per half-open entry, "+
		"`-pass-profile DIR` the profiles, `-synban BINARY` measures a built binary instead of building ./cmd/synban; namespaces and veths are named `%s…`):\n\n```sh\n%s\n```\n",
		b.nss.namePrefix(), b.cfg.commandLine)
	return w.String()
}

// passSourcesNote says how many sources each size has.
func passSourcesNote(rows []*passRow) string {
	var parts []string
	for _, r := range rows {
		parts = append(parts, fmt.Sprintf("%d sources for %d", (r.halfOpen+perSource-1)/perSource, r.halfOpen))
	}
	return strings.Join(parts, ", ")
}

// fmtX prints a ratio as "1.23×".
func fmtX(r float64) string {
	if r == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", r)
}

// fmtDurs prints durations in order, comma-separated.
func fmtDurs(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmtDur(d))
	}
	return strings.Join(parts, ", ")
}

// spanInts prints the range of xs: "100001" or "100001–100005".
func spanInts(xs []int) string {
	if len(xs) == 0 {
		return "no"
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return fmt.Sprintf("%d–%d", lo, hi)
}

// passCommands checks that the commands the scenario runs are installed.
func passCommands() error {
	for _, name := range []string{"sh", "ss", "wc", "nft"} {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("the pass scenario needs %s: %w", name, err)
		}
	}
	return nil
}
