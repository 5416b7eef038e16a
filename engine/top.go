package engine

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/prefixes"
	"github.com/synban/synban/policy"
)

// SpoofedWhy is a TopRow's Why for an offender the spoof filter spares
// (its source is likely forged).
const SpoofedWhy = "spoofed"

// TopRow is one source, or aggregation prefix of several, as `synban top`
// shows it.
type TopRow struct {
	Subject     string
	Prefix      bool
	SynRecv     int
	Established int
	Total       int
	Sources     int
	// Verdict is "ban", "spared" or "" (none); Why the rule, the guard's
	// kind of protection or the prefix that folds it.
	Verdict string
	Why     string
	// Banned is set while a ban in the kernel holds the subject: BanLeft
	// seconds left (0: no expiry), Drops its element's drop counter (nil:
	// the element keeps none).
	Banned  bool
	BanLeft float64
	Drops   *uint64
}

// TopSnapshot is one refresh of `synban top`: the window's rows with the
// analysis's verdicts and the kernel's bans.
type TopSnapshot struct {
	At         time.Time
	Sampler    string
	Samples    int
	Sources    int
	Class      detect.Classification
	Counters   detect.TcpExt
	Backend    string
	BackendErr string
	// RuleDrops are the backend's rule counters: "input/ban_v4" -> packets.
	RuleDrops []string
	Rows      []TopRow
}

// Top samples one window (or replays Options.From) and reads the kernel's
// bans: what `synban top` shows. The verdicts are the analysis's with the
// spoof filter, as a run makes them; a banned prefix, or one the spoof
// filter spares, folds the addresses inside it. It writes nothing (the
// backend is opened read-only; with From it is not read).
func (e *Engine) Top(ctx context.Context, p *policy.Policy) (*TopSnapshot, error) {
	replay := e.opts.From != ""
	g, err := e.Guard(p)
	if err != nil {
		return nil, err
	}
	w, err := e.SampleSources(ctx, p)
	if err != nil {
		return nil, err
	}
	samples := w.Result.Samples
	s := &TopSnapshot{At: e.now(), Sampler: strings.Join(w.Samplers, "+"), Samples: len(samples), Sources: len(w.Rows),
		Class: w.Class, Counters: w.Result.Delta}
	rep := detect.FilterSpoofed(detect.Analyze(p, samples, g), w.Class)
	verdict := map[netip.Prefix]TopRow{}
	for _, v := range rep.Verdicts {
		verdict[v.Subject] = TopRow{Verdict: "ban", Why: v.Rule}
	}
	for _, sp := range rep.Spared {
		why := SpoofedWhy
		if sp.By.Prefix.IsValid() {
			why = sp.By.Why
		}
		verdict[sp.Verdict.Subject] = TopRow{Verdict: "spared", Why: why}
	}

	// Sources, and the aggregation prefixes holding more than one.
	type agg struct {
		row  TopRow
		srcs int
	}
	aggs := map[netip.Prefix]*agg{}
	for _, r := range w.Rows {
		addr, err := netip.ParseAddr(r.Source)
		if err != nil {
			continue
		}
		subject := netip.PrefixFrom(addr, addr.BitLen())
		row := TopRow{Subject: subject.Addr().String(), SynRecv: r.SynRecv, Established: r.Established, Total: r.Total, Sources: 1}
		if v, ok := verdict[subject]; ok {
			row.Verdict, row.Why = v.Verdict, v.Why
		}
		if pfx, _, ok := Aggregation(p, addr); ok {
			a := aggs[pfx]
			if a == nil {
				a = &agg{row: TopRow{Subject: pfx.String(), Prefix: true}}
				aggs[pfx] = a
			}
			a.row.SynRecv += r.SynRecv
			a.row.Established += r.Established
			a.row.Total += r.Total
			a.srcs++
			// A banned prefix, or one the spoof filter spares, folds the
			// addresses inside it; one the guard spares does not.
			if v, ok := verdict[pfx]; ok && (v.Verdict == "ban" || v.Why == SpoofedWhy) && row.Verdict == "" {
				row.Verdict, row.Why = v.Verdict, "in "+pfx.String()
			}
		}
		s.Rows = append(s.Rows, row)
	}
	for pfx, a := range aggs {
		if a.srcs < 2 {
			continue
		}
		a.row.Sources = a.srcs
		if v, ok := verdict[pfx]; ok {
			a.row.Verdict, a.row.Why = v.Verdict, v.Why
		}
		s.Rows = append(s.Rows, a.row)
	}

	if replay {
		s.BackendErr = "not read: --from replays a captured table"
		return s, nil
	}
	kb, err := e.KernelBans(ctx, p)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		s.BackendErr = err.Error()
		return s, nil
	}
	s.Backend = kb.Choice.Name
	for _, c := range kb.Counters {
		s.RuleDrops = append(s.RuleDrops, fmt.Sprintf("%s %d", c.Rule, c.Packets))
	}
	for i := range s.Rows {
		r := &s.Rows[i]
		subject, err := netip.ParsePrefix(r.Subject)
		if err != nil {
			addr := netip.MustParseAddr(r.Subject)
			subject = netip.PrefixFrom(addr, addr.BitLen())
		}
		for _, b := range kb.Bans {
			if prefixes.Holds(b.Prefix, subject) {
				r.Banned, r.BanLeft = true, b.Expires.Seconds()
				if n, ok := kb.Drops[b.Prefix]; ok {
					r.Drops = &n
				}
				break
			}
		}
	}
	return s, nil
}
