package jsondoc

import (
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/engine"
	"github.com/synban/synban/policy"
)

// RuleCheck is one rule judged on one subject over the window (explain):
// counts and source_counts per sample.
type RuleCheck struct {
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

func ruleChecksOf(rs []engine.RuleCheck) []RuleCheck {
	out := make([]RuleCheck, 0, len(rs))
	for _, r := range rs {
		out = append(out, RuleCheck{Rule: r.Rule, State: string(r.State), Ports: nonNil(r.Ports), Threshold: r.Threshold,
			Counts: nonNil(r.Counts), SourceCounts: nonNil(r.Sources), Peak: r.Peak, Hits: r.Hits, Crossed: r.Crossed})
	}
	return out
}

// GuardEntry is the never-ban entry protecting a subject (explain).
type GuardEntry struct {
	Prefix string `json:"prefix"`
	Why    string `json:"why"`
	Reason string `json:"reason"`
}

func guardOf(g *policy.Protected) *GuardEntry {
	if g == nil {
		return nil
	}
	return &GuardEntry{Prefix: g.Prefix.String(), Why: g.Why, Reason: g.Reason()}
}

// sparedGuard is the guard entry behind a spared offender, nil when it
// was spared for another reason (a spoofed flood).
func sparedGuard(s *detect.Spared) *GuardEntry {
	if !s.By.Prefix.IsValid() {
		return nil
	}
	return guardOf(&s.By)
}

// Seen is what one sample saw of explain's subject.
type Seen struct {
	SynRecv     int `json:"syn_recv"`
	Established int `json:"established"`
	Other       int `json:"other"`
	SourceCount int `json:"source_count"`
}

// PrefixCheck is the aggregation prefix holding explain's subject.
type PrefixCheck struct {
	Prefix    string      `json:"prefix"`
	Threshold int         `json:"threshold"`
	Crossed   bool        `json:"crossed"`
	Rules     []RuleCheck `json:"rules"`
	Guard     *GuardEntry `json:"guard"`
}

// ExplainSpared says why explain's offender is not banned.
type ExplainSpared struct {
	Subject string      `json:"subject"`
	Why     string      `json:"why"`
	Guard   *GuardEntry `json:"guard"`
}

// StoredBan is the state store's ban (explain): since is RFC 3339,
// expires_seconds the time left (0 when it never expires: expires false).
type StoredBan struct {
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

// History is the escalation record (explain).
type History struct {
	Bans    int     `json:"bans"`
	LastBan string  `json:"last_ban"`
	LastFor float64 `json:"last_for_seconds"`
}

// KernelBan is the ban in the kernel covering explain's subject: drops is
// null when its element keeps no counter.
type KernelBan struct {
	Prefix  string  `json:"prefix"`
	Expires float64 `json:"expires_seconds"`
	Reason  string  `json:"reason"`
	Drops   *uint64 `json:"drops"`
}

// Explain is `explain --json`: absent parts are null.
type Explain struct {
	Subject        string         `json:"subject"`
	Outcome        string         `json:"outcome"`
	Policy         string         `json:"policy"`
	Sampler        string         `json:"sampler"`
	SamplerWhy     string         `json:"sampler_why"`
	Samples        int            `json:"samples"`
	MinHits        int            `json:"min_hits"`
	Seen           []Seen         `json:"seen"`
	Rules          []RuleCheck    `json:"rules"`
	Prefix         *PrefixCheck   `json:"prefix"`
	Guard          *GuardEntry    `json:"guard"`
	Classification Classification `json:"classification"`
	Offence        *Verdict       `json:"offence"`
	Spared         *ExplainSpared `json:"spared"`
	Inside         []Verdict      `json:"inside"`
	Escalation     string         `json:"escalation"`
	Decided        *Verdict       `json:"decided"`
	Planned        *BanEntry      `json:"planned"`
	Omitted        *Omitted       `json:"omitted"`
	StateLoaded    bool           `json:"state_loaded"`
	Stored         *StoredBan     `json:"stored"`
	History        *History       `json:"history"`
	Backend        string         `json:"backend"`
	BackendError   string         `json:"backend_error"`
	Kernel         *KernelBan     `json:"kernel"`
	Sensor         *SensorRow     `json:"sensor"`
	SensorRead     bool           `json:"sensor_read"`
	Summary        []string       `json:"summary"`
	// XDP is the XDP map entry matching the subject (null: none); present
	// only when the fast path's maps were read.
	XDP *XDPEntry `json:"xdp,omitempty"`
}

// ExplainOf is explain's document; now dates the stored ban's and the XDP
// entry's time left.
func ExplainOf(x *engine.Explanation, now time.Time) Explain {
	seen := make([]Seen, 0, len(x.Seen))
	for _, s := range x.Seen {
		seen = append(seen, Seen{SynRecv: s.SynRecv, Established: s.Established, Other: s.Other, SourceCount: s.Sources})
	}
	doc := Explain{
		Subject: x.Subject.String(), Outcome: x.Outcome, Policy: x.Policy, Sampler: x.Sampler, SamplerWhy: x.SamplerWhy,
		Samples: x.Samples, MinHits: x.MinHits, Seen: seen, Rules: ruleChecksOf(x.Rules), Guard: guardOf(x.Guard),
		Classification: ClassificationOf(x.Class), Offence: verdictOrNil(x.Offence), Inside: VerdictsOf(x.Inside),
		Escalation: x.Escalation, Decided: verdictOrNil(x.Decided), StateLoaded: x.StateLoaded,
		Backend: x.Backend.Name, BackendError: x.BackendErr, SensorRead: x.SensorRead, Summary: nonNil(x.Summary),
	}
	if pc := x.Prefix; pc != nil {
		doc.Prefix = &PrefixCheck{Prefix: pc.Prefix.String(), Threshold: pc.Threshold, Crossed: pc.Crossed,
			Rules: ruleChecksOf(pc.Rules), Guard: guardOf(pc.Guard)}
	}
	if x.Spared != nil {
		doc.Spared = &ExplainSpared{Subject: x.Spared.Verdict.Subject.String(), Why: x.Spared.Why, Guard: sparedGuard(x.Spared)}
	}
	if b := x.Planned; b != nil {
		e := banEntryOf(*b)
		doc.Planned = &e
	}
	if om := x.Omitted; om != nil {
		doc.Omitted = &Omitted{Subject: om.Prefix.String(), Why: om.Why}
	}
	if b := x.Stored; b != nil {
		left := 0.0
		if !b.Until.IsZero() {
			left = secs(max(b.Until.Sub(now), 0))
		}
		doc.Stored = &StoredBan{Prefix: b.Prefix.String(), Since: b.Since.UTC().Format(time.RFC3339), Left: left,
			Expires: !b.Until.IsZero(), Reason: b.Reason, Rule: b.Rule, Backend: b.Backend, Forced: b.Forced, Origin: b.Origin}
	}
	if r := x.History; r != nil {
		doc.History = &History{Bans: r.Bans, LastBan: r.LastBan.UTC().Format(time.RFC3339), LastFor: secs(r.LastFor)}
	}
	if k := x.Kernel; k != nil {
		kb := &KernelBan{Prefix: k.Prefix.String(), Expires: secs(k.Expires), Reason: k.Reason}
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
		row := sensorRowOf(*r)
		doc.Sensor = &row
	}
	return doc
}
