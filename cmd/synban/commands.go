package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
	"github.com/synban/synban/engine"
	"github.com/synban/synban/internal/sysctl"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules/backends"
	"github.com/synban/synban/templates"
)

func noArgs(cmd string, args []string) error {
	if len(args) > 0 {
		return badInput("%s takes no arguments, got %q", cmd, strings.Join(args, " "))
	}
	return nil
}

func cmdCheck(ctx context.Context, a *app, o *options, args []string) error {
	if err := noArgs("check", args); err != nil {
		return err
	}
	p, err := loadPolicy(o)
	if err != nil {
		return err
	}
	drift := a.engine(o).SysctlDrift(p)
	// --online: a refused secret file exits 2, a LAPI that refuses the
	// credentials or does not answer exits 1 (the policy itself is valid).
	var online []string
	var onlineErr error
	if o.online {
		online, onlineErr = a.engine(o).CheckCrowdSec(ctx, p)
	}
	if o.json {
		if err := jsondoc.Write(a.stdout, jsondoc.CheckOf(p, drift, online, onlineErr)); err != nil {
			return err
		}
		if onlineErr != nil {
			return reportedError{onlineErr}
		}
		return nil
	}
	fmt.Fprintf(a.stdout, "%s: ok (%d rules, backend %s, table %s %s)\n", p.Source, len(p.Rules), p.Backend, p.NFTables.Family, p.NFTables.Table)
	writeDrift(a.stdout, p, drift)
	for _, l := range online {
		fmt.Fprintln(a.stdout, l)
	}
	return onlineErr
}

func cmdPlan(ctx context.Context, a *app, o *options, args []string) error {
	o.dryRun = true
	return cmdRun(ctx, a, o, args)
}

func cmdRun(ctx context.Context, a *app, o *options, args []string) error {
	if err := noArgs("run", args); err != nil {
		return err
	}
	if err := templates.CheckFormat(o.format); err != nil {
		return usageError{err}
	}
	p, err := loadPolicyFor(o)
	if err != nil {
		return err
	}
	if o.from != "" && !o.dryRun {
		return badInput("--from replays a captured table and goes with plan or run --dry-run only")
	}
	if o.dryRun {
		d, choice, err := a.engine(o).Plan(ctx, p, time.Now())
		if err != nil {
			return err
		}
		return a.printPlan(d, o, choice)
	}
	out, err := a.engine(o).Run(ctx, p, time.Now())
	if err != nil {
		return err
	}
	return a.printRun(o, out)
}

// printRun prints, with --json, what a run did.
func (a *app) printRun(o *options, out *engine.Outcome) error {
	if !o.json {
		return nil
	}
	return jsondoc.Write(a.stdout, jsondoc.RunOf(out))
}

// printPlan writes the dry run: the verdicts as comments, then the ruleset in
// the syntax of the backend run would choose (the whole output stays a valid
// script), or the script alone with --format, or JSON.
func (a *app) printPlan(d *engine.Decision, o *options, choice backends.Choice) error {
	format := o.format
	if format == "" {
		backend := choice.Name
		if backend == "" { // none works: the one asked for
			backend = a.engine(o).BackendName(d.Policy)
		}
		format = templates.FormatFor(backend)
	}
	var script strings.Builder
	if err := templates.Ruleset(&script, d.Ruleset, d.Policy, format); err != nil {
		return err
	}
	if o.json {
		return jsondoc.Write(a.stdout, jsondoc.PlanOf(d, choice, format, script.String()))
	}
	if o.format == "" {
		templates.WritePlanSummary(a.stdout, templates.PlanSummary{
			Source: d.Policy.Source, Backend: choice.Name, Why: choice.Why, Assumed: choice.Assumed,
			Sampler: d.Sampler, SamplerWhy: d.SamplerWhy, Samples: d.Samples, Counters: d.Counters,
			Class: d.Class, Report: d.Report, Omitted: d.Omitted, Restored: d.Restored, Listed: engine.MaxListed,
			Sensor: d.Sensor, Moves: d.Moves,
		})
	}
	if _, err := io.WriteString(a.stdout, script.String()); err != nil {
		return err
	}
	if o.format == "" {
		writeUpstreamPlan(a.stdout, d.Upstream)
	}
	return nil
}

// cmdSample prints the per-source table of one sampling window.
func cmdSample(ctx context.Context, a *app, o *options, args []string) error {
	if err := noArgs("sample", args); err != nil {
		return err
	}
	p, err := loadPolicyFor(o)
	if err != nil {
		return err
	}
	w, err := a.engine(o).SampleSources(ctx, p)
	if err != nil {
		return err
	}
	samples, rows, c, class := w.Result.Samples, w.Rows, w.Result.Delta, w.Class
	shown := rows // --top N: the first N, PerSource sorts them most first
	if o.view.top < 0 {
		return badInput("--top %d: want 0 or more sources", o.view.top)
	} else if o.view.top > 0 && len(rows) > o.view.top {
		shown = rows[:o.view.top]
	}
	if o.json {
		return jsondoc.Write(a.stdout, jsondoc.SampleOf(w, shown))
	}
	fmt.Fprintf(a.stdout, "# samplers %s (%s); %d sample(s) over %s; %d sources\n",
		strings.Join(w.Samplers, "+"), w.Why, len(samples), w.Result.Elapsed.Round(time.Millisecond), len(rows))
	fmt.Fprintf(a.stdout, "# TcpExt over the window: SyncookiesSent %d, SyncookiesRecv %d, SyncookiesFailed %d, ListenOverflows %d, ListenDrops %d, TCPReqQFullDrop %d\n",
		c.SyncookiesSent, c.SyncookiesRecv, c.SyncookiesFailed, c.ListenOverflows, c.ListenDrops, c.TCPReqQFullDrop)
	fmt.Fprintf(a.stdout, "# flood: %s — %s\n", class.Kind, class.Why)
	for _, ev := range class.Evidence {
		fmt.Fprintf(a.stdout, "#   evidence: %s\n", ev)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SOURCE\tSYN_RECV\tESTABLISHED\tOTHER\tTOTAL\t")
	for _, r := range shown {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", r.Source, r.SynRecv, r.Established, r.Other, r.Total)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// The sensor's table beside the socket table.
	templates.WriteSensorTable(a.stdout, "", w.Sensor, 0)
	return nil
}

// parseSubject parses a ban or unban argument: an address or a prefix.
// Host bits set, zones and junk are bad input; IPv4-mapped becomes IPv4.
func parseSubject(s string) (netip.Prefix, error) {
	p, err := policy.ParseAllow(s)
	if err != nil {
		return netip.Prefix{}, badInput("%q: %v", s, err)
	}
	return p, nil
}

func checkBackendFlag(b string) error {
	switch b {
	case "", "auto", "nftables", "iptables", "route":
		return nil
	}
	return badInput("--backend %q: want auto, nftables, iptables or route", b)
}

// loadPolicyFor checks the --backend flag, then loads the policy: the
// prologue of every command that may touch a backend.
func loadPolicyFor(o *options) (*policy.Policy, error) {
	if err := checkBackendFlag(o.backend); err != nil {
		return nil, err
	}
	return loadPolicy(o)
}

func loadPolicy(o *options) (*policy.Policy, error) {
	if o.config == "" {
		return policy.Default(), nil
	}
	return policy.Load(o.config)
}

// writeDrift prints one line per managed setting for `synban check`.
func writeDrift(w io.Writer, p *policy.Policy, states []sysctl.State) {
	how := "report only: sysctl.apply = false"
	if p.Sysctl.Apply {
		how = "synban run sets it: sysctl.apply = true"
	}
	for _, s := range states {
		switch {
		case s.Err != "":
			fmt.Fprintf(w, "sysctl %s: cannot read (%s); policy wants %d\n", s.Key, s.Err, s.Want)
		case s.Drift:
			fmt.Fprintf(w, "sysctl %s: drift: %s, policy wants %d (%s)\n", s.Key, s.Current, s.Want, how)
		default:
			fmt.Fprintf(w, "sysctl %s: %s as the policy wants\n", s.Key, s.Current)
		}
	}
}
