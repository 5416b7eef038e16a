package jsondoc

import (
	"time"

	"github.com/synban/synban/engine"
)

// TopRow is one row of top (engine.TopRow in the contract).
type TopRow struct {
	Subject     string `json:"subject"`
	Prefix      bool   `json:"prefix"`
	SynRecv     int    `json:"syn_recv"`
	Established int    `json:"established"`
	Total       int    `json:"total"`
	Sources     int    `json:"source_count"`
	// Verdict is "ban", "spared" or "" (none); Why the rule, the guard's
	// kind of protection or the prefix that folds it.
	Verdict string `json:"verdict"`
	Why     string `json:"why"`
	// Banned is set while a ban in the kernel holds the subject: BanLeft
	// seconds left (0: no expiry), Drops its element's drop counter (nil:
	// the element keeps none).
	Banned  bool    `json:"banned"`
	BanLeft float64 `json:"ban_left_seconds"`
	Drops   *uint64 `json:"drops"`
}

// Top is `top --once --json` (or `top --json`): one refresh.
type Top struct {
	At             string         `json:"at"`
	Sampler        string         `json:"sampler"`
	Samples        int            `json:"samples"`
	SourceCount    int            `json:"source_count"`
	Classification Classification `json:"classification"`
	Backend        string         `json:"backend"`
	BackendError   string         `json:"backend_error"`
	RuleDrops      []string       `json:"rule_drops"`
	Rows           []TopRow       `json:"rows"`
}

// TopOf is the refresh s with the rows shown (sorted and filtered from
// s.Rows).
func TopOf(s *engine.TopSnapshot, rows []engine.TopRow) Top {
	out := make([]TopRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, TopRow(r))
	}
	return Top{At: s.At.UTC().Format(time.RFC3339), Sampler: s.Sampler, Samples: s.Samples, SourceCount: s.Sources,
		Classification: ClassificationOf(s.Class), Backend: s.Backend, BackendError: s.BackendErr,
		RuleDrops: nonNil(s.RuleDrops), Rows: out}
}
