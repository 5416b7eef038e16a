package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/trust"
	"github.com/synban/synban/policy"
)

// Window is one sampling window: the samples, which samplers took them and
// why, and the TcpExt counters' change over the window.
type Window struct {
	Samplers []string
	Why      string
	Result   detect.WindowResult
	// Uplink is the [upstream] interfaces' counters at the window's start
	// and end (live windows with [upstream] enabled only).
	Uplink uplinkWindow
}

// Sample takes the policy's window of samples. With source "auto" the socket
// table (sock_diag, else procfs) is merged with conntrack, which still sees
// half-open flows when SYN cookies keep them out of the socket table.
//
// With Options.From set it replays a captured table instead: FROM/net/tcp
// and FROM/net/tcp6 in /proc/net/tcp format (no conntrack, no counters).
func (e *Engine) Sample(ctx context.Context, p *policy.Policy) (*Window, error) {
	var w *Window
	var err error
	if e.opts.From != "" {
		w, err = e.replay(ctx, p, e.opts.From)
	} else {
		w, err = e.sampleLive(ctx, p)
	}
	if err != nil {
		return nil, err
	}
	for i, smp := range w.Result.Samples {
		if smp.Malformed > 0 {
			e.log.Warn("malformed connection-table entries skipped", "sample", i+1, "count", smp.Malformed, "first", first(smp.Errors))
		}
	}
	return w, nil
}

// sampleLive reads the live tables of this network namespace.
func (e *Engine) sampleLive(ctx context.Context, p *policy.Policy) (*Window, error) {
	s, why, err := detect.NewSampler(ctx, p.Sample.Source, "", detect.StatesFor(p))
	if err != nil {
		return nil, fmt.Errorf("choose a sampler: %w", err)
	}
	samplers := []detect.Sampler{s}
	if p.Sample.Source == "" || p.Sample.Source == "auto" {
		samplers = append(samplers, &optionalSampler{Sampler: detect.Conntrack{}, log: e.log})
		why += "; conntrack merged in when readable"
	}
	w := &Window{Why: why}
	for _, s := range samplers {
		w.Samplers = append(w.Samplers, s.Name())
	}
	e.log.Debug("samplers chosen", "samplers", w.Samplers, "why", why)
	uplinkStart := sampleUplink(p, time.Now())
	w.Result, err = detect.Window(ctx, samplers, p.Sample.Count, p.Sample.Interval.Duration, detect.NetstatCounters(""))
	if err != nil {
		return nil, fmt.Errorf("sampling window (%s): %w", strings.Join(w.Samplers, "+"), err)
	}
	w.Uplink = uplinkStart.end(p, time.Now())
	return w, nil
}

// replay samples a captured table: the same file read for every sample of
// the window, so K-of-N rules see it as a steady state.
//
// The capture is checked first. FROM/net/tcp is required and net/tcp6
// optional; each must be a regular file. A file holding only the header line
// is a quiet host's empty table and fine; an empty file (not even the
// header), or one where lines were malformed and none parsed, is bad input:
// replaying it would report "flood: none" about a table never read.
func (e *Engine) replay(ctx context.Context, p *policy.Policy, from string) (*Window, error) {
	if _, err := os.Stat(filepath.Join(from, "net", "tcp")); err != nil {
		return nil, BadInput("--from %s: want a directory holding net/tcp (and net/tcp6) in /proc format: %v", from, err)
	}
	for _, name := range []string{"net/tcp", "net/tcp6"} {
		if err := checkCapture(from, name); err != nil {
			return nil, err
		}
	}
	src := detect.ProcFS{Root: from}
	w := &Window{Samplers: []string{"procfs"}, Why: "replaying the captured table under " + from}
	res, err := detect.Window(ctx, []detect.Sampler{src}, p.Sample.Count, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", from, err)
	}
	w.Result = res
	return w, nil
}

// checkCapture checks the captured table FROM/name (see replay); a missing
// net/tcp6 is fine. The file is opened as the sampler opens it (a regular
// file only, refused at once otherwise), so a refusal names the same thing.
func checkCapture(from, name string) error {
	path := filepath.Join(from, name)
	f, err := trust.OpenRegular(path, true)
	switch {
	case err != nil && name == "net/tcp6" && errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return BadInput("--from %s: %w", from, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("--from %s: %s: %w", from, name, err)
	}
	if fi.Size() == 0 {
		return BadInput("--from %s: %s: empty file; a capture holds at least the header line (\"sl local_address ...\")", from, name)
	}
	_, st, err := detect.ParseProcNet(f, nil)
	if err != nil {
		return fmt.Errorf("--from %s: read %s: %w", from, name, err)
	}
	if st.Malformed > 0 && st.Conns+st.Listen == 0 {
		return BadInput("--from %s: %s: no line parsed (%d malformed)", from, name, st.Malformed)
	}
	return nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// optionalSampler is a sampler whose failure does not fail the window: the
// conntrack table is a bonus (it needs CAP_NET_ADMIN and the conntrack
// module), so a dry run as an ordinary user still works. The first failure
// is logged; after it the sampler is skipped.
type optionalSampler struct {
	detect.Sampler
	log    *slog.Logger
	failed bool
}

// Sample reads the wrapped sampler, or returns an empty sample once it failed.
func (o *optionalSampler) Sample(ctx context.Context) (detect.Sample, error) {
	if !o.failed {
		s, err := o.Sampler.Sample(ctx)
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return detect.Sample{}, err
		}
		o.failed = true
		o.log.Warn("optional sampler unavailable; going on without it", "sampler", o.Sampler.Name(), "err", err)
	}
	return detect.Sample{Source: o.Sampler.Name(), Time: time.Now()}, nil
}

// SourceRow is one remote address's peak count of each state over a window.
type SourceRow struct {
	Source      string
	SynRecv     int
	Established int
	Other       int
	Total       int
}

// Sources is what `synban sample` shows of one window: the window, its
// per-source rows (PerSource) and the flood's classification.
type Sources struct {
	*Window
	Rows  []SourceRow
	Class detect.Classification
	// Sensor is the firewall sensor's table beside the socket table.
	Sensor detect.SensorEvidence
}

// SampleSources takes a window (Sample) between two readings of the
// firewall's sensor, when the backend a run would use has one, and
// tabulates and classifies it with the previous run's stored counters. It
// writes nothing.
func (e *Engine) SampleSources(ctx context.Context, p *policy.Policy) (*Sources, error) {
	sr := e.newSensorRun(p, e.sensorFor(ctx, p), e.opts.StateDir)
	w, err := e.sampleSensed(ctx, p, sr)
	if err != nil {
		return nil, err
	}
	samples := w.Result.Samples
	sensor := sr.evidence(p)
	verdicts, _ := detect.SensorVerdicts(p, sensor, nil)
	class := detect.ClassifyEvidence(p, samples, sr.classifyEvidence(w, sensor, verdicts))
	return &Sources{Window: w, Rows: PerSource(samples), Class: class, Sensor: sensor}, nil
}

// PerSource counts, per remote address, the peak over the window of each
// state, sorted by total, most first.
func PerSource(samples []detect.Sample) []SourceRow {
	peak := map[netip.Addr]*SourceRow{}
	for _, s := range samples {
		cur := map[netip.Addr]*SourceRow{}
		for c := range s.All() {
			r := cur[c.Remote.Addr()]
			if r == nil {
				r = &SourceRow{}
				cur[c.Remote.Addr()] = r
			}
			switch c.State {
			case detect.SynRecv, detect.NewSynRecv:
				r.SynRecv++
			case detect.Established:
				r.Established++
			default:
				r.Other++
			}
			r.Total++
		}
		for addr, r := range cur {
			p := peak[addr]
			if p == nil {
				p = &SourceRow{Source: addr.String()}
				peak[addr] = p
			}
			p.SynRecv, p.Established = max(p.SynRecv, r.SynRecv), max(p.Established, r.Established)
			p.Other, p.Total = max(p.Other, r.Other), max(p.Total, r.Total)
		}
	}
	rows := make([]SourceRow, 0, len(peak))
	for _, r := range peak {
		rows = append(rows, *r)
	}
	slices.SortFunc(rows, func(x, y SourceRow) int {
		if x.Total != y.Total {
			return y.Total - x.Total
		}
		return strings.Compare(x.Source, y.Source)
	})
	return rows
}
