package jsondoc

import (
	"time"

	"github.com/synban/synban/engine"
	"github.com/synban/synban/upstream"
)

// Counter is the drop counter of one of synban's rules (status).
type Counter struct {
	Chain   string `json:"chain"`
	Rule    string `json:"rule"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Status is `status --json`.
type Status struct {
	Backend       string     `json:"backend"`
	BackendWhy    string     `json:"backend_why"`
	Bans          []BanEntry `json:"bans"`
	Counters      []Counter  `json:"counters"`
	Missing       []string   `json:"missing"`
	StoredBans    int        `json:"stored_bans"`
	StoredMissing []string   `json:"stored_missing"`
	StateLoaded   bool       `json:"state_loaded"`
	Notes         []string   `json:"notes"`
	// Upstream is present when [upstream] is enabled or its speaker ran.
	Upstream *UpstreamStatus `json:"upstream,omitempty"`
	// XDP is present when the XDP fast path has maps pinned.
	XDP *XDPStatus `json:"xdp,omitempty"`
}

// XDPEntry is one XDP map entry with its drop counter (status, explain);
// expires_seconds is null for an entry that never expires.
type XDPEntry struct {
	Prefix  string   `json:"prefix"`
	Packets uint64   `json:"packets"`
	Expires *float64 `json:"expires_seconds"`
}

// XDPStatus is status's "xdp": the interfaces the drop program is on, its
// mode and the map entries.
type XDPStatus struct {
	Mode     string     `json:"mode"`
	Attached []string   `json:"attached"`
	Entries  []XDPEntry `json:"entries"`
}

func xdpEntryOf(d engine.XDPDrop, now time.Time) XDPEntry {
	e := XDPEntry{Prefix: d.Prefix.String(), Packets: d.Packets}
	if !d.Expires.IsZero() {
		left := secs(max(d.Expires.Sub(now), 0))
		e.Expires = &left
	}
	return e
}

func xdpStatusOf(x *engine.XDPState, now time.Time) *XDPStatus {
	if x == nil {
		return nil
	}
	out := &XDPStatus{Mode: x.Mode, Attached: nonNil(x.Attached), Entries: make([]XDPEntry, 0, len(x.Entries))}
	for _, d := range x.Entries {
		out.Entries = append(out.Entries, xdpEntryOf(d, now))
	}
	return out
}

// StatusOf is status's document at now (which dates the XDP entries'
// and the speaker's ages); up is the speaker's status file (nil: none),
// shown when it exists or withUpstream ([upstream] is enabled).
func StatusOf(st *engine.Status, up *upstream.StatusReport, withUpstream bool, now time.Time) Status {
	bans := make([]BanEntry, 0, len(st.Bans))
	for _, b := range st.Bans {
		left := secs(b.Expires)
		bans = append(bans, BanEntry{Prefix: b.Prefix.String(), Timeout: secs(b.Timeout), Expires: &left, Reason: b.Reason})
	}
	counters := make([]Counter, 0, len(st.Counters))
	for _, c := range st.Counters {
		counters = append(counters, Counter{Chain: c.Chain, Rule: c.Rule, Packets: c.Packets, Bytes: c.Bytes})
	}
	doc := Status{Backend: st.Choice.Name, BackendWhy: st.Choice.Why, Bans: bans, Counters: counters,
		Missing: nonNil(st.Missing), StoredBans: st.Stored, StoredMissing: prefixStrings(st.Absent),
		StateLoaded: st.StateLoaded, Notes: nonNil(st.Notes), XDP: xdpStatusOf(st.XDP, now)}
	if up != nil || withUpstream {
		doc.Upstream = UpstreamStatusOf(up, now)
	}
	return doc
}
