package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
)

func flagsExplain(fs *flag.FlagSet, o *options) {
	flagsBackend(fs, o)
	flagsState(fs, o)
	flagsFrom(fs, o)
}

// cmdExplain tells the full story of one address or prefix (engine.Explain).
// It writes nothing.
func cmdExplain(ctx context.Context, a *app, o *options, args []string) error {
	if len(args) != 1 {
		return badInput("explain takes one address or prefix, got %d arguments", len(args))
	}
	subject, err := parseSubject(args[0])
	if err != nil {
		return err
	}
	p, err := loadPolicyFor(o)
	if err != nil {
		return err
	}
	now := time.Now()
	x, err := a.engine(o).Explain(ctx, p, subject, now)
	if err != nil {
		return err
	}
	if o.json {
		return jsondoc.Write(a.stdout, jsondoc.ExplainOf(x, now))
	}
	fmt.Fprintf(a.stdout, "%s: %s\n", x.Subject, x.Outcome)
	fmt.Fprintf(a.stdout, "# policy %s; sampler %s (%s); %d sample(s), min_hits %d\n", x.Policy, x.Sampler, x.SamplerWhy, x.Samples, x.MinHits)
	for _, l := range x.Summary {
		fmt.Fprintln(a.stdout, l)
	}
	if len(x.Rules) > 0 {
		fmt.Fprintln(a.stdout, "per sample:")
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  RULE\tSTATE\tTHRESHOLD\tCOUNTS\tHITS\n")
		for _, r := range x.Rules {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%d/%d\n", r.Rule, r.State, r.Threshold, ints(r.Counts), r.Hits, x.Samples)
		}
		if x.Prefix != nil && x.Prefix.Prefix != x.Subject {
			for _, r := range x.Prefix.Rules {
				fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%d/%d\n", r.Rule+" ("+x.Prefix.Prefix.String()+")", r.State, r.Threshold, ints(r.Counts), r.Hits, x.Samples)
			}
		}
		tw.Flush()
	}
	return nil
}

func ints(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, " ")
}
