package engine

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/state"
)

// sensorRun is one cycle's view of what the window alone cannot show: the
// firewall's sensor (read at the window's start and end) and the counters
// the previous run stored (state.Counters). A run stores its own at the end
// (save); plan and sample only read.
type sensorRun struct {
	// sensor is the backend's sensor; nil when it has none or the meter is off.
	sensor rules.Sensor
	// prev are the previous run's counters; nil when none were stored.
	prev *state.Counters
	// start and end are the sensor's readings around the window; endAt is
	// when the window's end counters were read.
	start, end detect.SensorReading
	table      string
	err        error
	endAt      time.Time
	ifaces     map[string]detect.IfCounters
}

// newSensorRun prepares the sensor view of a cycle on backend b (nil: no
// sensor) with the counters stored in dir ("" or unreadable: none; an
// unreadable file is logged, never fatal: the run goes on without the
// history). A replayed capture has no live kernel to ask, so no sensor.
func (e *Engine) newSensorRun(p *policy.Policy, b rules.Backend, dir string) *sensorRun {
	sr := &sensorRun{}
	if e.opts.From != "" {
		return sr
	}
	if s, ok := b.(rules.Sensor); ok && p.Meter.Enabled {
		sr.sensor = s
	}
	if dir != "" {
		prev, err := state.LoadCounters(dir)
		if err != nil {
			e.log.Warn("stored counters unreadable; classifying on this run's window only", "err", err)
		}
		sr.prev = prev
	}
	return sr
}

// read takes one sensor reading; a sensor that cannot be read is recorded
// (sr.err) and the run goes on without it.
func (sr *sensorRun) read(ctx context.Context) detect.SensorReading {
	if sr.sensor == nil || sr.err != nil {
		return detect.SensorReading{}
	}
	r, err := sr.sensor.SensorRead(ctx)
	if err != nil {
		if errors.Is(err, rules.ErrNotSupported) {
			sr.sensor = nil
		} else {
			sr.err = err
		}
		return detect.SensorReading{}
	}
	sr.table = r.Table
	out := detect.SensorReading{At: time.Now(), Counted: r.Counted, InPlace: r.InPlace, Counts: make(map[netip.Prefix]uint64, len(r.Sources))}
	for _, s := range r.Sources {
		out.Counts[s.Prefix] += s.Packets
	}
	return out
}

// sampleSensed takes the window (Engine.Sample) between two sensor readings, and
// reads the interface counters after it.
func (e *Engine) sampleSensed(ctx context.Context, p *policy.Policy, sr *sensorRun) (*Window, error) {
	if sr == nil {
		return e.Sample(ctx, p)
	}
	sr.start = sr.read(ctx)
	w, err := e.Sample(ctx, p)
	if err != nil {
		return nil, err
	}
	if e.opts.From == "" && sr.storming(w) {
		// A flood is under way: count its cookies over a span that can
		// hold them (a one-sample window lasts milliseconds), which also
		// gives the sensor's readings a span to make a rate of.
		if err := detect.StretchCounters(ctx, &w.Result, detect.MinCounterSpan, detect.NetstatCounters("")); err != nil {
			return nil, err
		}
	}
	sr.endAt = time.Now()
	sr.end = sr.read(ctx)
	if sr.err != nil {
		e.log.Warn("firewall sensor unreadable; going on without it", "err", sr.err)
	}
	if e.opts.From == "" {
		if sr.ifaces, err = detect.ReadNetDev(""); err != nil {
			e.log.Warn("interface counters unreadable", "err", err)
		}
	}
	return w, nil
}

// storming reports whether the window's TcpExt counters, or their change
// since the previous run's stored ones (when recent; without them, the
// counters themselves), show SYN cookies or dropped SYNs (detect.Stormy),
// or the sensor counted SYNs over the meter since the previous run's
// reading.
func (sr *sensorRun) storming(w *Window) bool {
	r := w.Result
	if r.End == nil {
		return false
	}
	if detect.Stormy(r.Delta) {
		return true
	}
	fresh := sr.prev != nil && time.Since(sr.prev.At) <= detect.MaxCountersAge
	if !fresh && detect.Stormy(*r.End) {
		// No baseline but the namespace's counters: it has sent cookies or
		// dropped SYNs, maybe now, in bursts a short window falls between.
		return true
	}
	if sr.start.InPlace && len(sr.start.Counts) > 0 {
		// SYNs over the meter since the previous run's reading (cookies
		// may not show: the meter passes too few to fill the queue).
		if sr.prev == nil || sr.prev.Sensor == nil {
			return true
		}
		for k, n := range sr.start.Counts {
			if sr.prev.Sensor.Sources[k] != n {
				return true
			}
		}
	}
	return fresh && detect.Stormy(detect.Delta(detect.TcpExt{All: sr.prev.TcpExt}, *r.End))
}

// evidence is the sensor's evidence for the run (see detect.SensorEvidence).
func (sr *sensorRun) evidence(p *policy.Policy) detect.SensorEvidence {
	if sr == nil || (sr.sensor == nil && sr.err == nil) {
		return detect.SensorEvidence{}
	}
	if sr.err != nil {
		return detect.SensorEvidence{Available: true, Err: sr.err.Error()}
	}
	if !sr.start.InPlace || !sr.end.InPlace {
		// No meter counted during the window: the first run installs it.
		return detect.SensorEvidence{Absent: true}
	}
	var prev detect.SensorReading
	if sr.prev != nil && sr.prev.Sensor != nil {
		prev = detect.SensorReading{At: sr.prev.Sensor.At, Counted: sr.prev.Sensor.Counted, Counts: sr.prev.Sensor.Sources}
	}
	ev := detect.NewSensorEvidence(p, sr.start, sr.end, prev)
	ev.Table = sr.table
	return ev
}

// classifyEvidence is what the run's classification weighs beside the
// samples: the window's TcpExt change, the change since the previous run's
// stored counters, the sensor and the verdicts.
func (sr *sensorRun) classifyEvidence(w *Window, sensor detect.SensorEvidence, verdicts []detect.Verdict) detect.Evidence {
	ev := detect.Evidence{Window: w.Result.Delta, WindowFor: w.Result.Elapsed, Sensor: sensor, Verdicts: verdicts}
	if sr != nil && sr.prev != nil && w.Result.End != nil && !sr.endAt.IsZero() && sr.prev.At.Before(sr.endAt) {
		d := detect.Delta(detect.TcpExt{All: sr.prev.TcpExt}, *w.Result.End)
		ev.SinceLast, ev.SinceFor = &d, sr.endAt.Sub(sr.prev.At)
	}
	return ev
}

// counters are what this run stores for the next one; nil when the window
// read no counters (a replayed capture).
func (sr *sensorRun) counters(w *Window) *state.Counters {
	if sr == nil || w.Result.End == nil || sr.endAt.IsZero() {
		return nil
	}
	c := &state.Counters{At: sr.endAt, TcpExt: maps.Clone(w.Result.End.All)}
	if len(sr.ifaces) > 0 {
		c.Interfaces = make(map[string]state.IfCounters, len(sr.ifaces))
		for name, ic := range sr.ifaces {
			c.Interfaces[name] = state.IfCounters{RxPackets: ic.RxPackets, RxDropped: ic.RxDropped}
		}
	}
	if sr.sensor != nil && sr.err == nil && !sr.end.At.IsZero() {
		c.Sensor = &state.SensorCounts{At: sr.end.At, Counted: sr.end.Counted, Sources: sr.end.Counts}
	}
	return c
}

// saveCounters stores the run's counters in the state directory for the
// next run. A failure is logged: the next run then classifies on its own
// window, as before counters were stored.
func (e *Engine) saveCounters(dir string, d *Decision) {
	if d == nil || d.stored == nil {
		return
	}
	if err := state.SaveCounters(dir, d.stored); err != nil {
		e.log.Warn("could not store the counters for the next run", "err", err)
	}
}

// sensorFor opens the backend a run would use, read-only, for plan and
// sample to read its sensor; nil when it cannot be opened (not privileged,
// or no backend fits): they then show no sensor table.
func (e *Engine) sensorFor(ctx context.Context, p *policy.Policy) rules.Backend {
	if e.opts.From != "" || !p.Meter.Enabled {
		return nil
	}
	o := e.backendOptions(p, nil)
	o.ReadOnly = true
	b, _, err := e.open(ctx, e.BackendName(p), o)
	if err != nil {
		e.log.Debug("no backend to read the sensor from", "err", err)
		return nil
	}
	return b
}

// addSensorVerdicts adds the sensor's verdicts (syn_rate rules) to rep, and
// those the guard protects to its spared list, worst first as Analyze
// sorts them.
func addSensorVerdicts(p *policy.Policy, rep detect.Report, ev detect.SensorEvidence, g *policy.Guard) detect.Report {
	vs, spared := detect.SensorVerdicts(p, ev, g)
	if len(vs)+len(spared) == 0 {
		return rep
	}
	rep.Verdicts = detect.SortVerdicts(append(slices.Clone(rep.Verdicts), vs...))
	rep.Spared = append(slices.Clone(rep.Spared), spared...)
	return rep
}
