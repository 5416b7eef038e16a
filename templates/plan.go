package templates

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
)

// Formats of the dry run's script, one per backend.
const (
	FormatNFT      = "nft"
	FormatIPTables = "iptables"
	FormatRoute    = "route"
)

// CheckFormat accepts "" (the chosen backend's format) and the formats
// Ruleset renders.
func CheckFormat(f string) error {
	switch f {
	case "", FormatNFT, FormatIPTables, FormatRoute:
		return nil
	}
	return fmt.Errorf("--format %q: want nft, iptables or route", f)
}

// FormatFor is the dry run's format for a backend name: the iptables and
// route backends have their own, everything else (nftables, none) is nft.
func FormatFor(backend string) string {
	switch backend {
	case FormatIPTables, FormatRoute:
		return backend
	}
	return FormatNFT
}

// Ruleset renders rs as the script of format, with the policy's settings
// that only that backend uses (its iptables chain, its route type and
// protocol).
func Ruleset(w io.Writer, rs *rules.Ruleset, p *policy.Policy, format string) error {
	switch format {
	case FormatNFT:
		return NFT(w, rs, p.Source)
	case FormatIPTables:
		return IPTables(w, rs, p.IPTables.Chain)
	case FormatRoute:
		return Route(w, rs, p.Route.Type, p.Route.Protocol)
	}
	return fmt.Errorf("unknown format %q", format)
}

// NFTIncludeFor renders the include file of the policy's nftables
// structure (NFTInclude of the ruleset the policy compiles to with no
// verdicts): the next run fills the sets.
func NFTIncludeFor(w io.Writer, p *policy.Policy) error {
	rs, _, err := rules.Compile(p, nil, nil)
	if err != nil {
		return fmt.Errorf("compile ruleset: %w", err)
	}
	return NFTInclude(w, rs, p.Source)
}

// PlanSummary is what the dry run says before its script, as '#' comments.
type PlanSummary struct {
	// Source names the policy.
	Source string
	// Backend is the backend a run would use ("" = none works), Why the
	// reason, Assumed set when it was taken on trust (no root to probe).
	Backend, Why string
	Assumed      bool
	// Sampler and SamplerWhy say what sampled and why.
	Sampler, SamplerWhy string
	Samples             []detect.Sample
	Counters            detect.TcpExt
	Class               detect.Classification
	Report              detect.Report
	Omitted             rules.Omitted
	// Restored counts the active bans carried over from the state store.
	Restored int
	// Listed is how many spared and left-out entries are printed one by
	// one before only their number is.
	Listed int
	// Sensor is the firewall sensor's table (see detect.SensorEvidence).
	Sensor detect.SensorEvidence
	// Moves are the base chains a run would move, add or remove in the
	// kernel (rules.ChainMoves), one line each.
	Moves []string
}

// WritePlanSummary writes s as '#' comment lines, so that the dry run stays
// a valid script.
func WritePlanSummary(w io.Writer, s PlanSummary) {
	r := s.Report
	conns := 0
	for _, smp := range s.Samples {
		conns += smp.Len()
	}
	fmt.Fprintf(w, "# synban plan — policy %s\n", s.Source)
	switch {
	case s.Backend == "":
		fmt.Fprintf(w, "# backend run would use: none (%s)\n", s.Why)
	case s.Assumed:
		fmt.Fprintf(w, "# backend run would use: %s (assumed: probing needs root)\n", s.Backend)
	default:
		fmt.Fprintf(w, "# backend run would use: %s (%s)\n", s.Backend, s.Why)
	}
	for _, m := range s.Moves {
		fmt.Fprintf(w, "# run would move: %s\n", m)
	}
	fmt.Fprintf(w, "# sampler: %s (%s)\n", s.Sampler, s.SamplerWhy)
	fmt.Fprintf(w, "# window: %d sample(s), %d entries, %d distinct sources, %d malformed\n", r.Samples, conns, r.Sources, r.Malformed)
	c := s.Class
	fmt.Fprintf(w, "# TcpExt over the window: SyncookiesSent %d, SyncookiesRecv %d, ListenOverflows %d, TCPReqQFullDrop %d\n",
		s.Counters.SyncookiesSent, s.Counters.SyncookiesRecv, s.Counters.ListenOverflows, s.Counters.TCPReqQFullDrop)
	fmt.Fprintf(w, "# flood: %s — %s\n", c.Kind, c.Why)
	for _, ev := range c.Evidence {
		fmt.Fprintf(w, "#   evidence: %s\n", ev)
	}
	for _, adv := range c.Advice {
		fmt.Fprintf(w, "#   advice: %s\n", adv)
	}
	WriteSensorTable(w, "# ", s.Sensor, s.Listed)
	fmt.Fprintf(w, "# verdicts: %d to ban, %d spared, %d left out\n", len(r.Verdicts), r.SparedCount(), len(s.Omitted))
	for _, v := range r.Verdicts {
		fmt.Fprintf(w, "#   ban %-20s for %-8s %s\n", v.Subject, v.BanFor, v.Reason)
	}
	for i, sp := range r.Spared {
		if i == s.Listed {
			fmt.Fprintf(w, "#   ... and %d more spared\n", r.SparedCount()-s.Listed)
			break
		}
		fmt.Fprintf(w, "#   spare %-18s %s: %s\n", sp.Verdict.Subject, sp.Why, sp.Verdict.Reason)
	}
	for i, om := range s.Omitted {
		if i == s.Listed {
			fmt.Fprintf(w, "#   ... and %d more left out\n", len(s.Omitted)-s.Listed)
			break
		}
		fmt.Fprintf(w, "#   leave out %-14s %s\n", om.Prefix, om.Why)
	}
	if s.Restored > 0 {
		fmt.Fprintf(w, "# %d active ban(s) carried over from the state store\n", s.Restored)
	}
	fmt.Fprintln(w, "#")
}

// WriteSensorTable writes the firewall sensor's table, each line starting
// with prefix ("# " in a dry run): where it was read, then per source (at
// most listed rows, highest rate first) the SYNs over the meter counted,
// in the window, since the previous run, and the rate. Nothing when no
// sensor was read.
func WriteSensorTable(w io.Writer, prefix string, ev detect.SensorEvidence, listed int) {
	if !ev.Available {
		return
	}
	if ev.Err != "" {
		fmt.Fprintf(w, "%ssensor: unreadable (%s)\n", prefix, ev.Err)
		return
	}
	since := "no previous run"
	if ev.Since > 0 {
		since = "previous run " + ev.Since.Round(time.Second).String() + " ago"
	}
	fmt.Fprintf(w, "%ssensor %s: %d source(s) over the SYN meter; window %s, %s\n",
		prefix, ev.Table, len(ev.Rows), ev.Window.Round(time.Millisecond), since)
	if len(ev.Rows) == 0 {
		return
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SENSOR SOURCE\tOVER_METER\tIN_WINDOW\tSINCE_LAST\tSYN/S\t")
	for i, r := range ev.Rows {
		if i == listed && listed > 0 {
			fmt.Fprintf(tw, "... and %d more\t\t\t\t\t\n", len(ev.Rows)-listed)
			break
		}
		rate := "-"
		if r.Rate >= 0 {
			rate = fmt.Sprintf("%.0f", r.Rate)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t\n", r.Subject, r.Packets, r.InWindow, r.SinceLast, rate)
	}
	_ = tw.Flush()
	for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		fmt.Fprintf(w, "%s%s\n", prefix, strings.TrimRight(line, " "))
	}
}
