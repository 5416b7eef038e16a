// Command bench measures synban against the tools operators use today, in a
// lab of network namespaces it builds and removes itself (root only):
//
//   - detection: synban's sampling and analysis (the library, and the
//     engine's sample and plan, in-process) versus `netstat -ant | ... | uniq -c`,
//     `ss -tan state syn-recv | ... | uniq -c`, and the kernel's own dump
//     (`ss -tan state syn-recv > /dev/null`) as the floor, on a victim table
//     filled with half-open and established connections;
//   - applying bans: rules/nft Apply versus `nft -f` of the same ruleset
//     rendered by templates.NFT versus one `nft add element` per address;
//   - the decision on a spoofed flood of N sources (generated, in-process):
//     the peak heap of analysis, classification, spoof filter and compile,
//     with 1 and 16 rules;
//   - synban's run cycle: the first run restoring N bans from its state
//     store, and the steady-state run after it with nothing to change, with
//     wall time and allocations (the engine in-process) and peak memory (the
//     synban binary, where the process's peak resident set is the point);
//   - one pass under attack (-pass SIZES, bench/pass.go): `ss | wc -l`
//     beside `synban version`, `plan` and `run` as whole processes in a
//     victim namespace full of half-open entries, with wall, CPU and peak
//     RSS, and optionally pprof profiles of the engine's plan and run.
//
// It prints a table of medians over -runs and ratios, and writes it with the
// machine's description and how to reproduce it as markdown (-out).
//
//	go run ./bench -sizes 10000,100000 -runs 5 -out BENCHMARKS.md
//
// Every flood stays between the harness's own namespaces and is bounded by
// the sizes asked for.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config holds the flags.
type config struct {
	sizes      []int
	bans       []int
	pipeline   []int
	runs       int
	loopMax    int
	loopRuns   int
	estRatio   float64
	out        string
	synban     string
	skipDetect bool
	skipApply  bool
	skipSteady bool
	skipPipe   bool
	// drop runs only the drop-cost scenario (bench/drop.go).
	drop        bool
	dropSeconds int
	dropPackets int
	dropDials   int
	dropRuns    int
	// pass runs only the one-pass scenario (bench/pass.go) at these
	// half-open counts.
	pass        []int
	passRuns    int
	passEst     float64
	passProfile string
	dropSenders []string
	rev         string
	commandLine string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == holdFlag {
		if err := raiseNoFile(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(holdMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == profileFlag {
		os.Exit(profileMain(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("size %q: want a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizes := fs.String("sizes", "10000,100000", "half-open entries in the victim's table for the detection benchmarks, comma-separated")
	bans := fs.String("bans", "1000,10000,100000", "ban counts for the apply and steady-state benchmarks, comma-separated")
	pipeline := fs.String("pipeline", "1000000", "spoofed sources in the generated tables of the in-process decision benchmarks (peak heap, 1 vs 16 rules), comma-separated")
	cfg := &config{}
	fs.IntVar(&cfg.runs, "runs", 5, "repetitions of each measurement (the median is reported)")
	fs.IntVar(&cfg.loopMax, "loop-max", 10000, "largest ban count measured with one `nft add element` process per address; larger counts are extrapolated")
	fs.IntVar(&cfg.loopRuns, "loop-runs", 3, "repetitions of the one-process-per-address loop (at most -runs)")
	fs.Float64Var(&cfg.estRatio, "established", 1, "established connections per half-open entry in the victim's table")
	fs.StringVar(&cfg.out, "out", "", "write the results as markdown to this file (e.g. BENCHMARKS.md)")
	fs.StringVar(&cfg.synban, "synban", "", "synban binary to measure (default: go build ./cmd/synban into a temporary directory)")
	fs.StringVar(&cfg.rev, "rev", gitRev(), "the synban revision measured, for the report (default: git describe of the working directory)")
	fs.BoolVar(&cfg.skipDetect, "skip-detect", false, "skip the detection benchmarks")
	fs.BoolVar(&cfg.skipApply, "skip-apply", false, "skip the ban apply benchmarks")
	fs.BoolVar(&cfg.skipSteady, "skip-steady", false, "skip the synban run (first and steady-state) benchmarks")
	fs.BoolVar(&cfg.skipPipe, "skip-pipeline", false, "skip the spoofed-flood decision benchmarks (peak heap, 1 vs 16 rules)")
	fs.BoolVar(&cfg.drop, "drop", false, "run only the drop-cost scenario: ns per dropped SYN on each drop path (with -out, its section of the file is replaced and the rest kept)")
	fs.IntVar(&cfg.dropSeconds, "drop-seconds", 3, "drop scenario: seconds of flood per path and case")
	fs.IntVar(&cfg.dropPackets, "drop-packets", 20000000, "drop scenario: packets of flood per path and case, at most")
	fs.IntVar(&cfg.dropDials, "drop-dials", 300, "drop scenario: client connects per path and case, at most")
	fs.IntVar(&cfg.dropRuns, "drop-runs", 2, "drop scenario: rounds over every path and case (the median is reported)")
	pass := fs.String("pass", "", "run only the one-pass scenario at these half-open counts, comma-separated (e.g. 10000,100000): ss | wc -l beside synban version, plan and run as whole processes in the victim namespace (with -out, its section of the file is replaced and the rest kept)")
	fs.IntVar(&cfg.passRuns, "pass-runs", 5, "pass scenario: rounds over every row (the median is reported)")
	fs.Float64Var(&cfg.passEst, "pass-established", 0, "pass scenario: established connections per half-open entry")
	fs.StringVar(&cfg.passProfile, "pass-profile", "", "pass scenario: at the largest size, also profile the engine's plan and run in-process (CPU, allocations, peak live heap) into this directory")
	senders := fs.String("drop-sender", senderXDP, "drop scenario: the flood's senders, comma-separated, measured side by side: xdp (live-frame XDP redirect into the veth: frames arrive as on a NIC) and/or trafgen (AF_PACKET: skbs built by the sender)")
	bouncer := fs.String("bouncer", "", "run only the side-by-side with crowdsec-firewall-bouncer for these LAPI decision counts, comma-separated (see bench/bouncer.go); -out splices its section into the file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if cfg.sizes, err = parseSizes(*sizes); err != nil {
		fmt.Fprintln(stderr, "bench: -sizes:", err)
		return 2
	}
	if cfg.bans, err = parseSizes(*bans); err != nil {
		fmt.Fprintln(stderr, "bench: -bans:", err)
		return 2
	}
	if cfg.pipeline, err = parseSizes(*pipeline); err != nil {
		fmt.Fprintln(stderr, "bench: -pipeline:", err)
		return 2
	}
	if cfg.pass, err = parseSizes(*pass); err != nil {
		fmt.Fprintln(stderr, "bench: -pass:", err)
		return 2
	}
	if cfg.passRuns < 1 || cfg.passEst < 0 {
		fmt.Fprintln(stderr, "bench: -pass-runs must be >= 1, -pass-established >= 0")
		return 2
	}
	if cfg.passProfile != "" {
		if cfg.passProfile, err = filepath.Abs(cfg.passProfile); err != nil {
			fmt.Fprintln(stderr, "bench: -pass-profile:", err)
			return 2
		}
	}
	if cfg.dropSeconds < 1 || cfg.dropPackets < 1000 || cfg.dropDials < 1 || cfg.dropRuns < 1 {
		fmt.Fprintln(stderr, "bench: -drop-seconds, -drop-dials and -drop-runs must be >= 1, -drop-packets >= 1000")
		return 2
	}
	if cfg.dropSenders, err = parseSenders(*senders); err != nil {
		fmt.Fprintln(stderr, "bench: -drop-sender:", err)
		return 2
	}
	if cfg.runs < 1 || cfg.loopRuns < 1 || cfg.estRatio < 0 {
		fmt.Fprintln(stderr, "bench: -runs and -loop-runs must be >= 1, -established >= 0")
		return 2
	}
	cfg.loopRuns = min(cfg.loopRuns, cfg.runs)
	cfg.commandLine = "go run ./bench " + strings.Join(args, " ")
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "bench: needs root (it builds network namespaces and applies firewall rules inside them)")
		return 2
	}
	if *bouncer != "" {
		return runBouncer(ctx, cfg, *bouncer, stdout, stderr)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	nss := &namespaces{}
	if len(cfg.pass) > 0 {
		// Its own names: the pass scenario may run beside another scenario.
		nss.prefix = "sbpass"
		nss.ownEhash = passEhash
	}
	b := &bench{cfg: cfg, log: log, nss: nss}
	err = b.run(ctx)
	for _, cerr := range b.nss.cleanup() {
		log.Error("cleanup", "err", cerr)
	}
	if b.tmp != "" {
		_ = os.RemoveAll(b.tmp)
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	report := b.markdown()
	switch {
	case cfg.drop:
		report = b.dropMarkdown()
	case len(cfg.pass) > 0:
		report = b.passMarkdown()
	}
	fmt.Fprint(stdout, report)
	if cfg.out != "" {
		// The drop section and the others are produced by separate runs:
		// each keeps the other's part of the file.
		old, err := os.ReadFile(cfg.out)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		switch {
		case cfg.drop:
			report = splice(string(old), "drop", report)
		case len(cfg.pass) > 0:
			report = splice(string(old), "pass", report)
		default:
			for _, name := range markedSections {
				if blk := markedSection(string(old), name); blk != "" {
					report = splice(report, name, blk)
				}
			}
		}
	}
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(report), 0o644); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		log.Info("wrote", "file", cfg.out)
	}
	return 0
}

// bench is one run of the harness and its results.
type bench struct {
	cfg    *config
	log    *slog.Logger
	nss    *namespaces
	tmp    string
	synban string
	began  time.Time
	took   time.Duration
	// env describes the machine and tools.
	env []string

	detect   []detectRow
	apply    []applyRow
	steady   []steadyRow
	pipeline []pipelineRow
	drop     *dropResult
	pass     []*passRow
}

func (b *bench) run(ctx context.Context) error {
	b.began = time.Now()
	var err error
	if b.tmp, err = os.MkdirTemp("", "synban-bench-"); err != nil {
		return err
	}
	if err := raiseNoFile(); err != nil {
		return err
	}
	b.synban = b.cfg.synban
	if b.synban == "" && !b.cfg.drop {
		b.synban = filepath.Join(b.tmp, "synban")
		b.log.Info("building synban", "out", b.synban)
		cmd := execCommand(ctx, "go", "build", "-o", b.synban, "./cmd/synban")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/synban: %w: %s", err, out)
		}
	}
	b.env = describeMachine(ctx)
	if len(b.cfg.pass) > 0 {
		if err := b.passScenario(ctx); err != nil {
			return fmt.Errorf("pass: %w", err)
		}
		b.took = time.Since(b.began)
		return nil
	}
	if b.cfg.drop {
		if err := b.dropScenario(ctx); err != nil {
			return fmt.Errorf("drop: %w", err)
		}
		b.took = time.Since(b.began)
		return nil
	}
	if !b.cfg.skipDetect {
		if err := b.detection(ctx); err != nil {
			return fmt.Errorf("detection: %w", err)
		}
	}
	if !b.cfg.skipApply {
		if err := b.applyBans(ctx); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
	}
	if !b.cfg.skipSteady {
		if err := b.steadyState(ctx); err != nil {
			return fmt.Errorf("steady state: %w", err)
		}
	}
	if !b.cfg.skipPipe {
		if err := b.spoofedPipeline(); err != nil {
			return fmt.Errorf("spoofed-flood pipeline: %w", err)
		}
	}
	b.took = time.Since(b.began)
	return nil
}

// gitRev describes the working directory's git revision, or "" outside a repository.
func gitRev() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return "commit " + strings.TrimSpace(string(out))
}

// raiseNoFile lifts the open-file limit: the lab holds one socket per
// established connection.
func raiseNoFile() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	want := uint64(1 << 20)
	if data, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err == nil {
			want = n
		}
	}
	if lim.Cur >= want {
		return nil
	}
	raised := lim
	raised.Cur, raised.Max = want, max(lim.Max, want)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
		return nil
	}
	// Without CAP_SYS_RESOURCE only the soft limit can rise, to the hard one.
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the open-file limit to %d: %w", lim.Max, err)
	}
	return nil
}

// describeMachine names the CPU, core count, memory, kernel and tool versions.
func describeMachine(ctx context.Context) []string {
	var out []string
	model := "unknown"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	out = append(out, fmt.Sprintf("CPU: %s, %d cores", model, runtime.NumCPU()))
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		out = append(out, "Memory: "+strings.Join(strings.Fields(line)[1:], " "))
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		out = append(out, "Kernel: Linux "+strings.TrimSpace(string(data)))
	}
	for _, argv := range [][]string{{"nft", "--version"}, {"ss", "--version"}, {"netstat", "--version"}, {"go", "version"}} {
		cmd := execCommand(ctx, argv[0], argv[1:]...)
		data, err := cmd.CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
		if err != nil && line == "" {
			line = "not installed"
		}
		out = append(out, argv[0]+": "+line)
	}
	return out
}
