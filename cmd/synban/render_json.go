package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/engine"
	"github.com/synban/synban/internal/sysctl"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/upstream"
)

// The --json contract (docs/json.md, docs/synban.schema.json): every
// document is one JSON object whose first key is "schema", the version
// below; durations are seconds as numbers (keys ending in _seconds),
// addresses and prefixes strings, lists never null, keys snake_case. A key
// has one type in every command: "sources" is always a list, a count of
// sources is "source_count". A failure is {"schema":N,"error":{...}}.

// jsonSchemaVersion is the "schema" of every --json document. Raise it when
// a key is removed or changes type or meaning; adding a key keeps it.
const jsonSchemaVersion = 1

// writeJSON writes v, which must encode as a JSON object, as one indented
// document with "schema" as its first key. Every command's --json output
// goes through it.
func writeJSON(w io.Writer, v any) error {
	var raw bytes.Buffer
	enc := json.NewEncoder(&raw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode JSON output: %w", err)
	}
	body := bytes.TrimSpace(raw.Bytes())
	if len(body) < 2 || body[0] != '{' {
		return fmt.Errorf("encode JSON output: %T is not a JSON object", v)
	}
	var doc bytes.Buffer
	doc.WriteString(`{"schema":` + strconv.Itoa(jsonSchemaVersion))
	if len(body) > 2 {
		doc.WriteByte(',')
	}
	doc.Write(body[1:])
	var out bytes.Buffer
	if err := json.Indent(&out, doc.Bytes(), "", "  "); err != nil {
		return fmt.Errorf("encode JSON output: %w", err)
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

// Error kinds of the JSON error document, by exit code.
const (
	kindUsage   = "usage"   // exit 2: bad input
	kindFailure = "failure" // exit 1
	kindLocked  = "locked"  // exit 3
)

// errorJSON is the "error" member of a failed command's document.
type errorJSON struct {
	Message string `json:"message"`
	Kind    string `json:"kind"`
}

// errorKind returns the JSON error kind of an exit code.
func errorKind(code int) string {
	switch code {
	case exitUsage:
		return kindUsage
	case exitLocked:
		return kindLocked
	}
	return kindFailure
}

// writeJSONError writes the error document of a failed command.
func writeJSONError(w io.Writer, msg string, code int) {
	// A failure to write stdout cannot be reported on it; the message is
	// on stderr already.
	_ = writeJSON(w, struct {
		Error errorJSON `json:"error"`
	}{errorJSON{Message: msg, Kind: errorKind(code)}})
}

// reportedError is a failure whose JSON document (with its "error") the
// command has written already: Main sets the exit code and prints the
// message on stderr, and writes no second document.
type reportedError struct{ err error }

func (e reportedError) Error() string { return e.err.Error() }
func (e reportedError) Unwrap() error { return e.err }

// isReported reports whether err's JSON document was written.
func isReported(err error) bool {
	var r reportedError
	return errors.As(err, &r)
}

// secs is a duration in the JSON contract: seconds, as a number.
func secs(d time.Duration) float64 { return d.Seconds() }

// nonNil returns s, or an empty list for nil: lists are never null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// prefixStrings renders prefixes as strings, never null.
func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// classificationJSON is a flood classification (plan, run, sample).
type classificationJSON struct {
	Kind            string   `json:"kind"`
	Why             string   `json:"why"`
	HalfOpenSources int      `json:"half_open_sources"`
	HalfOpenEntries int      `json:"half_open_entries"`
	CookiesSent     int64    `json:"cookies_sent"`
	CookiesRecv     int64    `json:"cookies_recv"`
	Advice          []string `json:"advice"`
	// Evidence lists what the classification weighed beside the samples
	// (the sensor, the counters since the previous run); the cookies are
	// TcpExt deltas over counters_since_seconds, from counters_from
	// ("window" or "previous_run").
	Evidence      []string `json:"evidence"`
	CountersSince float64  `json:"counters_since_seconds"`
	CountersFrom  string   `json:"counters_from"`
	SensorSources int      `json:"sensor_sources"`
}

func classJSON(c detect.Classification) classificationJSON {
	return classificationJSON{Kind: c.Kind, Why: c.Why, HalfOpenSources: c.HalfOpenSources,
		HalfOpenEntries: c.HalfOpenEntries, CookiesSent: c.CookiesSent, CookiesRecv: c.CookiesRecv,
		Advice: nonNil(c.Advice), Evidence: nonNil(c.Evidence), CountersSince: secs(c.CountersSince), CountersFrom: countersFrom(c), SensorSources: c.SensorSources}
}

// countersFrom is c.CountersFrom, the window when unset (a classification
// without the evidence step counts the window's counters).
func countersFrom(c detect.Classification) string {
	if c.CountersFrom == "" {
		return detect.CountersWindow
	}
	return c.CountersFrom
}

// sensorDoc is the firewall sensor's reading (plan, sample): the sources
// whose SYNs went over the meter, highest rate first.
type sensorDoc struct {
	Available bool            `json:"available"`
	Table     string          `json:"table"`
	Counted   bool            `json:"counted"`
	Window    float64         `json:"window_seconds"`
	Since     float64         `json:"since_seconds"`
	Rows      []sensorRowJSON `json:"rows"`
	Error     string          `json:"error"`
}

// sensorRowJSON is one source of the sensor (rate: SYNs per second over
// the meter, -1 when the reading has no counts).
type sensorRowJSON struct {
	Subject   string  `json:"subject"`
	Packets   uint64  `json:"packets"`
	InWindow  uint64  `json:"in_window"`
	SinceLast uint64  `json:"since_last"`
	Rate      float64 `json:"rate"`
}

func sensorJSON(e detect.SensorEvidence) sensorDoc {
	rows := make([]sensorRowJSON, 0, len(e.Rows))
	for _, r := range e.Rows {
		rows = append(rows, sensorRowJSON{Subject: r.Subject.String(), Packets: r.Packets, InWindow: r.InWindow, SinceLast: r.SinceLast, Rate: r.Rate})
	}
	return sensorDoc{Available: e.Available, Table: e.Table, Counted: e.Counted, Window: secs(e.Window), Since: secs(e.Since), Rows: rows, Error: e.Err}
}

// verdictJSON is one offender (plan, run).
type verdictJSON struct {
	Subject     string  `json:"subject"`
	Rule        string  `json:"rule"`
	State       string  `json:"state"`
	Count       int     `json:"count"`
	Threshold   int     `json:"threshold"`
	Hits        int     `json:"hits"`
	Samples     int     `json:"samples"`
	SourceCount int     `json:"source_count"`
	BanFor      float64 `json:"ban_for_seconds"`
	Reason      string  `json:"reason"`
}

func toJSON(v detect.Verdict) verdictJSON {
	return verdictJSON{Subject: v.Subject.String(), Rule: v.Rule, State: string(v.State), Count: v.Count,
		Threshold: v.Threshold, Hits: v.Hits, Samples: v.Samples, SourceCount: v.Sources, BanFor: secs(v.BanFor), Reason: v.Reason}
}

func verdictsJSON(vs []detect.Verdict) []verdictJSON {
	out := make([]verdictJSON, 0, len(vs))
	for _, v := range vs {
		out = append(out, toJSON(v))
	}
	return out
}

// sparedJSON is an offender the guard or the classification spared.
type sparedJSON struct {
	verdictJSON
	Why string `json:"why"`
}

// omittedJSON is a ban left out of the ruleset, and why.
type omittedJSON struct {
	Subject string `json:"subject"`
	Why     string `json:"why"`
}

// banJSON is one ban: planned (plan), applied (ban) or active (status,
// with expires_seconds: the time left, 0 for a ban that never expires).
type banJSON struct {
	Prefix  string   `json:"prefix"`
	Timeout float64  `json:"timeout_seconds"`
	Expires *float64 `json:"expires_seconds,omitempty"`
	Reason  string   `json:"reason"`
}

func bansJSON(bans []rules.Ban) []banJSON {
	out := make([]banJSON, 0, len(bans))
	for _, b := range bans {
		out = append(out, banJSON{Prefix: b.Prefix.String(), Timeout: secs(b.Timeout), Reason: b.Reason})
	}
	return out
}

// planDoc is `plan --json`.
type planDoc struct {
	Policy         string             `json:"policy"`
	Backend        string             `json:"backend"`
	BackendWhy     string             `json:"backend_why"`
	BackendAssumed bool               `json:"backend_assumed"`
	Sampler        string             `json:"sampler"`
	SamplerWhy     string             `json:"sampler_why"`
	Samples        int                `json:"samples"`
	SourceCount    int                `json:"source_count"`
	Malformed      int                `json:"malformed"`
	Verdicts       []verdictJSON      `json:"verdicts"`
	Spared         []sparedJSON       `json:"spared"`
	Omitted        []omittedJSON      `json:"omitted"`
	Bans           []banJSON          `json:"bans"`
	Restored       int                `json:"restored"`
	Format         string             `json:"format"`
	Ruleset        string             `json:"ruleset"`
	Classification classificationJSON `json:"classification"`
	Sensor         sensorDoc          `json:"sensor"`
	// Moves are the kernel's base chains a run would move, add or remove.
	Moves []string `json:"moves"`
	// Upstream is present when [upstream] is enabled.
	Upstream *upstreamPlanDoc `json:"upstream,omitempty"`
}

func planJSON(d *engine.Decision, format, script string) planDoc {
	sp := make([]sparedJSON, 0, len(d.Report.Spared))
	for _, s := range d.Report.Spared {
		sp = append(sp, sparedJSON{toJSON(s.Verdict), s.Why})
	}
	om := make([]omittedJSON, 0, len(d.Omitted))
	for _, o := range d.Omitted {
		om = append(om, omittedJSON{Subject: o.Prefix.String(), Why: o.Why})
	}
	return planDoc{
		Policy: d.Policy.Source, Sampler: d.Sampler, SamplerWhy: d.SamplerWhy,
		Samples: d.Report.Samples, SourceCount: d.Report.Sources, Malformed: d.Report.Malformed,
		Verdicts: verdictsJSON(d.Report.Verdicts), Spared: sp, Omitted: om, Bans: bansJSON(d.Ruleset.Bans),
		Restored: d.Restored, Format: format, Ruleset: script, Classification: classJSON(d.Class),
		Sensor: sensorJSON(d.Sensor), Moves: nonNil(d.Moves),
	}
}

// runDoc is `run --json`, and each cycle of `watch --json`.
type runDoc struct {
	Backend        string             `json:"backend"`
	BackendWhy     string             `json:"backend_why"`
	SourceCount    int                `json:"source_count"`
	Verdicts       []verdictJSON      `json:"verdicts"`
	Added          int                `json:"added"`
	Refreshed      int                `json:"refreshed"`
	Created        bool               `json:"created"`
	Restored       int                `json:"restored"`
	Unchanged      bool               `json:"unchanged"`
	Expired        int                `json:"expired"`
	SysctlChanges  int                `json:"sysctl_changes"`
	Classification classificationJSON `json:"classification"`
}

// countersJSON are the TcpExt counters over a sampling window (sample).
type countersJSON struct {
	SyncookiesSent       int64 `json:"syncookies_sent"`
	SyncookiesRecv       int64 `json:"syncookies_recv"`
	SyncookiesFailed     int64 `json:"syncookies_failed"`
	ListenOverflows      int64 `json:"listen_overflows"`
	ListenDrops          int64 `json:"listen_drops"`
	TCPReqQFullDrop      int64 `json:"tcp_req_q_full_drop"`
	TCPReqQFullDoCookies int64 `json:"tcp_req_q_full_do_cookies"`
}

// sampleDoc is `sample --json`.
type sampleDoc struct {
	Samplers       []string           `json:"samplers"`
	SamplerWhy     string             `json:"sampler_why"`
	Samples        int                `json:"samples"`
	Window         float64            `json:"window_seconds"`
	CountersDelta  countersJSON       `json:"counters_delta"`
	Classification classificationJSON `json:"classification"`
	Sources        []engine.SourceRow `json:"sources"`
	Sensor         sensorDoc          `json:"sensor"`
}

// sysctlJSON is one managed kernel setting (check): current is null when
// it cannot be read, and error then says why ("" otherwise).
type sysctlJSON struct {
	Name    string `json:"name"`
	Key     string `json:"key"`
	Want    int    `json:"want"`
	Current *int   `json:"current"`
	Drift   bool   `json:"drift"`
	Error   string `json:"error"`
}

func sysctlsJSON(states []sysctl.State) []sysctlJSON {
	out := make([]sysctlJSON, 0, len(states))
	for _, s := range states {
		j := sysctlJSON{Name: s.Name, Key: s.Key, Want: s.Want, Drift: s.Drift, Error: s.Err}
		if n, err := strconv.Atoi(s.Current); err == nil && s.Err == "" {
			j.Current = &n
		} else if s.Err == "" && s.Current != "" {
			j.Error = fmt.Sprintf("not a number: %q", s.Current)
		}
		out = append(out, j)
	}
	return out
}

// checkDoc is `check --json`; with --online, a refused or unreachable LAPI
// is also its "error" (exit 1).
type checkDoc struct {
	Policy  string       `json:"policy"`
	OK      bool         `json:"ok"`
	Rules   int          `json:"rules"`
	Backend string       `json:"backend"`
	Sysctl  []sysctlJSON `json:"sysctl"`
	Online  []string     `json:"online"`
	Error   *errorJSON   `json:"error,omitempty"`
}

// counterJSON is the drop counter of one of synban's rules (status).
type counterJSON struct {
	Chain   string `json:"chain"`
	Rule    string `json:"rule"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// statusDoc is `status --json`.
type statusDoc struct {
	Backend       string        `json:"backend"`
	BackendWhy    string        `json:"backend_why"`
	Bans          []banJSON     `json:"bans"`
	Counters      []counterJSON `json:"counters"`
	Missing       []string      `json:"missing"`
	StoredBans    int           `json:"stored_bans"`
	StoredMissing []string      `json:"stored_missing"`
	StateLoaded   bool          `json:"state_loaded"`
	Notes         []string      `json:"notes"`
	// Upstream is present when [upstream] is enabled or its speaker ran.
	Upstream *upstreamStatusDoc `json:"upstream,omitempty"`
	// XDP is present when the XDP fast path has maps pinned.
	XDP *xdpStatusJSON `json:"xdp,omitempty"`
}

// xdpEntryJSON is one XDP map entry with its drop counter (status,
// explain); expires_seconds is null for an entry that never expires.
type xdpEntryJSON struct {
	Prefix  string   `json:"prefix"`
	Packets uint64   `json:"packets"`
	Expires *float64 `json:"expires_seconds"`
}

// xdpStatusJSON is status's "xdp": the interfaces the drop program is on,
// its mode and the map entries.
type xdpStatusJSON struct {
	Mode     string         `json:"mode"`
	Attached []string       `json:"attached"`
	Entries  []xdpEntryJSON `json:"entries"`
}

func xdpEntryOf(d engine.XDPDrop, now time.Time) xdpEntryJSON {
	e := xdpEntryJSON{Prefix: d.Prefix.String(), Packets: d.Packets}
	if !d.Expires.IsZero() {
		left := secs(max(d.Expires.Sub(now), 0))
		e.Expires = &left
	}
	return e
}

func xdpStatusOf(x *engine.XDPState, now time.Time) *xdpStatusJSON {
	if x == nil {
		return nil
	}
	out := &xdpStatusJSON{Mode: x.Mode, Attached: nonNil(x.Attached), Entries: make([]xdpEntryJSON, 0, len(x.Entries))}
	for _, d := range x.Entries {
		out.Entries = append(out.Entries, xdpEntryOf(d, now))
	}
	return out
}

func statusOf(st *engine.Status) statusDoc {
	bans := make([]banJSON, 0, len(st.Bans))
	for _, b := range st.Bans {
		left := secs(b.Expires)
		bans = append(bans, banJSON{Prefix: b.Prefix.String(), Timeout: secs(b.Timeout), Expires: &left, Reason: b.Reason})
	}
	counters := make([]counterJSON, 0, len(st.Counters))
	for _, c := range st.Counters {
		counters = append(counters, counterJSON{Chain: c.Chain, Rule: c.Rule, Packets: c.Packets, Bytes: c.Bytes})
	}
	return statusDoc{Backend: st.Choice.Name, BackendWhy: st.Choice.Why, Bans: bans, Counters: counters,
		Missing: nonNil(st.Missing), StoredBans: st.Stored, StoredMissing: prefixStrings(st.Absent),
		StateLoaded: st.StateLoaded, Notes: nonNil(st.Notes), XDP: xdpStatusOf(st.XDP, time.Now())}
}

// banDoc is `ban --json`: the bans applied (timeouts may be shorter than
// asked: ban.max_duration), and how many subjects of a --from-file list
// were inside another one.
type banDoc struct {
	Backend   string    `json:"backend"`
	Requested float64   `json:"requested_seconds"`
	Bans      []banJSON `json:"bans"`
	Covered   int       `json:"covered"`
}

// unbanDoc is `unban --json`.
type unbanDoc struct {
	Backend   string `json:"backend"`
	Requested int    `json:"requested"`
	Unbanned  int    `json:"unbanned"`
}

// flushDoc is `flush --json`.
type flushDoc struct {
	Backend string `json:"backend"`
}

// versionDoc is `version --json`.
type versionDoc struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Modified bool   `json:"modified"`
	Go       string `json:"go"`
}

// fileJSON is one file render prints (path "") or writes (path set).
type fileJSON struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Text string `json:"text"`
}

// renderDoc is `render KIND --json`.
type renderDoc struct {
	Kind  string     `json:"kind"`
	Files []fileJSON `json:"files"`
}

// policyDoc is `policy default --json` and `policy show --json`: the
// policy's source and its TOML text.
type policyDoc struct {
	Policy string `json:"policy"`
	TOML   string `json:"toml"`
}

// ruleCheckJSON is one rule judged on one subject over the window
// (explain): counts and source_counts per sample.
type ruleCheckJSON struct {
	Rule         string   `json:"rule"`
	State        string   `json:"state"`
	Ports        []uint16 `json:"ports"`
	Threshold    int      `json:"threshold"`
	Counts       []int    `json:"counts"`
	SourceCounts []int    `json:"source_counts"`
	Peak         int      `json:"peak"`
	Hits         int      `json:"hits"`
	Crossed      bool     `json:"crossed"`
}

func ruleChecksJSON(rs []engine.RuleCheck) []ruleCheckJSON {
	out := make([]ruleCheckJSON, 0, len(rs))
	for _, r := range rs {
		out = append(out, ruleCheckJSON{Rule: r.Rule, State: string(r.State), Ports: nonNil(r.Ports), Threshold: r.Threshold,
			Counts: nonNil(r.Counts), SourceCounts: nonNil(r.Sources), Peak: r.Peak, Hits: r.Hits, Crossed: r.Crossed})
	}
	return out
}

// guardEntryJSON is the never-ban entry protecting a subject (explain).
type guardEntryJSON struct {
	Prefix string `json:"prefix"`
	Why    string `json:"why"`
	Reason string `json:"reason"`
}

func guardJSON(g *policy.Protected) *guardEntryJSON {
	if g == nil {
		return nil
	}
	return &guardEntryJSON{Prefix: g.Prefix.String(), Why: g.Why, Reason: g.Reason()}
}

func verdictOrNil(v *detect.Verdict) *verdictJSON {
	if v == nil {
		return nil
	}
	j := toJSON(*v)
	return &j
}

// seenJSON is what one sample saw of explain's subject.
type seenJSON struct {
	SynRecv     int `json:"syn_recv"`
	Established int `json:"established"`
	Other       int `json:"other"`
	SourceCount int `json:"source_count"`
}

// prefixCheckJSON is the aggregation prefix holding explain's subject.
type prefixCheckJSON struct {
	Prefix    string          `json:"prefix"`
	Threshold int             `json:"threshold"`
	Crossed   bool            `json:"crossed"`
	Rules     []ruleCheckJSON `json:"rules"`
	Guard     *guardEntryJSON `json:"guard"`
}

// explainSparedJSON says why explain's offender is not banned.
type explainSparedJSON struct {
	Subject string          `json:"subject"`
	Why     string          `json:"why"`
	Guard   *guardEntryJSON `json:"guard"`
}

// storedBanJSON is the state store's ban (explain): since is RFC 3339,
// expires_seconds the time left (0 when it never expires: expires false).
type storedBanJSON struct {
	Prefix  string  `json:"prefix"`
	Since   string  `json:"since"`
	Left    float64 `json:"expires_seconds"`
	Expires bool    `json:"expires"`
	Reason  string  `json:"reason"`
	Rule    string  `json:"rule"`
	Backend string  `json:"backend"`
	Forced  bool    `json:"forced"`
	Origin  string  `json:"origin"`
}

// historyJSON is the escalation record (explain).
type historyJSON struct {
	Bans    int     `json:"bans"`
	LastBan string  `json:"last_ban"`
	LastFor float64 `json:"last_for_seconds"`
}

// kernelBanJSON is the ban in the kernel covering explain's subject: drops
// is null when its element keeps no counter.
type kernelBanJSON struct {
	Prefix  string  `json:"prefix"`
	Expires float64 `json:"expires_seconds"`
	Reason  string  `json:"reason"`
	Drops   *uint64 `json:"drops"`
}

// explainDoc is `explain --json`: absent parts are null.
type explainDoc struct {
	Subject        string             `json:"subject"`
	Outcome        string             `json:"outcome"`
	Policy         string             `json:"policy"`
	Sampler        string             `json:"sampler"`
	SamplerWhy     string             `json:"sampler_why"`
	Samples        int                `json:"samples"`
	MinHits        int                `json:"min_hits"`
	Seen           []seenJSON         `json:"seen"`
	Rules          []ruleCheckJSON    `json:"rules"`
	Prefix         *prefixCheckJSON   `json:"prefix"`
	Guard          *guardEntryJSON    `json:"guard"`
	Classification classificationJSON `json:"classification"`
	Offence        *verdictJSON       `json:"offence"`
	Spared         *explainSparedJSON `json:"spared"`
	Inside         []verdictJSON      `json:"inside"`
	Escalation     string             `json:"escalation"`
	Decided        *verdictJSON       `json:"decided"`
	Planned        *banJSON           `json:"planned"`
	Omitted        *omittedJSON       `json:"omitted"`
	StateLoaded    bool               `json:"state_loaded"`
	Stored         *storedBanJSON     `json:"stored"`
	History        *historyJSON       `json:"history"`
	Backend        string             `json:"backend"`
	BackendError   string             `json:"backend_error"`
	Kernel         *kernelBanJSON     `json:"kernel"`
	Sensor         *sensorRowJSON     `json:"sensor"`
	SensorRead     bool               `json:"sensor_read"`
	Summary        []string           `json:"summary"`
	// XDP is the XDP map entry matching the subject (null: none); present
	// only when the fast path's maps were read.
	XDP *xdpEntryJSON `json:"xdp,omitempty"`
}

// explainJSON is explain's --json document; now dates the stored ban's
// time left.
func explainJSON(x *engine.Explanation, now time.Time) explainDoc {
	seen := make([]seenJSON, 0, len(x.Seen))
	for _, s := range x.Seen {
		seen = append(seen, seenJSON{SynRecv: s.SynRecv, Established: s.Established, Other: s.Other, SourceCount: s.Sources})
	}
	doc := explainDoc{
		Subject: x.Subject.String(), Outcome: x.Outcome, Policy: x.Policy, Sampler: x.Sampler, SamplerWhy: x.SamplerWhy,
		Samples: x.Samples, MinHits: x.MinHits, Seen: seen, Rules: ruleChecksJSON(x.Rules), Guard: guardJSON(x.Guard),
		Classification: classJSON(x.Class), Offence: verdictOrNil(x.Offence), Inside: verdictsJSON(x.Inside),
		Escalation: x.Escalation, Decided: verdictOrNil(x.Decided), StateLoaded: x.StateLoaded,
		Backend: x.Backend.Name, BackendError: x.BackendErr, SensorRead: x.SensorRead, Summary: nonNil(x.Summary),
	}
	if pc := x.Prefix; pc != nil {
		doc.Prefix = &prefixCheckJSON{Prefix: pc.Prefix.String(), Threshold: pc.Threshold, Crossed: pc.Crossed,
			Rules: ruleChecksJSON(pc.Rules), Guard: guardJSON(pc.Guard)}
	}
	if x.Spared != nil {
		doc.Spared = &explainSparedJSON{Subject: x.Spared.Verdict.Subject.String(), Why: x.Spared.Why, Guard: guardJSON(guardOf(x.Spared))}
	}
	if b := x.Planned; b != nil {
		doc.Planned = &banJSON{Prefix: b.Prefix.String(), Timeout: secs(b.Timeout), Reason: b.Reason}
	}
	if om := x.Omitted; om != nil {
		doc.Omitted = &omittedJSON{Subject: om.Prefix.String(), Why: om.Why}
	}
	if b := x.Stored; b != nil {
		left := 0.0
		if !b.Until.IsZero() {
			left = secs(max(b.Until.Sub(now), 0))
		}
		doc.Stored = &storedBanJSON{Prefix: b.Prefix.String(), Since: b.Since.UTC().Format(time.RFC3339), Left: left,
			Expires: !b.Until.IsZero(), Reason: b.Reason, Rule: b.Rule, Backend: b.Backend, Forced: b.Forced, Origin: b.Origin}
	}
	if r := x.History; r != nil {
		doc.History = &historyJSON{Bans: r.Bans, LastBan: r.LastBan.UTC().Format(time.RFC3339), LastFor: secs(r.LastFor)}
	}
	if k := x.Kernel; k != nil {
		kb := &kernelBanJSON{Prefix: k.Prefix.String(), Expires: secs(k.Expires), Reason: k.Reason}
		if x.HasDrops {
			drops := x.Drops
			kb.Drops = &drops
		}
		doc.Kernel = kb
	}
	if x.XDP != nil {
		e := xdpEntryOf(*x.XDP, now)
		doc.XDP = &e
	}
	if r := x.Sensor; r != nil {
		doc.Sensor = &sensorRowJSON{Subject: r.Subject.String(), Packets: r.Packets, InWindow: r.InWindow, SinceLast: r.SinceLast, Rate: r.Rate}
	}
	return doc
}

// topDoc is `top --once --json` (or `top --json`): one refresh.
type topDoc struct {
	At             string             `json:"at"`
	Sampler        string             `json:"sampler"`
	Samples        int                `json:"samples"`
	SourceCount    int                `json:"source_count"`
	Classification classificationJSON `json:"classification"`
	Backend        string             `json:"backend"`
	BackendError   string             `json:"backend_error"`
	RuleDrops      []string           `json:"rule_drops"`
	Rows           []topRow           `json:"rows"`
}

func topJSON(s *topSnapshot, rows []topRow) topDoc {
	return topDoc{At: s.At.UTC().Format(time.RFC3339), Sampler: s.Sampler, Samples: s.Samples, SourceCount: s.Sources,
		Classification: classJSON(s.Class), Backend: s.Backend, BackendError: s.BackendErr,
		RuleDrops: nonNil(s.RuleDrops), Rows: nonNil(rows)}
}

// announcementJSON is one upstream announcement (plan, status): cli is the
// gobgp command that makes it; source and next_hop are "" when absent,
// rate_bytes is bytes (not bits) per second.
type announcementJSON struct {
	CLI         string   `json:"cli"`
	Kind        string   `json:"kind"`
	Family      string   `json:"family"`
	Destination string   `json:"destination"`
	Source      string   `json:"source"`
	Ports       []uint16 `json:"ports"`
	Action      string   `json:"action"`
	RateBytes   uint64   `json:"rate_bytes"`
	Communities []string `json:"communities"`
	NextHop     string   `json:"next_hop"`
}

func announcementOf(an upstream.Announcement) announcementJSON {
	j := announcementJSON{CLI: an.CLI(), Kind: string(an.Kind), Family: an.Family(), Destination: an.Destination.String(),
		Ports: nonNil(an.Ports), Action: string(an.Action), RateBytes: an.RateBytes, Communities: make([]string, 0, len(an.Communities))}
	if an.Source.IsValid() {
		j.Source = an.Source.String()
	}
	if an.NextHop.IsValid() {
		j.NextHop = an.NextHop.String()
	}
	for _, c := range an.Communities {
		j.Communities = append(j.Communities, c.String())
	}
	return j
}

// refusedJSON is an announcement upstream.Check refused, and why.
type refusedJSON struct {
	announcementJSON
	Why string `json:"why"`
}

// upstreamPlanDoc is plan's "upstream": what a run would hand the speaker
// (rates in bits per second; error "" when measuring went well).
type upstreamPlanDoc struct {
	Reason        string             `json:"reason"`
	UplinkBps     float64            `json:"uplink_bps"`
	CapacityBps   float64            `json:"capacity_bps"`
	Saturated     bool               `json:"saturated"`
	Announcements []announcementJSON `json:"announcements"`
	Refused       []refusedJSON      `json:"refused"`
	Error         string             `json:"error"`
}

// upstreamPlanJSON is the plan's upstream part in --json; nil without a
// plan.
func upstreamPlanJSON(plan *engine.UpstreamPlan) *upstreamPlanDoc {
	if plan == nil {
		return nil
	}
	doc := &upstreamPlanDoc{Reason: plan.Decision.Reason, UplinkBps: plan.Input.UplinkBps, CapacityBps: plan.Input.CapacityBps,
		Saturated: plan.Input.Saturated(), Announcements: make([]announcementJSON, 0, len(plan.Announcements)),
		Refused: make([]refusedJSON, 0, len(plan.Refused))}
	for _, an := range plan.Announcements {
		doc.Announcements = append(doc.Announcements, announcementOf(an))
	}
	for _, r := range plan.Refused {
		doc.Refused = append(doc.Refused, refusedJSON{announcementOf(r.Announcement), r.Reason})
	}
	if plan.Err != nil {
		doc.Error = plan.Err.Error()
	}
	return doc
}

// neighborJSON is one BGP session of the speaker (status): advertised
// counts the routes sent per family.
type neighborJSON struct {
	Address    string            `json:"address"`
	PeerASN    uint32            `json:"peer_asn"`
	State      string            `json:"state"`
	Families   []string          `json:"families"`
	Advertised map[string]uint64 `json:"advertised"`
}

// liveAnnouncementJSON is an announcement the speaker holds, age_seconds
// old (as it measured, plus its status file's age), and how each neighbor
// carrying its family has it.
type liveAnnouncementJSON struct {
	announcementJSON
	Age       float64                 `json:"age_seconds"`
	Neighbors []announcementNeighJSON `json:"neighbors"`
}

// announcementNeighJSON is one announcement on one neighbor: session_up
// (established), sent (in its adj-rib-out on that session), received (it
// sent the route back, as a route server may; false says nothing).
type announcementNeighJSON struct {
	Address   string `json:"address"`
	SessionUp bool   `json:"session_up"`
	Sent      bool   `json:"sent"`
	Received  bool   `json:"received"`
}

// speakerJSON is what the speaker last wrote in its status file.
type speakerJSON struct {
	PID           int                    `json:"pid"`
	StatusAge     float64                `json:"status_age_seconds"`
	Neighbors     []neighborJSON         `json:"neighbors"`
	Announcements []liveAnnouncementJSON `json:"announcements"`
	Deferred      int                    `json:"deferred"`
}

// upstreamStatusDoc is status's "upstream": running is false when no
// speaker left a status file (speaker null) or its file is stale.
type upstreamStatusDoc struct {
	Running bool         `json:"running"`
	Speaker *speakerJSON `json:"speaker"`
}

func upstreamStatusJSON(st *upstream.StatusReport, now time.Time) *upstreamStatusDoc {
	doc := &upstreamStatusDoc{Running: speakerAlive(st, now)}
	if st == nil {
		return doc
	}
	fileAge := max(now.Sub(st.Written), 0)
	sp := &speakerJSON{PID: st.PID, StatusAge: secs(fileAge), Deferred: st.Deferred,
		Neighbors: make([]neighborJSON, 0, len(st.Neighbors)), Announcements: make([]liveAnnouncementJSON, 0, len(st.Announcements))}
	for _, n := range st.Neighbors {
		adv := make(map[string]uint64, len(n.Advertised))
		for k, v := range n.Advertised {
			adv[k] = v
		}
		sp.Neighbors = append(sp.Neighbors, neighborJSON{Address: n.Address, PeerASN: n.PeerASN, State: n.State, Families: nonNil(n.Families), Advertised: adv})
	}
	for _, l := range st.Announcements {
		la := liveAnnouncementJSON{announcementOf(l.Announcement), secs(l.Age + fileAge), make([]announcementNeighJSON, 0, len(l.Neighbors))}
		for _, n := range l.Neighbors {
			la.Neighbors = append(la.Neighbors, announcementNeighJSON{Address: n.Address, SessionUp: n.SessionUp, Sent: n.Sent, Received: n.Received})
		}
		sp.Announcements = append(sp.Announcements, la)
	}
	doc.Speaker = sp
	return doc
}
