package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/engine"
	"github.com/synban/synban/policy"
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
		return writeJSON(a.stdout, explainJSON(x, now))
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

type ruleCheckJSON struct {
	Rule      string   `json:"rule"`
	State     string   `json:"state"`
	Ports     []uint16 `json:"ports"`
	Threshold int      `json:"threshold"`
	Counts    []int    `json:"counts"`
	Sources   []int    `json:"sources"`
	Peak      int      `json:"peak"`
	Hits      int      `json:"hits"`
	Crossed   bool     `json:"crossed"`
}

func ruleChecksJSON(rs []engine.RuleCheck) []ruleCheckJSON {
	out := make([]ruleCheckJSON, 0, len(rs))
	for _, r := range rs {
		out = append(out, ruleCheckJSON{Rule: r.Rule, State: string(r.State), Ports: append([]uint16{}, r.Ports...), Threshold: r.Threshold,
			Counts: append([]int{}, r.Counts...), Sources: append([]int{}, r.Sources...), Peak: r.Peak, Hits: r.Hits, Crossed: r.Crossed})
	}
	return out
}

func guardJSON(g *policy.Protected) any {
	if g == nil {
		return nil
	}
	return map[string]string{"prefix": g.Prefix.String(), "why": g.Why, "reason": g.Reason()}
}

func verdictOrNil(v *detect.Verdict) any {
	if v == nil {
		return nil
	}
	return map[string]any{"subject": v.Subject.String(), "rule": v.Rule, "state": string(v.State), "count": v.Count,
		"threshold": v.Threshold, "hits": v.Hits, "samples": v.Samples, "sources": v.Sources,
		"ban_for_seconds": v.BanFor.Seconds(), "reason": v.Reason}
}

// explainJSON is explain's --json document: snake_case keys, durations and
// times left in seconds, lists never null, absent parts null.
func explainJSON(x *engine.Explanation, now time.Time) map[string]any {
	seen := make([]map[string]int, 0, len(x.Seen))
	for _, s := range x.Seen {
		seen = append(seen, map[string]int{"syn_recv": s.SynRecv, "established": s.Established, "other": s.Other, "sources": s.Sources})
	}
	var prefix any
	if pc := x.Prefix; pc != nil {
		prefix = map[string]any{"prefix": pc.Prefix.String(), "threshold": pc.Threshold, "crossed": pc.Crossed,
			"rules": ruleChecksJSON(pc.Rules), "guard": guardJSON(pc.Guard)}
	}
	var spared any
	if x.Spared != nil {
		spared = map[string]any{"subject": x.Spared.Verdict.Subject.String(), "why": x.Spared.Why, "guard": guardJSON(guardOf(x.Spared))}
	}
	inside := make([]any, 0, len(x.Inside))
	for i := range x.Inside {
		inside = append(inside, verdictOrNil(&x.Inside[i]))
	}
	var planned, omitted, stored, history, kernel any
	if b := x.Planned; b != nil {
		planned = map[string]any{"prefix": b.Prefix.String(), "timeout_seconds": b.Timeout.Seconds(), "reason": b.Reason}
	}
	if om := x.Omitted; om != nil {
		omitted = map[string]any{"prefix": om.Prefix.String(), "why": om.Why}
	}
	if b := x.Stored; b != nil {
		left := 0.0
		if !b.Until.IsZero() {
			left = max(b.Until.Sub(now), 0).Seconds()
		}
		stored = map[string]any{"prefix": b.Prefix.String(), "since": b.Since.UTC().Format(time.RFC3339), "expires_seconds": left,
			"expires": !b.Until.IsZero(), "reason": b.Reason, "rule": b.Rule, "backend": b.Backend, "forced": b.Forced, "origin": b.Origin}
	}
	if r := x.History; r != nil {
		history = map[string]any{"bans": r.Bans, "last_ban": r.LastBan.UTC().Format(time.RFC3339), "last_for_seconds": r.LastFor.Seconds()}
	}
	if k := x.Kernel; k != nil {
		var drops any
		if x.HasDrops {
			drops = x.Drops
		}
		kernel = map[string]any{"prefix": k.Prefix.String(), "expires_seconds": k.Expires.Seconds(), "reason": k.Reason, "drops": drops}
	}
	var sensor any
	if r := x.Sensor; r != nil {
		sensor = map[string]any{"subject": r.Subject.String(), "packets": r.Packets, "in_window": r.InWindow, "since_last": r.SinceLast, "rate": r.Rate}
	}
	return map[string]any{
		"sensor": sensor, "sensor_read": x.SensorRead,
		"subject": x.Subject.String(), "outcome": x.Outcome, "policy": x.Policy, "sampler": x.Sampler, "sampler_why": x.SamplerWhy,
		"samples": x.Samples, "min_hits": x.MinHits, "seen": seen, "rules": ruleChecksJSON(x.Rules), "prefix": prefix,
		"guard": guardJSON(x.Guard), "classification": classJSON(x.Class), "offence": verdictOrNil(x.Offence), "spared": spared,
		"inside": inside, "escalation": x.Escalation, "decided": verdictOrNil(x.Decided), "planned": planned, "omitted": omitted,
		"state_loaded": x.StateLoaded, "stored": stored, "history": history, "backend": x.Backend.Name, "backend_error": x.BackendErr,
		"kernel": kernel, "summary": append([]string{}, x.Summary...),
	}
}

// guardOf is the guard entry behind a spared offender, nil when it was
// spared for another reason (a spoofed flood).
func guardOf(s *detect.Spared) *policy.Protected {
	if !s.By.Prefix.IsValid() {
		return nil
	}
	return &s.By
}
