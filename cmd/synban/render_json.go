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
	"github.com/synban/synban/rules"
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
	// (the sensor, the counters since the previous run);
	// counters_since_seconds is 0 when it used the window's counters only.
	Evidence      []string `json:"evidence"`
	CountersSince float64  `json:"counters_since_seconds"`
	SensorSources int      `json:"sensor_sources"`
}

func classJSON(c detect.Classification) classificationJSON {
	return classificationJSON{Kind: c.Kind, Why: c.Why, HalfOpenSources: c.HalfOpenSources,
		HalfOpenEntries: c.HalfOpenEntries, CookiesSent: c.CookiesSent, CookiesRecv: c.CookiesRecv,
		Advice: nonNil(c.Advice), Evidence: nonNil(c.Evidence), CountersSince: secs(c.CountersSince), SensorSources: c.SensorSources}
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
	// Upstream is present when [upstream] is enabled.
	Upstream any `json:"upstream,omitempty"`
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
		Sensor: sensorJSON(d.Sensor),
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
	Upstream any `json:"upstream,omitempty"`
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
		StateLoaded: st.StateLoaded, Notes: nonNil(st.Notes)}
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
	Version string `json:"version"`
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
