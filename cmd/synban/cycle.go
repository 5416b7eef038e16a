package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/state"
)

// decision is everything one cycle decided, before anything is applied.
type decision struct {
	Policy      *policy.Policy
	Guard       *policy.Guard
	Sampler     string
	SamplerWhy  string
	Samples     []detect.Sample
	Report      detect.Report
	Ruleset     *rules.Ruleset
	Omitted     rules.Omitted
	Restored    int // active bans from the state store carried into the ruleset
	StateLoaded bool
}

func loadPolicy(o *options) (*policy.Policy, error) {
	if o.config == "" {
		return policy.Default(), nil
	}
	return policy.Load(o.config)
}

// guard builds the never-ban guard from the policy and the host's addresses.
func (a *app) guard(p *policy.Policy) (*policy.Guard, error) {
	var host []netip.Prefix
	var whys []string
	if p.Allow.Host {
		ssh := os.Getenv("SSH_CONNECTION")
		if ssh == "" {
			ssh = os.Getenv("SSH_CLIENT")
		}
		prot, err := detect.HostProtected(ssh)
		if err != nil {
			return nil, fmt.Errorf("find the host's own addresses: %w", err)
		}
		for _, pr := range prot {
			host = append(host, pr.Prefix)
			whys = append(whys, pr.Why)
		}
	}
	a.log.Debug("never-ban addresses of this host", "count", len(host))
	return p.Guard(host), nil
}

// sample takes the policy's window of samples.
func (a *app) sample(ctx context.Context, p *policy.Policy) (string, string, []detect.Sample, error) {
	s, why, err := detect.NewSampler(ctx, p.Sample.Source, "", detect.StatesFor(p))
	if err != nil {
		return "", "", nil, fmt.Errorf("choose a sampler: %w", err)
	}
	a.log.Debug("sampler chosen", "sampler", s.Name(), "why", why)
	samples := make([]detect.Sample, 0, p.Sample.Count)
	for i := 0; i < p.Sample.Count; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return "", "", nil, fmt.Errorf("sampling window interrupted: %w", ctx.Err())
			case <-time.After(p.Sample.Interval.Duration):
			}
		}
		smp, err := s.Sample(ctx)
		if err != nil {
			return "", "", nil, fmt.Errorf("sample %d of %d with %s: %w", i+1, p.Sample.Count, s.Name(), err)
		}
		if smp.Malformed > 0 {
			a.log.Warn("malformed connection-table entries skipped", "sampler", s.Name(), "count", smp.Malformed, "first", first(smp.Errors))
		}
		samples = append(samples, smp)
	}
	return s.Name(), why, samples, nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// decide runs the pure part of a cycle: sample, analyse, escalate, compile.
// st may be nil (no state store available: plan on a fresh host).
func (a *app) decide(ctx context.Context, p *policy.Policy, st *state.State, now time.Time) (*decision, error) {
	g, err := a.guard(p)
	if err != nil {
		return nil, err
	}
	name, why, samples, err := a.sample(ctx, p)
	if err != nil {
		return nil, err
	}
	rep := detect.Analyze(p, samples, g)
	if st != nil {
		detect.Escalate(p, rep.Verdicts, now, func(pfx netip.Prefix) (detect.PastBan, bool) {
			r, ok := st.Last(pfx)
			return detect.PastBan{At: r.LastBan, For: r.LastFor}, ok
		})
	}
	verdicts := rep.Verdicts
	restored := 0
	if st != nil {
		restore := storedVerdicts(st, now)
		restored = len(restore)
		verdicts = append(append([]detect.Verdict(nil), verdicts...), restore...)
	}
	rs, omitted, err := rules.Compile(p, verdicts, g)
	if err != nil {
		return nil, fmt.Errorf("compile ruleset: %w", err)
	}
	return &decision{Policy: p, Guard: g, Sampler: name, SamplerWhy: why, Samples: samples,
		Report: rep, Ruleset: rs, Omitted: omitted, StateLoaded: st != nil, Restored: restored}, nil
}

// storedVerdicts turns the state store's active bans into verdicts carrying
// the time each has left, so a run after an outside flush or a reboot puts
// them back. They come after the sampled verdicts: Compile keeps the longer
// of two bans of one subject, drops what a prefix covers, and enforces the
// guard and max_entries on them like on any verdict.
func storedVerdicts(st *state.State, now time.Time) []detect.Verdict {
	var out []detect.Verdict
	for _, b := range st.Active(now) {
		left := b.Until.Sub(now).Truncate(time.Second)
		if left < time.Second {
			continue
		}
		reason := b.Reason
		if reason == "" {
			reason = "restored from state"
		}
		out = append(out, detect.Verdict{Subject: b.Prefix, BanFor: left, Reason: reason, Rule: "", Sources: 1})
	}
	return out
}

// readState loads the state store read-only when it exists; a missing state
// directory is not an error (a dry run on a fresh host writes nothing).
func readState(dir string) (*state.State, error) {
	if _, err := os.Stat(filepath.Join(dir, state.FileName)); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	s, err := state.Open(dir)
	if err != nil {
		return nil, err
	}
	return s.Load()
}
