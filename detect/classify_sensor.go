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
	// Window is the TcpExt counters' change over the window.
	Window TcpExt
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

// ClassifyEvidence is Classify with the evidence the samples lack. It
// classifies on the TcpExt change since the previous run when one was
// stored (a cookie storm between two cron runs counts), else on the
// window's; then:
//
//   - a spoofed flood told by its spread of half-open sources stays spoofed;
//   - a spoofed flood told only by SYN cookies that came back too rarely is
//     a real flood when the sensor attributes SYNs over the meter to some
//     source (a flood tool never completes the handshake either: cookies
//     alone cannot tell it from forged sources); it stays spoofed when the
//     sensor sees every source under the meter (the SYNs come from many
//     addresses); and it is a cookie storm, with advice, when there is no
//     sensor to ask;
//   - no flood, or a real one without a crossed rule, becomes real (or
//     prefix) when the run's verdicts say so: the sensor's, or a prefix
//     verdict the per-sample check missed.
//
// Every step it takes is listed in Evidence.
func ClassifyEvidence(p *policy.Policy, samples []Sample, ev Evidence) Classification {
	return RefineClassification(p, Classify(p, samples, ev.Delta()), ev)
}

// Delta is the TcpExt change a classification weighs: since the previous
// run when one was stored and is recent enough, else over the window.
func (ev Evidence) Delta() TcpExt {
	if ev.since() {
		return *ev.SinceLast
	}
	return ev.Window
}

func (ev Evidence) since() bool {
	return ev.SinceLast != nil && ev.SinceFor > 0 && ev.SinceFor <= MaxCountersAge
}

// RefineClassification is the evidence step of ClassifyEvidence, on a
// classification already made from the samples with ev.Delta() (Detect's
// or Classify's): the engine classifies in Detect's single counting pass
// and refines that, so the samples are counted once.
func RefineClassification(p *policy.Policy, c Classification, ev Evidence) Classification {
	delta := ev.Delta()
	since := ev.since()
	if since {
		c.CountersSince = ev.SinceFor
		c.Evidence = append(c.Evidence, fmt.Sprintf("TcpExt since the previous run %s ago: %d SYN cookies sent, %d returned, %d listen overflows (window alone: %d sent, %d returned)",
			ev.SinceFor.Round(time.Second), delta.SyncookiesSent, delta.SyncookiesRecv, delta.ListenOverflows, ev.Window.SyncookiesSent, ev.Window.SyncookiesRecv))
	}
	var attributed []Verdict
	prefixOnly := true
	for _, v := range ev.Verdicts {
		if v.State == policy.StateSynRate {
			attributed = append(attributed, v)
			prefixOnly = prefixOnly && v.Subject.Bits() < v.Subject.Addr().BitLen()
		}
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
		c.Why = fmt.Sprintf("%d SYN cookies sent, %d returned, and nothing attributes them: cookies keep no half-open entry, and no sensor reads the SYN meter", c.CookiesSent, c.CookiesRecv)
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
		c.Advice = append(c.Advice,
			"let conntrack see the flows (any rule using ct state loads it in this namespace): synban reads half-open flows from it while cookies keep them out of the socket table",
			"let the sensor attribute them: turn the per-source SYN meter on ([meter] enabled = true) with the nftables or iptables backend and add a [[rule]] with state = \"syn_rate\"")
	}
	return c
}
