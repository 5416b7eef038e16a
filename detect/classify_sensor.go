package detect

import (
	"fmt"
	"time"

	"github.com/synban/synban/policy"
)

// MaxCountersAge is how old the previous run's stored counters may be for
// a run to classify on the change since then: a storm older than this is
// not this run's business, and over a long gap a host's ordinary cookie
// traffic would add up to a storm.
const MaxCountersAge = 15 * time.Minute

// Evidence is what a run's classification weighs beside the window's
// samples.
type Evidence struct {
	// Window is the TcpExt counters' change over the window, and WindowFor
	// the span it covers (from the first reading to the last).
	Window    TcpExt
	WindowFor time.Duration
	// SinceLast is their change from the end of the previous run to the end
	// of this window, and SinceFor that span; nil when the previous run
	// stored none (or they are older than MaxCountersAge).
	SinceLast *TcpExt
	SinceFor  time.Duration
	// Sensor is the firewall's sensor (see SensorEvidence).
	Sensor SensorEvidence
	// Verdicts are the run's verdicts (Analyze and SensorVerdicts), after
	// the guard.
	Verdicts []Verdict
}

// Counter sources a classification reports in CountersFrom.
const (
	// CountersWindow: the TcpExt change over the run's window.
	CountersWindow = "window"
	// CountersPreviousRun: the change since the previous run's stored
	// counters.
	CountersPreviousRun = "previous_run"
)

// ClassifyEvidence is Classify with the evidence the samples lack. It
// classifies on the TcpExt change that shows the storm (see
// Evidence.Delta): since the previous run when one was stored (a cookie
// storm between two cron runs counts), or the window's (a storm during a
// first run counts); then:
//
//   - a spoofed flood told by its spread of half-open sources stays spoofed;
//   - a spoofed flood told only by SYN cookies that came back too rarely is
//     a real flood when the sensor attributes SYNs over the meter to some
//     source (a flood tool never completes the handshake either: cookies
//     alone cannot tell it from forged sources); it stays spoofed when the
//     sensor sees every source under the meter (the SYNs come from many
//     addresses); and it is a cookie storm, with advice, when there is no
//     sensor to ask, or it was not in the firewall during the window (the
//     run that installs the meter);
//   - no flood, or a real one without a crossed rule, becomes real (or
//     prefix) when the run's verdicts say so: the sensor's, or a prefix
//     verdict the per-sample check missed.
//
// Every step it takes is listed in Evidence.
func ClassifyEvidence(p *policy.Policy, samples []Sample, ev Evidence) Classification {
	return RefineClassification(p, Classify(p, samples, ev.Delta(p)), ev)
}

// Delta is the TcpExt change a classification weighs: the one of the two
// (since the previous run, when stored and recent enough; the window) that
// shows the storm. The change since the previous run holds the window's
// (it ends with it), so it is chosen unless the window alone shows SYN
// cookies going out unanswered that the longer span dilutes (cookies
// answered by ordinary clients since the previous run); without stored
// counters it is the window's.
func (ev Evidence) Delta(p *policy.Policy) TcpExt {
	d, _, _ := ev.chosen(p)
	return d
}

// chosen is Delta with the span it covers and where it comes from
// (CountersWindow or CountersPreviousRun).
func (ev Evidence) chosen(p *policy.Policy) (TcpExt, time.Duration, string) {
	if !ev.since() {
		return ev.Window, ev.WindowFor, CountersWindow
	}
	if p != nil && unanswered(p.Spoof, ev.Window) && !unanswered(p.Spoof, *ev.SinceLast) {
		return ev.Window, ev.WindowFor, CountersWindow
	}
	return *ev.SinceLast, ev.SinceFor, CountersPreviousRun
}

// unanswered reports whether d shows at least sp.MinSources SYN cookies
// sent with fewer than sp.CookieRatio of them returned.
func unanswered(sp policy.Spoof, d TcpExt) bool {
	return sp.MinSources > 0 && d.SyncookiesSent >= int64(sp.MinSources) &&
		float64(d.SyncookiesRecv) < sp.CookieRatio*float64(d.SyncookiesSent)
}

func (ev Evidence) since() bool {
	return ev.SinceLast != nil && ev.SinceFor > 0 && ev.SinceFor <= MaxCountersAge
}

// RefineClassification is the evidence step of ClassifyEvidence, on a
// classification already made from the samples with ev.Delta(p) (Detect's
// or Classify's): the engine classifies in Detect's single counting pass
// and refines that, so the samples are counted once.
func RefineClassification(p *policy.Policy, c Classification, ev Evidence) Classification {
	delta, span, from := ev.chosen(p)
	c.CountersSince, c.CountersFrom = span, from
	switch {
	case from == CountersPreviousRun:
		c.Evidence = append(c.Evidence, fmt.Sprintf("TcpExt since the previous run %s ago: %d SYN cookies sent, %d returned, %d listen overflows (window alone: %d sent, %d returned)",
			ev.SinceFor.Round(time.Second), delta.SyncookiesSent, delta.SyncookiesRecv, delta.ListenOverflows, ev.Window.SyncookiesSent, ev.Window.SyncookiesRecv))
	case ev.since():
		c.Evidence = append(c.Evidence, fmt.Sprintf("TcpExt over the %s window: %d SYN cookies sent, %d returned, which the %d sent and %d returned since the previous run %s ago dilute",
			span.Round(time.Millisecond), delta.SyncookiesSent, delta.SyncookiesRecv, ev.SinceLast.SyncookiesSent, ev.SinceLast.SyncookiesRecv, ev.SinceFor.Round(time.Second)))
	case delta.SyncookiesSent > 0 || delta.TCPReqQFullDrop > 0 || delta.ListenOverflows > 0:
		c.Evidence = append(c.Evidence, fmt.Sprintf("TcpExt over the %s window (no counters stored by a previous run): %d SYN cookies sent, %d returned, %d listen overflows",
			span.Round(time.Millisecond), delta.SyncookiesSent, delta.SyncookiesRecv, delta.ListenOverflows))
	}
	var attributed []Verdict
	prefixOnly := true
	for _, v := range ev.Verdicts {
		if v.State == policy.StateSynRate {
			attributed = append(attributed, v)
			// A sensor row is one source's key (an IPv6 /64 with the
			// default meter); only a sum of several is a prefix flood.
			prefixOnly = prefixOnly && v.Sources > 1
		}
	}
	if ev.Sensor.Absent {
		c.Evidence = append(c.Evidence, "sensor: the SYN meter's sensor was not in the firewall during the window (the rules this run applies install it)")
	}
	if ev.Sensor.Available {
		c.SensorSources = len(ev.Sensor.Rows)
		switch {
		case ev.Sensor.Err != "":
			c.Evidence = append(c.Evidence, "sensor unreadable: "+ev.Sensor.Err)
		case len(ev.Sensor.Rows) == 0:
			c.Evidence = append(c.Evidence, fmt.Sprintf("sensor (%s): no source over the SYN meter", ev.Sensor.Table))
		default:
			w := ev.Sensor.Rows[0]
			c.Evidence = append(c.Evidence, fmt.Sprintf("sensor (%s): %d sources over the SYN meter, the worst %s at %.0f SYNs/s; %d crossing a syn_rate rule",
				ev.Sensor.Table, len(ev.Sensor.Rows), w.Subject, w.Rate, len(attributed)))
		}
	}
	sensed := ev.Sensor.Available && ev.Sensor.Counted && ev.Sensor.Err == ""
	attributedKind := KindReal
	if prefixOnly {
		attributedKind = KindPrefix
	}
	sp := p.Spoof
	switch {
	case c.Kind == KindSpoofed && c.spread(sp):
		if len(attributed) > 0 {
			c.Evidence = append(c.Evidence, fmt.Sprintf("the sensor also names %d real sources over the meter among the forged ones (worst %s): they are banned", len(attributed), attributed[0].Subject))
		}
		return c
	case c.Kind == KindSpoofed && len(attributed) > 0:
		c.Kind = attributedKind
		c.Why = fmt.Sprintf("%d SYN cookies sent, %d returned, and the firewall's sensor attributes the SYNs: %s", c.CookiesSent, c.CookiesRecv, attributed[0].Reason)
	case c.Kind == KindSpoofed && sensed:
		c.Why += fmt.Sprintf("; the sensor finds no source over the SYN meter (%d/s), so the SYNs come from many addresses", p.Meter.Rate)
		return c
	case c.Kind == KindSpoofed:
		c.Kind = KindCookieStorm
		nosensor := "no sensor reads the SYN meter"
		if ev.Sensor.Absent {
			nosensor = "the SYN meter's sensor was not in the firewall yet"
		}
		c.Why = fmt.Sprintf("%d SYN cookies sent%s, %d returned, and nothing attributes them: cookies keep no half-open entry, and %s",
			c.CookiesSent, c.rate(), c.CookiesRecv, nosensor)
	case (c.Kind == KindNone || c.byCookies) && len(attributed) > 0:
		c.Kind = attributedKind
		c.Why = "the firewall's sensor: " + attributed[0].Reason
	case c.Kind == KindNone && len(ev.Verdicts) > 0:
		v := ev.Verdicts[0]
		c.Kind = KindReal
		if v.Subject.Bits() < v.Subject.Addr().BitLen() {
			c.Kind = KindPrefix
		}
		c.Why = v.Reason
	default:
		return c
	}
	c.Advice, c.Sysctls = nil, nil
	c.advise(p)
	if c.Kind == KindCookieStorm {
		c.Advice = append(c.Advice, c.stormAdvice(p, ev.Sensor)...)
	}
	return c
}

// rate is " in SPAN (N/s)" for the cookies sent over CountersSince, or ""
// without a span.
func (c Classification) rate() string {
	if c.CountersSince <= 0 {
		return ""
	}
	return fmt.Sprintf(" in %s (%.0f/s)", c.CountersSince.Round(time.Millisecond), float64(c.CookiesSent)/c.CountersSince.Seconds())
}

// stormAdvice is what helps against a cookie storm nothing attributed,
// naming its numbers: the sensor that would (or will) attribute it, and
// conntrack.
func (c Classification) stormAdvice(p *policy.Policy, sensor SensorEvidence) []string {
	var rule *policy.Rule
	for i := range p.Rules {
		if p.Rules[i].State == policy.StateSynRate {
			rule = &p.Rules[i]
			break
		}
	}
	storm := fmt.Sprintf("%d SYN cookies sent%s, %d returned", c.CookiesSent, c.rate(), c.CookiesRecv)
	var out []string
	switch {
	case p.Meter.Enabled && rule != nil && sensor.Absent:
		out = append(out, fmt.Sprintf("%s: this run installs the per-source SYN meter (%d SYNs/s, burst %d) and its sensor; the next run names the sources over it, and rule %q bans any sending %d SYNs/s over the meter",
			storm, p.Meter.Rate, p.Meter.Burst, rule.Name, rule.Threshold))
	case p.Meter.Enabled && rule != nil:
		out = append(out, fmt.Sprintf("%s: use the nftables or iptables backend, whose firewall sensor attributes the SYNs over the per-source meter to their sources for rule %q (%d SYNs/s)",
			storm, rule.Name, rule.Threshold))
	case p.Meter.Enabled:
		out = append(out, fmt.Sprintf("%s: let the sensor attribute them: add a [[rule]] with state = \"syn_rate\" (the SYNs per second over the meter's %d/s that ban a source)",
			storm, p.Meter.Rate))
	default:
		out = append(out, fmt.Sprintf("%s: let the sensor attribute them: turn the per-source SYN meter on ([meter] enabled = true) with the nftables or iptables backend and add a [[rule]] with state = \"syn_rate\"",
			storm))
	}
	return append(out, "let conntrack see the flows (any rule using ct state loads it in this namespace): synban reads half-open flows from it while cookies keep them out of the socket table")
}
