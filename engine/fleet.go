package engine

// Fleet-wide bans through a CrowdSec Local API ([crowdsec] in the policy).
//
// Push: the run's new or lengthened local bans go to the LAPI as alerts,
// one decision each (origin "synban", scope Ip or Range, the ban's time,
// scenario "synban/RULE", the counts in the message), in one batch after the
// store records them; `synban unban` deletes synban's own decisions.
//
// Pull: every run reads the full decision stream (startup=true) and makes
// the pulled bans equal to what the LAPI wants now (crowdsec.Desired): the
// wanted bans join the run's verdicts before Compile, so they pass the same
// guard, minimum prefix lengths, ban.max_duration and max_entries as local
// bans and are applied in the same transaction; pulled bans the LAPI no
// longer lists are removed from the kernel and the store. Nothing is
// remembered between runs but the bans themselves (state.Ban.Origin marks
// the pulled ones), so a crash anywhere leaves nothing to repair: the next
// run computes the same set from scratch (see the crowdsec package).
//
// Failure: a LAPI that does not answer, or answers with an error, never
// stops local protection. The first failure of a run is logged as one
// warning, later calls of that run are skipped, the run goes on with its
// local bans (and the pulled bans of earlier runs, kept until they expire)
// and the metric synban_crowdsec_up is 0. Credentials are read at the start
// of the run; a secret file that is missing or readable by group or others
// stops the run before anything changes (bad input, exit 2).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/synban/synban/crowdsec"
	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/metrics"
	"github.com/synban/synban/internal/trust"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/state"
)

// PulledOriginPrefix starts state.Ban.Origin, and the reason of a pulled
// ban, before the LAPI decision's origin: "crowdsec:cscli".
const PulledOriginPrefix = "crowdsec:"

// maxSecretBytes bounds a secret file.
const maxSecretBytes = 4096

// FleetReport is what a run exchanged with the LAPI.
type FleetReport struct {
	// Err is the run's first LAPI failure; nil when every call succeeded.
	Err error
	// Pulled counts the pulled bans in the applied ruleset; Withdrawn the
	// pulled bans removed because the LAPI no longer lists them; Pushed
	// the bans pushed.
	Pulled, Withdrawn, Pushed int
}

// LAPI is what a run asks of the CrowdSec Local API: *crowdsec.Client, or
// a test's stub (Options.NewLAPI).
type LAPI interface {
	// Stream reads the decision stream.
	Stream(ctx context.Context, o crowdsec.StreamOptions) (*crowdsec.Stream, error)
	// PushBans pushes bans as alerts, one decision each.
	PushBans(ctx context.Context, bans []crowdsec.Ban) ([]string, error)
	// DeleteDecisions deletes synban's own decisions on a prefix.
	DeleteDecisions(ctx context.Context, p netip.Prefix) (int, error)
	// Login logs the machine in.
	Login(ctx context.Context) error
}

// fleet is one run's link to the LAPI. A nil *fleet does nothing.
type fleet struct {
	cfg    policy.CrowdSec
	client LAPI
	log    *slog.Logger
	// pullOK is set when this run's pull succeeded: the pulled set is then
	// authoritative.
	pullOK bool
	// pulled maps the prefixes the LAPI wants banned to their origin label.
	pulled    map[netip.Prefix]string
	withdrawn []netip.Prefix
	rep       FleetReport
}

// openFleet reads the credentials the policy's [crowdsec] needs and makes
// the client; nil when the integration is off. A secret file that cannot be
// read or is readable by others is an error for exit code 2.
func (e *Engine) openFleet(p *policy.Policy) (*fleet, error) {
	c := p.CrowdSec
	if !c.Pushing() && !c.Pulling() {
		return nil, nil
	}
	cfg := crowdsec.Config{URL: c.LAPIURL, Timeout: c.Timeout.Duration, Logger: e.log}
	var err error
	if c.Pushing() {
		cfg.MachineID = c.MachineID
		if cfg.Password, err = ReadSecret("crowdsec.password_file", c.PasswordFile); err != nil {
			return nil, err
		}
	}
	if c.Pulling() {
		if cfg.BouncerKey, err = ReadSecret("crowdsec.bouncer_key_file", c.BouncerKeyFile); err != nil {
			return nil, err
		}
	}
	var client LAPI
	if e.opts.NewLAPI != nil {
		client, err = e.opts.NewLAPI(cfg)
	} else {
		client, err = crowdsec.New(cfg)
	}
	if err != nil {
		return nil, &InputError{fmt.Errorf("crowdsec.lapi_url: %w", err)}
	}
	return &fleet{cfg: c, client: client, log: e.log}, nil
}

// ReadSecret reads the secret in the file at path (named by the policy key
// key), trimmed of surrounding white space. The file must be trusted like
// the policy (internal/trust, when running as root) and must not be
// readable by group or others: that refusal is a *trust.Error naming the
// file, its mode and `chmod 600`. Every failure is bad input (exit 2).
func ReadSecret(key, path string) (string, error) {
	if err := trust.CheckFile(path); err != nil {
		return "", secretError(key, err)
	}
	f, err := trust.OpenRegular(path, true)
	if err != nil {
		return "", secretError(key, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", secretError(key, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", secretError(key, trust.Refusal("file", path, fi, "a secret readable by group or others", "chmod 600 "+path))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+1))
	if err != nil {
		return "", secretError(key, err)
	}
	if len(b) > maxSecretBytes {
		return "", &InputError{fmt.Errorf("%s: %s is longer than %d bytes: not a secret", key, path, maxSecretBytes)}
	}
	s := strings.TrimSpace(string(b))
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "", &InputError{fmt.Errorf("%s: %s is empty or holds more than one line", key, path)}
	}
	return s, nil
}

func secretError(key string, err error) error {
	var te *trust.Error
	var pe *fs.PathError
	if errors.As(err, &te) || errors.As(err, &pe) {
		return &InputError{fmt.Errorf("%s: %w", key, err)}
	}
	return fmt.Errorf("%s: %w", key, err)
}

// fail records the run's first LAPI failure and logs it, once.
func (f *fleet) fail(op string, err error) {
	if f.rep.Err != nil {
		return
	}
	f.rep.Err = fmt.Errorf("crowdsec %s: %w", op, err)
	f.log.Warn("CrowdSec LAPI unavailable; local bans go on without it", "op", op, "lapi", f.cfg.LAPIURL, "err", err)
}

// pushing reports whether bans are pushed to the LAPI.
func (f *fleet) pushing() bool { return f != nil && f.cfg.Pushing() }

// pulling reports whether this run pulls the fleet's decisions.
func (f *fleet) pulling() bool { return f != nil && f.cfg.Pulling() }

// pull reads the full decision stream and returns the bans the LAPI wants
// as verdicts, capped by max_pulled (the longest kept). On a failure it
// returns nil and the pulled bans of earlier runs stay as stored.
func (f *fleet) pull(ctx context.Context) []detect.Verdict {
	if f == nil || !f.cfg.Pulling() {
		return nil
	}
	s, err := f.client.Stream(ctx, crowdsec.StreamOptions{Startup: true, Origins: f.cfg.PullOrigins,
		ScenariosContaining: f.cfg.PullScenariosContaining})
	if err != nil {
		f.fail("pull", err)
		return nil
	}
	f.pullOK = true
	want, st := crowdsec.Desired(s)
	if s.Skipped > 0 {
		f.log.Warn("CrowdSec decisions not understood, skipped", "count", s.Skipped, "examples", s.SkippedExamples)
	}
	f.log.Debug("CrowdSec decisions pulled", "stream", len(s.New), "wanted", len(want), "not_ban", st.NotBan,
		"expired", st.Expired, "shorter", st.Shorter)
	if n := f.cfg.MaxPulled; len(want) > n {
		slices.SortStableFunc(want, func(a, b crowdsec.Want) int { return int(b.Remaining - a.Remaining) })
		f.log.Warn("more CrowdSec decisions than crowdsec.max_pulled; the shortest are not enforced",
			"wanted", len(want), "max_pulled", n, "left_out", len(want)-n)
		want = want[:n]
	}
	f.pulled = make(map[netip.Prefix]string, len(want))
	out := make([]detect.Verdict, 0, len(want))
	for _, w := range want {
		origin := PulledOriginPrefix + w.Origin
		f.pulled[policy.Canonical(w.Prefix)] = origin
		out = append(out, detect.Verdict{Subject: w.Prefix, BanFor: w.Remaining, Sources: 1,
			Reason: origin + " " + w.Scenario})
	}
	return out
}

// decideState is the store the decision restores bans from: after a
// successful pull, without the pulled bans (the pull says which still hold),
// else the store as it is.
func (f *fleet) decideState(st *state.State) *state.State {
	if f == nil || !f.pullOK || st == nil {
		return st
	}
	keep := make([]state.Ban, 0, len(st.Bans))
	for _, b := range st.Bans {
		if b.Origin == "" {
			keep = append(keep, b)
		}
	}
	if len(keep) == len(st.Bans) {
		return st
	}
	return &state.State{Version: st.Version, Bans: keep, History: st.History}
}

// join adds the pulled verdicts to the decision: Compile runs again on the
// run's verdicts, the restored bans and the pulled ones, in that order of
// priority (max_entries cuts pulled bans first). It then lists the pulled
// bans of earlier runs that the LAPI no longer wants.
func (f *fleet) join(d *Decision, st *state.State, now time.Time, pulled []detect.Verdict) error {
	if f == nil || !f.pullOK {
		return nil
	}
	if len(pulled) > 0 {
		verdicts := append(slices.Clone(d.Report.Verdicts), storedVerdicts(f.decideState(st), now)...)
		verdicts = append(verdicts, pulled...)
		rs, omitted, err := rules.Compile(d.Policy, Offences(verdicts), d.Guard)
		if err != nil {
			return fmt.Errorf("compile ruleset with the CrowdSec bans: %w", err)
		}
		d.Ruleset, d.Omitted = rs, omitted
		for _, om := range omitted {
			if om.Index >= len(verdicts)-len(pulled) && strings.HasPrefix(om.Why, "protected") {
				f.log.Warn("CrowdSec decision refused", "subject", om.Prefix, "why", om.Why, "reason", om.Verdict.Reason)
			}
		}
	}
	if st == nil {
		return nil
	}
	inRuleset := make(map[netip.Prefix]bool, len(d.Ruleset.Bans))
	for _, b := range d.Ruleset.Bans {
		inRuleset[b.Prefix] = true
	}
	for _, b := range st.Active(now) {
		if b.Origin != "" && !inRuleset[b.Prefix] {
			f.withdrawn = append(f.withdrawn, b.Prefix)
		}
	}
	return nil
}

// withdraw removes from the kernel the pulled bans the LAPI no longer
// wants (after the apply; the store forgets them in markPulled).
func (f *fleet) withdraw(ctx context.Context, b rules.Backend) error {
	if f == nil || len(f.withdrawn) == 0 {
		return nil
	}
	if _, err := b.Unban(ctx, f.withdrawn); err != nil {
		return fmt.Errorf("remove CrowdSec bans the LAPI withdrew: %w", err)
	}
	for i, p := range f.withdrawn {
		if i == MaxListed {
			f.log.Info("more CrowdSec bans withdrawn", "count", len(f.withdrawn)-MaxListed)
			break
		}
		f.log.Info("CrowdSec ban withdrawn", "subject", p)
	}
	f.rep.Withdrawn = len(f.withdrawn)
	return nil
}

// localOf is the set of prefixes whose active ban in st (the store as the
// run loaded it) is synban's own, for markPulled; nil without pulled bans.
// It is taken before the store update, which changes st in place.
func (f *fleet) localOf(st *state.State, now time.Time) map[netip.Prefix]bool {
	if f == nil || len(f.pulled) == 0 || st == nil {
		return nil
	}
	local := make(map[netip.Prefix]bool)
	for _, b := range st.Bans {
		if b.Origin == "" && !b.Expired(now) {
			local[b.Prefix] = true
		}
	}
	return local
}

// markPulled, inside the store update after recordBans, marks the stored
// bans that came from the LAPI with their origin (unless the store already
// held a ban of synban's own for the prefix, local as localOf found before
// the update, or this run decided one) and forgets the withdrawn ones.
func (f *fleet) markPulled(s *state.State, local map[netip.Prefix]bool, d *Decision) {
	if f == nil {
		return
	}
	s.RemoveEach(f.withdrawn)
	if len(f.pulled) == 0 {
		return
	}
	decided := make(map[netip.Prefix]bool, len(d.Report.Verdicts))
	for _, v := range d.Report.Verdicts {
		decided[policy.Canonical(v.Subject)] = true
	}
	inRuleset := make(map[netip.Prefix]bool, len(d.Ruleset.Bans))
	for _, b := range d.Ruleset.Bans {
		inRuleset[b.Prefix] = true
	}
	for i := range s.Bans {
		b := &s.Bans[i]
		origin, ok := f.pulled[b.Prefix]
		if !ok || local[b.Prefix] || decided[b.Prefix] || !inRuleset[b.Prefix] {
			continue
		}
		b.Origin, b.Rule = origin, ""
		f.rep.Pulled++
	}
}

// push sends the run's new or lengthened local bans: the verdicts this run
// decided that the ruleset holds, with the ruleset's timeout.
func (f *fleet) push(ctx context.Context, d *Decision) {
	if f == nil || !f.cfg.Pushing() || f.rep.Err != nil || len(d.Report.Verdicts) == 0 {
		return
	}
	bans := make(map[netip.Prefix]rules.Ban, len(d.Ruleset.Bans))
	for _, b := range d.Ruleset.Bans {
		bans[b.Prefix] = b
	}
	var out []crowdsec.Ban
	for _, v := range d.Report.Verdicts {
		b, ok := bans[policy.Canonical(v.Subject)]
		if !ok {
			continue
		}
		rule := v.Rule
		if rule == "" {
			rule = "manual"
		}
		out = append(out, crowdsec.Ban{Prefix: b.Prefix, Duration: b.Timeout, Scenario: "synban/" + rule,
			Message: "synban " + rules.BanReason(Offence(v)), Events: v.Count})
	}
	if len(out) == 0 {
		return
	}
	if _, err := f.client.PushBans(ctx, out); err != nil {
		f.fail("push", err)
		return
	}
	f.rep.Pushed = len(out)
	f.log.Info("bans pushed to CrowdSec", "count", len(out))
}

// report is the run's FleetReport; nil without [crowdsec].
func (f *fleet) report() *FleetReport {
	if f == nil {
		return nil
	}
	r := f.rep
	return &r
}

// fleetMetrics turns a FleetReport into the metrics' view.
func fleetMetrics(r *FleetReport) *metrics.CrowdSec {
	if r == nil {
		return nil
	}
	return &metrics.CrowdSec{Up: r.Err == nil, Pulled: r.Pulled, Pushed: r.Pushed}
}

// unbanFleet deletes synban's own LAPI decisions on subjects after an
// unban: those the store held as synban's own bans (a pulled ban is the
// fleet's, not ours to delete) or did not hold at all. A failure is logged.
func (f *fleet) unbanFleet(ctx context.Context, st *state.State, subjects []netip.Prefix) {
	if f == nil || !f.cfg.Pushing() {
		return
	}
	for _, p := range subjects {
		if st != nil {
			if b, ok := st.Find(p); ok && b.Origin != "" {
				continue
			}
		}
		n, err := f.client.DeleteDecisions(ctx, p)
		if err != nil {
			f.fail("delete", err)
			return
		}
		f.log.Info("CrowdSec decisions deleted", "subject", p, "count", n)
	}
}

// CheckCrowdSec tries the policy's LAPI as a run would (`synban check
// --online`): the machine login when pushing, the decision stream when
// pulling. It returns one line per check done; a secret file refused is an
// InputError, a LAPI that refuses or does not answer an error.
func (e *Engine) CheckCrowdSec(ctx context.Context, p *policy.Policy) ([]string, error) {
	f, err := e.openFleet(p)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return []string{"crowdsec: not enabled (push and pull off)"}, nil
	}
	var lines []string
	if f.cfg.Pushing() {
		if err := f.client.Login(ctx); err != nil {
			return lines, fmt.Errorf("crowdsec: machine login as %q at %s: %w", f.cfg.MachineID, f.cfg.LAPIURL, err)
		}
		lines = append(lines, fmt.Sprintf("crowdsec: machine login as %q at %s: ok", f.cfg.MachineID, f.cfg.LAPIURL))
	}
	if f.cfg.Pulling() {
		// A delta pull: cheap, and runs always pull startup=true, so the
		// LAPI's cursor for this bouncer does not matter.
		s, err := f.client.Stream(ctx, crowdsec.StreamOptions{Origins: f.cfg.PullOrigins, ScenariosContaining: f.cfg.PullScenariosContaining})
		if err != nil {
			return lines, fmt.Errorf("crowdsec: decision stream at %s: %w", f.cfg.LAPIURL, err)
		}
		lines = append(lines, fmt.Sprintf("crowdsec: decision stream at %s: ok (%d new, %d deleted since this bouncer's last pull)",
			f.cfg.LAPIURL, len(s.New), len(s.Deleted)))
	}
	return lines, nil
}
