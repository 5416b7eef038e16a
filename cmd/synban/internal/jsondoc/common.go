package jsondoc

import (
	"github.com/synban/synban/detect"
	"github.com/synban/synban/rules"
)

// Classification is a flood classification (plan, run, sample, explain,
// top).
type Classification struct {
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

// ClassificationOf is c in the contract.
func ClassificationOf(c detect.Classification) Classification {
	return Classification{Kind: c.Kind, Why: c.Why, HalfOpenSources: c.HalfOpenSources,
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

// Sensor is the firewall sensor's reading (plan, sample): the sources
// whose SYNs went over the meter, highest rate first.
type Sensor struct {
	Available bool        `json:"available"`
	Table     string      `json:"table"`
	Counted   bool        `json:"counted"`
	Window    float64     `json:"window_seconds"`
	Since     float64     `json:"since_seconds"`
	Rows      []SensorRow `json:"rows"`
	Error     string      `json:"error"`
}

// SensorRow is one source of the sensor (rate: SYNs per second over the
// meter, -1 when the reading has no counts).
type SensorRow struct {
	Subject   string  `json:"subject"`
	Packets   uint64  `json:"packets"`
	InWindow  uint64  `json:"in_window"`
	SinceLast uint64  `json:"since_last"`
	Rate      float64 `json:"rate"`
}

// SensorOf is the sensor's evidence in the contract.
func SensorOf(e detect.SensorEvidence) Sensor {
	rows := make([]SensorRow, 0, len(e.Rows))
	for _, r := range e.Rows {
		rows = append(rows, sensorRowOf(r))
	}
	return Sensor{Available: e.Available, Table: e.Table, Counted: e.Counted, Window: secs(e.Window), Since: secs(e.Since), Rows: rows, Error: e.Err}
}

func sensorRowOf(r detect.SensorRow) SensorRow {
	return SensorRow{Subject: r.Subject.String(), Packets: r.Packets, InWindow: r.InWindow, SinceLast: r.SinceLast, Rate: r.Rate}
}

// Verdict is one offender (plan, run, explain).
type Verdict struct {
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

// VerdictOf is v in the contract.
func VerdictOf(v detect.Verdict) Verdict {
	return Verdict{Subject: v.Subject.String(), Rule: v.Rule, State: string(v.State), Count: v.Count,
		Threshold: v.Threshold, Hits: v.Hits, Samples: v.Samples, SourceCount: v.Sources, BanFor: secs(v.BanFor), Reason: v.Reason}
}

// VerdictsOf is vs in the contract, never null.
func VerdictsOf(vs []detect.Verdict) []Verdict {
	out := make([]Verdict, 0, len(vs))
	for _, v := range vs {
		out = append(out, VerdictOf(v))
	}
	return out
}

func verdictOrNil(v *detect.Verdict) *Verdict {
	if v == nil {
		return nil
	}
	j := VerdictOf(*v)
	return &j
}

// Spared is an offender the guard or the classification spared (plan).
type Spared struct {
	Verdict
	Why string `json:"why"`
}

// Omitted is a ban left out of the ruleset, and why (plan, explain).
type Omitted struct {
	Subject string `json:"subject"`
	Why     string `json:"why"`
}

// BanEntry is one ban: planned (plan, explain), applied (ban) or active
// (status, with expires_seconds: the time left, 0 for a ban that never
// expires).
type BanEntry struct {
	Prefix  string   `json:"prefix"`
	Timeout float64  `json:"timeout_seconds"`
	Expires *float64 `json:"expires_seconds,omitempty"`
	Reason  string   `json:"reason"`
}

func banEntryOf(b rules.Ban) BanEntry {
	return BanEntry{Prefix: b.Prefix.String(), Timeout: secs(b.Timeout), Reason: b.Reason}
}

// BansOf is bans in the contract, never null.
func BansOf(bans []rules.Ban) []BanEntry {
	out := make([]BanEntry, 0, len(bans))
	for _, b := range bans {
		out = append(out, banEntryOf(b))
	}
	return out
}
