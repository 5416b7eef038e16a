package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/policy"
)

var execCommand = exec.CommandContext

// Pipelines operators run today, as found in countless anti-DDoS scripts.
const (
	netstatPipeline = `netstat -ant | grep SYN_RECV | awk '{print $5}' | cut -d: -f1 | sort | uniq -c | sort -nr`
	ssPipeline      = `ss -tan state syn-recv | awk 'NR>1 {print $4}' | cut -d: -f1 | sort | uniq -c | sort -nr`
)

// Columns of the detection table, in order.
const (
	colFloor = iota
	colFloorBoth
	colSS
	colNetstat
	colLibSockDiag
	colLibAnalyze
	colLibSynRecv
	colLibProcFS
	colEngSample
	colEngPlan
	numDetectCols
)

var detectColNames = [numDetectCols]string{
	"`ss -tan state syn-recv > /dev/null` (kernel dump, floor)",
	"`ss -tan state syn-recv state established > /dev/null` (kernel dump of the default policy's two states: the fair floor)",
	"`ss -tan state syn-recv | awk | sort | uniq -c`",
	"`netstat -ant | grep | awk | sort | uniq -c`",
	"synban library: sock_diag sample + Analyze (default policy: SYN_RECV and ESTABLISHED)",
	"… of which Analyze alone",
	"synban library: sock_diag sample + Analyze, SYN_RECV only",
	"synban library: procfs sample + Analyze (default policy)",
	"synban engine: `synban sample`'s window, per-source table and classification, in-process",
	"synban engine: `synban plan`'s decision and rendered ruleset, in-process",
}

// detectRow is the detection results for one table size.
type detectRow struct {
	halfOpen, established int // entries in the table before measuring
	after                 int // half-open entries after measuring
	cols                  [numDetectCols]*series
	sources               [numDetectCols]int // sources each counted, as a check
	verdicts              int
}

// detection fills the victim to each size in turn (ascending) and times
// every way of counting half-open entries per source on it.
func (b *bench) detection(ctx context.Context) error {
	l, err := newLab(ctx, b.nss)
	if err != nil {
		return err
	}
	defer l.close()
	_, haveNetstat := exec.LookPath("netstat")
	p := policy.Default()
	g := p.Guard(nil)
	// synOnly keeps the default's SYN flood rule alone, so synban reads
	// what the ss pipeline reads.
	synOnly := policy.Default()
	synOnly.Rules = synOnly.Rules[:1]
	if synOnly.Rules[0].State != policy.StateSynRecv {
		return fmt.Errorf("the default policy's first rule counts %s, not syn_recv", synOnly.Rules[0].State)
	}
	for _, size := range b.cfg.sizes {
		est := int(float64(size) * b.cfg.estRatio)
		b.log.Info("filling the victim's table", "half_open", size, "established", est)
		began := time.Now()
		half, gotEst, err := l.fill(ctx, size, est)
		if err != nil {
			return err
		}
		b.log.Info("table filled", "half_open", half, "established", gotEst, "took", time.Since(began).Round(time.Millisecond))
		row := detectRow{halfOpen: half, established: gotEst}
		for i := range row.cols {
			row.cols[i] = &series{}
		}
		if haveNetstat != nil {
			row.cols[colNetstat].note = "netstat not installed: apt-get install net-tools"
		}
		sd, _, err := detect.NewSampler(ctx, "sockdiag", l.victim.path(), detect.StatesFor(p))
		if err != nil {
			return err
		}
		sdSyn, _, err := detect.NewSampler(ctx, "sockdiag", l.victim.path(), detect.StatesFor(synOnly))
		if err != nil {
			return err
		}
		pf, _, err := detect.NewSampler(ctx, "procfs", l.victim.path(), detect.StatesFor(p))
		if err != nil {
			return err
		}
		nostate := b.tmp + "/no-state"
		for r := 0; r < b.cfg.runs; r++ {
			// Interleave the tools within each repetition, so that a change
			// in the table or the machine's load over time hits all alike.
			for c := range numDetectCols {
				var d time.Duration
				var n int
				var err error
				switch c {
				case colFloor:
					d, err = timeCmd(ctx, l.victim, "ss", "-tan", "state", "syn-recv")
				case colFloorBoth:
					d, err = timeCmd(ctx, l.victim, "ss", "-tan", "state", "syn-recv", "state", "established")
				case colSS:
					d, n, err = timePipeline(ctx, l.victim, ssPipeline)
				case colNetstat:
					if haveNetstat != nil {
						continue
					}
					d, n, err = timePipeline(ctx, l.victim, netstatPipeline)
				case colLibAnalyze:
					continue // timed with colLibSockDiag
				case colLibSockDiag, colLibSynRecv, colLibProcFS:
					s, pol := sd, p
					switch c {
					case colLibSynRecv:
						s, pol = sdSyn, synOnly
					case colLibProcFS:
						s = pf
					}
					start := time.Now()
					smp, serr := s.Sample(ctx)
					if serr != nil {
						return serr
					}
					mid := time.Now()
					rep := detect.Analyze(pol, []detect.Sample{smp}, g)
					end := time.Now()
					d, n = end.Sub(start), rep.Sources
					if c == colLibSockDiag {
						row.verdicts = len(rep.Verdicts)
						row.cols[colLibAnalyze].walls = append(row.cols[colLibAnalyze].walls, end.Sub(mid))
					}
				case colEngSample, colEngPlan:
					var ec cost
					if c == colEngSample {
						ec, n, err = engineSample(ctx, l.victim, p)
					} else {
						ec, n, err = enginePlan(ctx, l.victim, p, nostate)
					}
					if err != nil {
						return fmt.Errorf("%s: %w", detectColNames[c], err)
					}
					row.cols[c].add(ec)
					row.sources[c] = n
					continue
				}
				if err != nil {
					return fmt.Errorf("%s: %w", detectColNames[c], err)
				}
				row.cols[c].walls = append(row.cols[c].walls, d)
				row.sources[c] = n
			}
		}
		row.after, _, err = l.count(ctx)
		if err != nil {
			return err
		}
		b.log.Info("detection measured", "half_open", half, "floor", row.cols[colFloor].cell(),
			"library", row.cols[colLibSockDiag].cell(), "ss_pipeline", row.cols[colSS].cell(), "netstat_pipeline", row.cols[colNetstat].cell())
		b.detect = append(b.detect, row)
	}
	return nil
}

// timeCmd runs argv in ns with its output discarded and returns the wall time.
func timeCmd(ctx context.Context, ns *netns, argv ...string) (time.Duration, error) {
	cmd := execCommand(ctx, argv[0], argv[1:]...)
	start := time.Now()
	err := ns.exec(cmd)
	return time.Since(start), err
}

// timeCmdOut runs argv in ns and returns the wall time and its output.
func timeCmdOut(ctx context.Context, ns *netns, argv ...string) (time.Duration, string, error) {
	var out, errb strings.Builder
	cmd := execCommand(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := ns.exec(cmd)
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
	}
	return time.Since(start), out.String(), err
}

// timePipeline runs a shell pipeline in ns and returns the wall time and the
// number of distinct sources it printed.
func timePipeline(ctx context.Context, ns *netns, pipeline string) (time.Duration, int, error) {
	d, out, err := timeCmdOut(ctx, ns, "sh", "-c", pipeline)
	if err != nil {
		return d, 0, err
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 {
			if _, err := strconv.Atoi(f[0]); err == nil {
				n++
			}
		}
	}
	return d, n, nil
}
