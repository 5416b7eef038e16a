package jsondoc

import "github.com/synban/synban/engine"

// Counters are the TcpExt counters over a sampling window (sample).
type Counters struct {
	SyncookiesSent       int64 `json:"syncookies_sent"`
	SyncookiesRecv       int64 `json:"syncookies_recv"`
	SyncookiesFailed     int64 `json:"syncookies_failed"`
	ListenOverflows      int64 `json:"listen_overflows"`
	ListenDrops          int64 `json:"listen_drops"`
	TCPReqQFullDrop      int64 `json:"tcp_req_q_full_drop"`
	TCPReqQFullDoCookies int64 `json:"tcp_req_q_full_do_cookies"`
}

// SourceRow is one remote address's peak count of each state over the
// window (sample).
type SourceRow struct {
	Source      string `json:"source"`
	SynRecv     int    `json:"syn_recv"`
	Established int    `json:"established"`
	Other       int    `json:"other"`
	Total       int    `json:"total"`
}

// Sample is `sample --json`.
type Sample struct {
	Samplers       []string       `json:"samplers"`
	SamplerWhy     string         `json:"sampler_why"`
	Samples        int            `json:"samples"`
	Window         float64        `json:"window_seconds"`
	CountersDelta  Counters       `json:"counters_delta"`
	Classification Classification `json:"classification"`
	Sources        []SourceRow    `json:"sources"`
	Sensor         Sensor         `json:"sensor"`
}

// SampleOf is the window w with the rows shown (--top may shorten
// w.Rows).
func SampleOf(w *engine.Sources, shown []engine.SourceRow) Sample {
	c := w.Result.Delta
	rows := make([]SourceRow, 0, len(shown))
	for _, r := range shown {
		rows = append(rows, SourceRow(r))
	}
	return Sample{Samplers: nonNil(w.Samplers), SamplerWhy: w.Why, Samples: len(w.Result.Samples),
		Window: secs(w.Result.Elapsed), CountersDelta: Counters{SyncookiesSent: c.SyncookiesSent,
			SyncookiesRecv: c.SyncookiesRecv, SyncookiesFailed: c.SyncookiesFailed, ListenOverflows: c.ListenOverflows,
			ListenDrops: c.ListenDrops, TCPReqQFullDrop: c.TCPReqQFullDrop, TCPReqQFullDoCookies: c.TCPReqQFullDoCookies},
		Classification: ClassificationOf(w.Class), Sources: rows, Sensor: SensorOf(w.Sensor)}
}
