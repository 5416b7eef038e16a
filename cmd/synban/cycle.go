package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/trust"
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
	Counters    detect.TcpExt // TcpExt counters' change over the window
	Class       detect.Classification
	Report      detect.Report
	Ruleset     *rules.Ruleset
	Omitted     rules.Omitted
	Restored    int // active bans from the state store carried into the ruleset
	StateLoaded bool
	// Refreshed are the subjects of Report.Verdicts whose ban still holds
	// and is only extended (the source kept sending): not new offences.
	Refreshed map[netip.Prefix]bool
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

// guard builds the never-ban guard from the policy and the host's
// addresses, each with the reason it is protected (host address, default
// gateway, SSH client), which the guard's messages then name.
func (a *app) guard(p *policy.Policy) (*policy.Guard, error) {
	var host []detect.Protected
	if p.Allow.Host {
		ssh := os.Getenv("SSH_CONNECTION")
		if ssh == "" {
			ssh = os.Getenv("SSH_CLIENT")
		}
		var err error
		if host, err = detect.HostProtected(ssh); err != nil {
			return nil, fmt.Errorf("find the host's own addresses: %w", err)
		}
	}
	a.log.Debug("never-ban addresses of this host", "count", len(host))
	return p.Guard(host), nil
}

// window is one sampling window: the samples, which samplers took them and
// why, and the TcpExt counters' change over the window.
type window struct {
	Samplers []string
	Why      string
	Result   detect.WindowResult
}

// sample takes the policy's window of samples. With source "auto" the socket
// table (sock_diag, else procfs) is merged with conntrack, which still sees
// half-open flows when SYN cookies keep them out of the socket table.
//
// from, when set, replays a captured table instead: FROM/net/tcp and
// FROM/net/tcp6 in /proc/net/tcp format (no conntrack, no counters).
func (a *app) sample(ctx context.Context, p *policy.Policy, from string) (*window, error) {
	var w *window
	var err error
	if from != "" {
		w, err = a.replay(ctx, p, from)
	} else {
		w, err = a.sampleLive(ctx, p)
	}
	if err != nil {
		return nil, err
	}
	for i, smp := range w.Result.Samples {
		if smp.Malformed > 0 {
			a.log.Warn("malformed connection-table entries skipped", "sample", i+1, "count", smp.Malformed, "first", first(smp.Errors))
		}
	}
	return w, nil
}

// sampleLive reads the live tables of this network namespace.
func (a *app) sampleLive(ctx context.Context, p *policy.Policy) (*window, error) {
	s, why, err := detect.NewSampler(ctx, p.Sample.Source, "", detect.StatesFor(p))
	if err != nil {
		return nil, fmt.Errorf("choose a sampler: %w", err)
	}
	samplers := []detect.Sampler{s}
	if p.Sample.Source == "" || p.Sample.Source == "auto" {
		samplers = append(samplers, &optionalSampler{Sampler: detect.Conntrack{}, log: a.log})
		why += "; conntrack merged in when readable"
	}
	w := &window{Why: why}
	for _, s := range samplers {
		w.Samplers = append(w.Samplers, s.Name())
	}
	a.log.Debug("samplers chosen", "samplers", w.Samplers, "why", why)
	w.Result, err = detect.Window(ctx, samplers, p.Sample.Count, p.Sample.Interval.Duration, detect.NetstatCounters(""))
	if err != nil {
		return nil, fmt.Errorf("sampling window (%s): %w", strings.Join(w.Samplers, "+"), err)
	}
	return w, nil
}

// replay samples a captured table: the same file read for every sample of
// the window, so K-of-N rules see it as a steady state.
//
// The capture is checked first. FROM/net/tcp is required and net/tcp6
// optional; each must be a regular file. A file holding only the header line
// is a quiet host's empty table and fine; an empty file (not even the
// header), or one where lines were malformed and none parsed, is bad input:
// replaying it would report "flood: none" about a table never read.
func (a *app) replay(ctx context.Context, p *policy.Policy, from string) (*window, error) {
	if _, err := os.Stat(filepath.Join(from, "net", "tcp")); err != nil {
		return nil, badInput("--from %s: want a directory holding net/tcp (and net/tcp6) in /proc format: %v", from, err)
	}
	for _, name := range []string{"net/tcp", "net/tcp6"} {
		if err := checkCapture(from, name); err != nil {
			return nil, err
		}
	}
	src := detect.ProcFS{Root: from}
	w := &window{Samplers: []string{"procfs"}, Why: "replaying the captured table under " + from}
	res, err := detect.Window(ctx, []detect.Sampler{src}, p.Sample.Count, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", from, err)
	}
	w.Result = res
	return w, nil
}

// checkCapture checks the captured table FROM/name (see replay); a missing
// net/tcp6 is fine. The file is opened as the sampler opens it (a regular
// file only, refused at once otherwise), so a refusal names the same thing.
func checkCapture(from, name string) error {
	path := filepath.Join(from, name)
	f, err := trust.OpenRegular(path, true)
	switch {
	case err != nil && name == "net/tcp6" && errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return badInput("--from %s: %w", from, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("--from %s: %s: %w", from, name, err)
	}
	if fi.Size() == 0 {
		return badInput("--from %s: %s: empty file; a capture holds at least the header line (\"sl local_address ...\")", from, name)
	}
	_, st, err := detect.ParseProcNet(f, nil)
	if err != nil {
		return fmt.Errorf("--from %s: read %s: %w", from, name, err)
	}
	if st.Malformed > 0 && st.Conns+st.Listen == 0 {
		return badInput("--from %s: %s: no line parsed (%d malformed)", from, name, st.Malformed)
	}
	return nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// decide runs the pure part of a cycle: sample, analyse, escalate, compile.
// st may be nil (no state store available: plan on a fresh host). Without
// drop counters, evidence against a subject whose ban holds is stale.
func (a *app) decide(ctx context.Context, p *policy.Policy, st *state.State, now time.Time, from string) (*decision, error) {
	return a.decideWith(ctx, p, st, now, from, nil)
}

// decideWith is decide with the backend's per-ban drop counters (nil when
// the backend has none), read only when a verdict names a subject whose ban
// still holds.
func (a *app) decideWith(ctx context.Context, p *policy.Policy, st *state.State, now time.Time, from string, drops *dropReader) (*decision, error) {
	g, err := a.guard(p)
	if err != nil {
		return nil, err
	}
	w, err := a.sample(ctx, p, from)
	if err != nil {
		return nil, err
	}
	samples := w.Result.Samples
	rep := detect.Analyze(p, samples, g)
	class := detect.Classify(p, samples, w.Result.Delta)
	if class.Kind == detect.KindSpoofed {
		// Banning forged sources is pointless and fills the ban set: keep only
		// the real offenders; the SYN meter stays on.
		rep = detect.FilterSpoofed(rep, class)
		a.log.Warn("spoofed SYN flood", "half_open_sources", class.HalfOpenSources, "half_open_entries", class.HalfOpenEntries,
			"cookies_sent", class.CookiesSent, "cookies_recv", class.CookiesRecv, "why", class.Why)
		for _, adv := range class.Advice {
			a.log.Warn("advice", "do", adv)
		}
	}
	var refreshed map[netip.Prefix]bool
	if st != nil {
		esc := detect.Escalate(p, rep.Verdicts, now, standing(ctx, st, now, drops))
		if drops != nil && drops.err != nil {
			a.log.Warn("drop counters unreadable; offenders still banned count as answered", "err", drops.err)
		}
		rep.Verdicts, refreshed = esc.Verdicts, esc.Refreshed
		for _, v := range esc.Stale {
			a.log.Debug("offence already answered by a ban that holds, nothing new dropped", "subject", v.Subject, "rule", v.Rule, "count", v.Count)
		}
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
	return &decision{Policy: p, Guard: g, Sampler: strings.Join(w.Samplers, "+"), SamplerWhy: w.Why, Samples: samples,
		Counters: w.Result.Delta, Class: class, Report: rep, Ruleset: rs, Omitted: omitted, StateLoaded: st != nil, Restored: restored,
		Refreshed: refreshed}, nil
}

// standing returns escalation's view of a subject: its history, whether its
// stored ban still holds, and whether that ban's kernel drop counter moved
// since the count stored by the previous run. When the counters cannot be
// read, a ban that holds counts as showing nothing new.
func standing(ctx context.Context, st *state.State, now time.Time, drops *dropReader) func(netip.Prefix) detect.Standing {
	return func(pfx netip.Prefix) detect.Standing {
		var s detect.Standing
		if r, ok := st.Last(pfx); ok {
			s.Last, s.HasLast = detect.PastBan{At: r.LastBan, For: r.LastFor}, true
		}
		b, ok := st.Find(pfx)
		if !ok || b.Expired(now) {
			return s
		}
		s.Banned, s.Until = true, b.Until
		if drops == nil {
			return s
		}
		if m, err := drops.read(ctx); err == nil {
			if cur, ok := m[policy.Canonical(pfx)]; ok {
				s.Dropped = detect.NewDrops(cur, b.Drops)
			}
		}
		return s
	}
}

// dropReader reads a backend's per-ban drop counters at most once per run.
type dropReader struct {
	dc   rules.DropCounter
	m    map[netip.Prefix]uint64
	err  error
	done bool
}

func (d *dropReader) read(ctx context.Context) (map[netip.Prefix]uint64, error) {
	if !d.done {
		d.m, d.err = d.dc.BanDrops(ctx)
		d.done = true
		if d.err != nil {
			d.err = fmt.Errorf("read per-ban drop counters: %w", d.err)
		}
	}
	return d.m, d.err
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
		out = append(out, detect.Verdict{Subject: b.Prefix, BanFor: left, Reason: reason, Rule: "", Sources: 1, Forced: b.Forced})
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

// optionalSampler is a sampler whose failure does not fail the window: the
// conntrack table is a bonus (it needs CAP_NET_ADMIN and the conntrack
// module), so a dry run as an ordinary user still works. The first failure
// is logged; after it the sampler is skipped.
type optionalSampler struct {
	detect.Sampler
	log    *slog.Logger
	failed bool
}

// Sample reads the wrapped sampler, or returns an empty sample once it failed.
func (o *optionalSampler) Sample(ctx context.Context) (detect.Sample, error) {
	if !o.failed {
		s, err := o.Sampler.Sample(ctx)
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return detect.Sample{}, err
		}
		o.failed = true
		o.log.Warn("optional sampler unavailable; going on without it", "sampler", o.Sampler.Name(), "err", err)
	}
	return detect.Sample{Source: o.Sampler.Name(), Time: time.Now()}, nil
}
