package detect

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/synban/synban/policy"
)

// SensorReading is one reading of the firewall's sensor (see rules.Sensor):
// the sources the SYN meter found over its limit.
type SensorReading struct {
	// At is when the reading was taken.
	At time.Time
	// Counted says Counts hold packet counters (nftables); otherwise
	// (iptables' hashlimit) a source is only known to be over the limit
	// now, and its count is 0.
	Counted bool
	// Counts are the SYNs over the meter per source key (SensorKey), since
	// the source entered the sensor's table.
	Counts map[netip.Prefix]uint64
	// InPlace says the sensor's sets or tables were in the firewall (see
	// rules.SensorReading).
	InPlace bool
}

// SensorKey is the key a source has in the sensor: the address for IPv4 and
// for IPv6 with a per-address meter, else the IPv6 prefix of the meter's
// length. The backend reads a masked IPv6 key as an address; SensorKey
// turns it back into the prefix the meter meant.
func SensorKey(p *policy.Policy, pfx netip.Prefix) netip.Prefix {
	pfx = policy.Canonical(pfx)
	a := pfx.Addr()
	if a.Is4() || p == nil {
		return pfx
	}
	if bits := p.Meter.IPv6Length; bits > 0 && bits < 128 && pfx.Bits() > bits {
		if q, err := a.Prefix(bits); err == nil {
			return q
		}
	}
	return pfx
}

// SensorRow is one source's evidence from the sensor.
type SensorRow struct {
	// Subject is the source key (SensorKey).
	Subject netip.Prefix
	// Packets is its counter at the end of the window.
	Packets uint64
	// InWindow is the SYNs over the meter between the readings at the
	// window's start and end.
	InWindow uint64
	// SinceLast is the SYNs over the meter since the previous run's
	// reading (the whole counter when the source was not in it); 0
	// without a previous reading.
	SinceLast uint64
	// Rate is SYNs per second over the meter: the higher of the window's
	// rate (when the window spans at least MinSensorSpan) and the rate
	// since the previous run. -1 when the reading has no counts.
	Rate float64
}

// SensorEvidence is what the sensor says about one run: per source, the
// SYNs over the meter and their rate.
type SensorEvidence struct {
	// Available is set when a sensor was read (the backend has one and the
	// meter is on).
	Available bool
	// Table names what was read, for reports.
	Table string
	// Counted mirrors SensorReading.Counted.
	Counted bool
	// Window is the time between the window's two readings; Since the
	// time since the previous run's reading (0 without one).
	Window time.Duration
	Since  time.Duration
	// Rows are the sources, highest rate first.
	Rows []SensorRow
	// Err says why the sensor could not be read ("" when it could).
	Err string
	// Absent is set, with Available false, when the backend has a sensor
	// but its sets or tables were not in the firewall during the window
	// (before the first run installs the meter): an empty reading then
	// says nothing about the sources.
	Absent bool
}

// MinSensorSpan is the shortest span over which a count becomes a rate: a
// burst over a few milliseconds says little about SYNs per second.
const MinSensorSpan = time.Second

// NewSensorEvidence compares the readings at the window's start and end,
// and the previous run's end reading (prev, zero At when there is none),
// into per-source deltas and rates. A counter that went down counts
// nothing: the iptables counting bucket refills a token a minute, and an
// element that expired and came back cannot be told from that; the sensor
// never invents SYNs (a source that came back shows in the window, or in
// the next run). A source absent from a reading counts from zero.
func NewSensorEvidence(p *policy.Policy, start, end, prev SensorReading) SensorEvidence {
	ev := SensorEvidence{Available: true, Counted: end.Counted}
	if !start.At.IsZero() {
		ev.Window = end.At.Sub(start.At)
	}
	if !prev.At.IsZero() && prev.At.Before(end.At) {
		ev.Since = end.At.Sub(prev.At)
	}
	key := func(m map[netip.Prefix]uint64) map[netip.Prefix]uint64 {
		out := make(map[netip.Prefix]uint64, len(m))
		for k, v := range m {
			out[SensorKey(p, k)] += v
		}
		return out
	}
	s, e, pv := key(start.Counts), key(end.Counts), key(prev.Counts)
	delta := func(from map[netip.Prefix]uint64, k netip.Prefix, now uint64) uint64 {
		was, ok := from[k]
		switch {
		case !ok:
			return now
		case was <= now:
			return now - was
		}
		return 0
	}
	for k, n := range e {
		r := SensorRow{Subject: k, Packets: n, Rate: -1}
		if ev.Counted {
			r.Rate = 0
			if !start.At.IsZero() {
				r.InWindow = delta(s, k, n)
				if ev.Window >= MinSensorSpan {
					r.Rate = float64(r.InWindow) / ev.Window.Seconds()
				}
			}
			if ev.Since > 0 {
				r.SinceLast = delta(pv, k, n)
				if ev.Since >= MinSensorSpan {
					r.Rate = max(r.Rate, float64(r.SinceLast)/ev.Since.Seconds())
				}
			}
		}
		ev.Rows = append(ev.Rows, r)
	}
	slices.SortFunc(ev.Rows, func(x, y SensorRow) int {
		if c := cmp.Compare(y.Rate, x.Rate); c != 0 {
			return c
		}
		return policy.ComparePrefixes(x.Subject, y.Subject)
	})
	return ev
}

// SensorVerdicts judges the sensor's evidence against the policy's
// syn_rate rules: a source whose rate of SYNs over the meter reaches a
// rule's threshold offends. With prefix aggregation on, sources none of
// which offends alone but which share a prefix (of the policy's lengths;
// an IPv6 source already keyed on a prefix at least that broad stands
// alone) and together reach the threshold make the prefix offend, from at
// least two sources. Uncounted evidence (no rate) never offends. Verdicts
// the guard protects are returned as spared. Both lists are sorted worst
// first.
func SensorVerdicts(p *policy.Policy, ev SensorEvidence, g *policy.Guard) ([]Verdict, []Spared) {
	if p == nil || !ev.Available || !ev.Counted {
		return nil, nil
	}
	var verdicts []Verdict
	var spared []Spared
	judged := map[netip.Prefix]bool{}
	add := func(v Verdict) {
		if judged[v.Subject] {
			return
		}
		judged[v.Subject] = true
		if why, ok := g.Protects(v.Subject); ok {
			spared = append(spared, Spared{Verdict: v, Why: why})
			return
		}
		verdicts = append(verdicts, v)
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.State != policy.StateSynRate {
			continue
		}
		banFor := r.BanFor.Duration
		if banFor <= 0 {
			banFor = p.Ban.Duration.Duration
		}
		thr := float64(r.Threshold)
		type agg struct {
			rate    float64
			sources int
		}
		pfx := map[netip.Prefix]*agg{}
		for _, row := range ev.Rows {
			if row.Rate >= thr {
				add(Verdict{Subject: row.Subject, Rule: r.Name, State: r.State, Count: rateCount(row.Rate),
					Threshold: r.Threshold, Hits: 1, Samples: 1, Sources: 1, BanFor: banFor,
					Reason: fmt.Sprintf("%s: %s sent %.0f SYNs/s over the SYN meter (threshold %d/s; %s)",
						r.Name, row.Subject, row.Rate, r.Threshold, row.evidence(ev))})
				continue
			}
			if !p.Prefix.Enabled || row.Rate <= 0 {
				continue
			}
			bits := p.Prefix.IPv4Length
			if row.Subject.Addr().Is6() {
				bits = p.Prefix.IPv6Length
			}
			if row.Subject.Bits() <= bits {
				continue
			}
			q, err := row.Subject.Addr().Prefix(bits)
			if err != nil {
				continue
			}
			a := pfx[q]
			if a == nil {
				a = &agg{}
				pfx[q] = a
			}
			a.rate += row.Rate
			a.sources++
		}
		for _, q := range sortedPrefixes(pfx) {
			a := pfx[q]
			if a.sources < 2 || a.rate < thr {
				continue
			}
			add(Verdict{Subject: q, Rule: r.Name, State: r.State, Count: rateCount(a.rate), Threshold: r.Threshold,
				Hits: 1, Samples: 1, Sources: a.sources, BanFor: banFor,
				Reason: fmt.Sprintf("%s: %d sources in %s sent %.0f SYNs/s over the SYN meter together (threshold %d/s)",
					r.Name, a.sources, q, a.rate, r.Threshold)})
		}
	}
	slices.SortFunc(verdicts, compareVerdicts)
	slices.SortFunc(spared, func(x, y Spared) int { return compareVerdicts(x.Verdict, y.Verdict) })
	return verdicts, spared
}

// evidence says where a row's rate comes from, for a verdict's reason.
func (r SensorRow) evidence(ev SensorEvidence) string {
	switch {
	case ev.Since > 0 && ev.Window >= MinSensorSpan:
		return fmt.Sprintf("%d in the %s window, %d since the previous run %s ago", r.InWindow, ev.Window.Round(time.Millisecond), r.SinceLast, ev.Since.Round(time.Second))
	case ev.Since > 0:
		return fmt.Sprintf("%d since the previous run %s ago", r.SinceLast, ev.Since.Round(time.Second))
	}
	return fmt.Sprintf("%d in the %s window", r.InWindow, ev.Window.Round(time.Millisecond))
}

// rateCount is a rate as a verdict's Count (whole SYNs per second).
func rateCount(r float64) int {
	if r >= math.MaxInt32 {
		return math.MaxInt32
	}
	return int(math.Ceil(r))
}

func sortedPrefixes[V any](m map[netip.Prefix]V) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, policy.ComparePrefixes)
	return out
}

// SortVerdicts sorts vs worst first (highest Count/Threshold), as Analyze
// does, and returns it.
func SortVerdicts(vs []Verdict) []Verdict {
	slices.SortFunc(vs, compareVerdicts)
	return vs
}
