package engine

// Upstream mitigation over BGP ([upstream] in the policy).
//
// Every run with [upstream] enabled measures the uplink (the configured
// interfaces' inbound counters at the sampling window's start and end, and
// against the counters the previous run left in the hand-off file), builds
// upstream.DecideInput from its own decision (the flood class, the banned
// source prefixes, the host's flooded addresses inside own_prefixes, the
// ports of the rules), and runs upstream.Decide and then upstream.Check. A
// run (run, watch) writes what passed into the hand-off file
// (upstream-desired.json in the state directory, confirming every entry),
// where the long-running `synban upstream` speaker picks it up; `plan` only
// prints it. Refusals are logged with their reason. Nothing here ever stops
// local protection: a failure is one warning and synban_upstream_up 0.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/metrics"
	"github.com/synban/synban/internal/trust"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/state"
	"github.com/synban/synban/upstream"
)

// minUplinkWindow is the shortest sampling window whose uplink rate is used
// on its own: a shorter one (sample.count = 1) counts too few packets, and
// the rate since the previous run stands in.
const minUplinkWindow = 100 * time.Millisecond

// maxVictimPorts bounds the ports of one victim taken from what was seen;
// more than that and the rules match every port.
const maxVictimPorts = 32

// uplinkWindow is the uplink's counters around one sampling window.
type uplinkWindow struct {
	Start, End []upstream.LinkSample
	Err        error
}

// sampleUplink reads the [upstream] interfaces' counters when upstream
// mitigation is on.
func sampleUplink(p *policy.Policy, now time.Time) uplinkWindow {
	if !p.Upstream.Enabled {
		return uplinkWindow{}
	}
	var w uplinkWindow
	w.Start, w.Err = readLinks(p.Upstream.Interfaces, now)
	return w
}

// end adds the window's closing reading.
func (w uplinkWindow) end(p *policy.Policy, now time.Time) uplinkWindow {
	if !p.Upstream.Enabled || w.Err != nil {
		return w
	}
	w.End, w.Err = readLinks(p.Upstream.Interfaces, now)
	return w
}

func readLinks(names []string, now time.Time) ([]upstream.LinkSample, error) {
	out := make([]upstream.LinkSample, 0, len(names))
	for _, n := range names {
		s, err := upstream.SampleLink(nil, n, now)
		if err != nil {
			return nil, fmt.Errorf("upstream.interfaces: %w", err)
		}
		out = append(out, s)
	}
	return out, nil
}

// UpstreamPlan is what one cycle decided for the upstream routers.
type UpstreamPlan struct {
	// Input is what upstream.Decide was given; Decision its answer.
	Input    upstream.DecideInput
	Decision upstream.Decision
	// Announcements passed upstream.Check, most important first; Refused
	// did not, each with its reason.
	Announcements []upstream.Announcement
	Refused       []upstream.Refusal
	// Window is the uplink's rate over the sampling window, SinceLast since
	// the previous run; nil when not measured.
	Window, SinceLast *upstream.LinkRate
	// Desired is the hand-off content a run writes.
	Desired upstream.Desired
	// Err is what went wrong measuring or reading the previous hand-off;
	// the plan is made without it.
	Err error
}

// UpstreamReport is what a run did about the upstream routers.
type UpstreamReport struct {
	Plan *UpstreamPlan
	// Err is the run's first upstream failure (measurement, hand-off).
	Err error
	// Established counts the speaker's established sessions, from its
	// status file (0 when it is not running).
	Established int
}

// UpstreamConfig is the speaker's configuration: the policy's [upstream]
// converted (policy.UpstreamConfig), with the never-ban guard's prefixes as
// protected sources and each neighbor's password read from its
// password_file (see ReadSecret). A refused secret file is bad input.
func (e *Engine) UpstreamConfig(p *policy.Policy) (upstream.Config, error) {
	g, err := e.Guard(p)
	if err != nil {
		return upstream.Config{}, err
	}
	pw := make([]string, len(p.Upstream.Neighbors))
	for i, n := range p.Upstream.Neighbors {
		if n.PasswordFile == "" {
			continue
		}
		if pw[i], err = ReadSecret(fmt.Sprintf("upstream.neighbor[%d].password_file", i), n.PasswordFile); err != nil {
			return upstream.Config{}, err
		}
	}
	cfg := p.UpstreamConfig(g.Prefixes(), pw)
	if err := cfg.Validate(); err != nil {
		return upstream.Config{}, &InputError{fmt.Errorf("%s: [upstream]: %w", p.Source, err)}
	}
	return cfg, nil
}

// planUpstream makes the cycle's upstream plan; nil when [upstream] is off.
// It reads the previous hand-off file (the decision state and the uplink
// counters the previous run left) and writes nothing.
func (e *Engine) planUpstream(p *policy.Policy, g *policy.Guard, w *Window, d *Decision, now time.Time) *UpstreamPlan {
	if !p.Upstream.Enabled {
		return nil
	}
	plan := &UpstreamPlan{Err: w.Uplink.Err}
	prev, err := upstream.ReadDesired(e.opts.StateDir)
	if err != nil {
		plan.Err = cmp.Or(plan.Err, fmt.Errorf("previous upstream decision: %w", err))
		prev = upstream.Desired{}
	}
	up := w.Uplink
	if len(up.Start) > 0 && len(up.End) > 0 {
		if r, err := upstream.UplinkRate(up.Start, up.End); err == nil && r.Over >= minUplinkWindow {
			plan.Window = &r
		}
	}
	if len(prev.Uplink) > 0 && len(up.End) > 0 {
		// Counters that went backwards (an interface replaced) give no rate.
		if r, err := upstream.UplinkRate(prev.Uplink, up.End); err == nil {
			plan.SinceLast = &r
		}
	}
	cfg := p.UpstreamConfig(g.Prefixes(), nil)
	plan.Input = upstreamInput(p, d.Class, d.Report.Verdicts, d.Samples, uplinkBps(plan.Window, plan.SinceLast), prev.Previous(), now)
	plan.Decision = upstream.Decide(plan.Input)
	plan.Announcements, plan.Refused = upstream.Check(cfg, plan.Decision.Announcements)
	plan.Desired = upstream.Confirm(now, plan.Announcements, plan.Decision.State)
	plan.Desired.Uplink = up.End
	return plan
}

// uplinkBps is the inbound rate Decide compares with the capacity: the
// higher of the window's and the one since the previous run (0 when
// neither was measured: not saturated).
func uplinkBps(window, since *upstream.LinkRate) float64 {
	var bps float64
	for _, r := range []*upstream.LinkRate{window, since} {
		if r != nil {
			bps = max(bps, r.RxBps)
		}
	}
	return bps
}

// upstreamInput builds Decide's input from a cycle's decision. It is pure.
//
//   - Class: a real or prefix flood is real, a spoofed one spoofed; a class
//     whose action is "none" counts as no flood.
//   - Sources: the verdicts' subjects, weighted by their counts.
//   - Victims: the local addresses inside own_prefixes of the flood's
//     connections (a real flood: connections from a verdict's subject; a
//     spoofed one: the half-open entries), each with the ports of the
//     deciding rules, or, when a rule counts every port, the local ports
//     seen (up to maxVictimPorts; more means every port).
func upstreamInput(p *policy.Policy, class detect.Classification, verdicts []detect.Verdict, samples []detect.Sample, bps float64, prev upstream.DecideState, now time.Time) upstream.DecideInput {
	u := &p.Upstream
	in := upstream.DecideInput{
		Now: now, UplinkBps: bps, CapacityBps: float64(u.UplinkBps), SaturationRatio: u.SaturationRatio,
		RealAction: upstream.Discard, RateBytes: uint64(max(u.FlowSpecRateBytes, 0)),
		FlowSpecCap: u.MaxFlowSpecRules, FlowSpecRefused: !carriesFlowSpec(u.Neighbors), AllowRTBH: u.AllowRTBH,
		MinHold: u.MinHold.Duration, WithdrawAfterQuiet: u.WithdrawAfterQuiet.Duration, Previous: prev,
	}
	cfg := p.UpstreamConfig(nil, nil)
	in.RTBHCommunities, in.RTBHNextHop4, in.RTBHNextHop6 = cfg.RTBHCommunities, cfg.RTBHNextHop4, cfg.RTBHNextHop6
	if u.RealAction == string(upstream.RateLimit) {
		in.RealAction = upstream.RateLimit
	}
	switch class.Kind {
	case detect.KindReal, detect.KindPrefix:
		if u.RealAction != "none" {
			in.Class = upstream.RealFlood
		}
	case detect.KindSpoofed:
		if u.SpoofedAction != "none" {
			in.Class = upstream.SpoofedFlood
		}
	}
	if in.Class == upstream.NoFlood {
		return in
	}
	weight := map[netip.Prefix]uint64{}
	var subjects []netip.Prefix
	for _, v := range verdicts {
		s := policy.Canonical(v.Subject)
		if _, ok := weight[s]; !ok {
			subjects = append(subjects, s)
		}
		weight[s] = max(weight[s], uint64(max(v.Count, 0)))
	}
	for _, s := range subjects {
		in.Sources = append(in.Sources, upstream.Source{Prefix: s, Weight: weight[s]})
	}
	in.Victims = victims(p, in.Class, verdicts, samples)
	return in
}

// carriesFlowSpec reports whether a neighbor takes a FlowSpec family.
func carriesFlowSpec(ns []policy.UpstreamNeighbor) bool {
	for _, n := range ns {
		if slices.Contains(n.Families, upstream.FamilyIPv4FlowSpec) || slices.Contains(n.Families, upstream.FamilyIPv6FlowSpec) {
			return true
		}
	}
	return false
}

// victims finds the flooded local addresses inside own_prefixes and their
// ports (see upstreamInput).
func victims(p *policy.Policy, class upstream.FloodClass, verdicts []detect.Verdict, samples []detect.Sample) []upstream.Victim {
	own := p.Upstream.OwnPrefixes
	// rulePorts are the deciding rules' ports; nil when one counts every
	// port.
	var rulePorts []uint16
	anyPort := false
	use := func(r *policy.Rule) {
		if len(r.Ports) == 0 {
			anyPort = true
		}
		rulePorts = append(rulePorts, r.Ports...)
	}
	if class == upstream.RealFlood {
		for _, v := range verdicts {
			if r, ok := p.RuleByName(v.Rule); ok {
				use(r)
			} else {
				anyPort = true // a prefix verdict: every rule's state summed
			}
		}
	} else {
		for i := range p.Rules {
			if r := &p.Rules[i]; r.State == policy.StateSynRecv || r.State == policy.StateAny {
				use(r)
			}
		}
	}
	if anyPort {
		rulePorts = nil
	}
	seen := map[netip.Addr]map[uint16]bool{}
	for _, s := range samples {
		for c := range s.All() {
			local := c.Local.Addr().Unmap()
			if !slices.ContainsFunc(own, func(o netip.Prefix) bool { return o.Contains(local) }) {
				continue
			}
			if class == upstream.RealFlood {
				remote := c.Remote.Addr().Unmap()
				if !slices.ContainsFunc(verdicts, func(v detect.Verdict) bool { return policy.Canonical(v.Subject).Contains(remote) }) {
					continue
				}
			} else if c.State != detect.SynRecv && c.State != detect.NewSynRecv {
				continue
			}
			if rulePorts != nil && !slices.Contains(rulePorts, c.Local.Port()) {
				continue
			}
			if seen[local] == nil {
				seen[local] = map[uint16]bool{}
			}
			seen[local][c.Local.Port()] = true
		}
	}
	out := make([]upstream.Victim, 0, len(seen))
	for a, ports := range seen {
		v := upstream.Victim{Addr: a}
		if len(ports) <= maxVictimPorts {
			for port := range ports {
				if port != 0 {
					v.Ports = append(v.Ports, port)
				}
			}
			slices.Sort(v.Ports)
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b upstream.Victim) int { return a.Addr.Compare(b.Addr) })
	return out
}

// logUpstream logs a plan: its reason, the refusals (the first MaxListed
// one by one) and a failure.
func (e *Engine) logUpstream(plan *UpstreamPlan) {
	if plan == nil {
		return
	}
	if plan.Err != nil {
		e.log.Warn("upstream: measuring the uplink failed; deciding without it", "err", plan.Err)
	}
	if len(plan.Announcements) > 0 || len(plan.Refused) > 0 {
		e.log.Info("upstream decision", "reason", plan.Decision.Reason, "uplink_bps", int64(plan.Input.UplinkBps),
			"capacity_bps", int64(plan.Input.CapacityBps), "announcements", len(plan.Announcements), "refused", len(plan.Refused))
	}
	for i, r := range plan.Refused {
		if i == MaxListed {
			e.log.Warn("more upstream announcements refused", "count", len(plan.Refused)-MaxListed)
			break
		}
		e.log.Warn("upstream announcement refused", "announcement", r.Announcement.CLI(), "reason", r.Reason)
	}
}

// handOffUpstream writes the plan into the hand-off file for the speaker
// and returns the run's upstream report; nil when [upstream] is off. A
// failure is logged and reported, never returned: local protection is in
// place already.
func (e *Engine) handOffUpstream(d *Decision) *UpstreamReport {
	plan := d.Upstream
	if plan == nil {
		return nil
	}
	rep := &UpstreamReport{Plan: plan, Err: plan.Err}
	e.logUpstream(plan)
	if err := upstream.WriteDesired(e.opts.StateDir, plan.Desired); err != nil {
		rep.Err = cmp.Or(rep.Err, err)
		e.log.Warn("upstream: cannot hand the decision to the speaker; local bans are in place", "err", err)
	}
	if st, err := upstream.ReadStatus(e.opts.StateDir); err == nil {
		for _, n := range st.Neighbors {
			if n.State == "established" {
				rep.Established++
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		e.log.Warn("upstream: speaker status unreadable", "err", err)
	}
	return rep
}

// upstreamMetrics turns a run's upstream report into its gauges.
func upstreamMetrics(r *UpstreamReport) *metrics.Upstream {
	if r == nil {
		return nil
	}
	m := &metrics.Upstream{Up: r.Err == nil, Refused: len(r.Plan.Refused), Established: r.Established,
		Announcements: map[string]int{string(upstream.FlowSpec): 0, string(upstream.RTBH): 0}}
	for _, a := range r.Plan.Announcements {
		m.Announcements[string(a.Kind)]++
	}
	m.UplinkBps = r.Plan.Input.UplinkBps
	return m
}

// UpstreamStatus reads the speaker's status file in the state directory;
// an error wrapping os.ErrNotExist means no speaker is running.
func (e *Engine) UpstreamStatus(_ context.Context) (upstream.StatusReport, error) {
	return upstream.ReadStatus(e.opts.StateDir)
}

// SpeakerLockName is the file in the state directory that one `synban
// upstream` holds locked while it runs: a second speaker on the same hand-off
// file would announce the same routes and overwrite the first one's status.
const SpeakerLockName = "upstream.lock"

// lockSpeaker takes the speaker's lock (flock on DIR/upstream.lock, released
// by the kernel when the process dies); a held lock is an error wrapping
// ErrLocked.
func lockSpeaker(dir string) (*os.File, error) {
	path := filepath.Join(dir, SpeakerLockName)
	f, err := trust.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: another synban upstream runs on this state directory: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// Speaker is what `synban upstream` hands to the speaker binary
// (synban-speaker, which links GoBGP so that nothing else has to): the
// checked configuration, the state directory, and its lock, held.
type Speaker struct {
	// Config is the policy's [upstream], checked, with its secrets read.
	Config upstream.Config
	// StateDir holds the hand-off file the speaker follows and the status
	// file it writes.
	StateDir string
	// Lock is DIR/upstream.lock, locked (flock): it stays locked across
	// exec as long as the speaker keeps the descriptor open.
	Lock *os.File
}

// PrepareUpstream is the part of `synban upstream` that runs before the
// hand-over to the speaker binary: the policy must enable [upstream], its
// configuration must pass the speaker's own check (a refused secret file
// or state directory is bad input), and no other speaker may hold the
// state directory. The caller owns the returned lock.
func (e *Engine) PrepareUpstream(p *policy.Policy) (*Speaker, error) {
	if !p.Upstream.Enabled {
		return nil, BadInput("%s: upstream.enabled is false: the speaker has nothing to do", p.Source)
	}
	cfg, err := e.UpstreamConfig(p)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, &InputError{fmt.Errorf("upstream config: %w", err)}
	}
	store, err := state.Open(e.opts.StateDir)
	if err != nil {
		return nil, err
	}
	lock, err := lockSpeaker(store.Dir())
	if err != nil {
		return nil, err
	}
	return &Speaker{Config: cfg, StateDir: store.Dir(), Lock: lock}, nil
}
