package jsondoc

import (
	"github.com/synban/synban/engine"
	"github.com/synban/synban/rules/backends"
)

// Plan is `plan --json`.
type Plan struct {
	Policy         string         `json:"policy"`
	Backend        string         `json:"backend"`
	BackendWhy     string         `json:"backend_why"`
	BackendAssumed bool           `json:"backend_assumed"`
	Sampler        string         `json:"sampler"`
	SamplerWhy     string         `json:"sampler_why"`
	Samples        int            `json:"samples"`
	SourceCount    int            `json:"source_count"`
	Malformed      int            `json:"malformed"`
	Verdicts       []Verdict      `json:"verdicts"`
	Spared         []Spared       `json:"spared"`
	Omitted        []Omitted      `json:"omitted"`
	Bans           []BanEntry     `json:"bans"`
	Restored       int            `json:"restored"`
	Format         string         `json:"format"`
	Ruleset        string         `json:"ruleset"`
	Classification Classification `json:"classification"`
	Sensor         Sensor         `json:"sensor"`
	// Moves are the kernel's base chains a run would move, add or remove.
	Moves []string `json:"moves"`
	// Upstream is present when [upstream] is enabled.
	Upstream *UpstreamPlan `json:"upstream,omitempty"`
}

// PlanOf is the plan of d for the backend choice, whose ruleset is script
// in format.
func PlanOf(d *engine.Decision, choice backends.Choice, format, script string) Plan {
	sp := make([]Spared, 0, len(d.Report.Spared))
	for _, s := range d.Report.Spared {
		sp = append(sp, Spared{VerdictOf(s.Verdict), s.Why})
	}
	om := make([]Omitted, 0, len(d.Omitted))
	for _, o := range d.Omitted {
		om = append(om, Omitted{Subject: o.Prefix.String(), Why: o.Why})
	}
	return Plan{
		Policy: d.Policy.Source, Backend: choice.Name, BackendWhy: choice.Why, BackendAssumed: choice.Assumed,
		Sampler: d.Sampler, SamplerWhy: d.SamplerWhy,
		Samples: d.Report.Samples, SourceCount: d.Report.Sources, Malformed: d.Report.Malformed,
		Verdicts: VerdictsOf(d.Report.Verdicts), Spared: sp, Omitted: om, Bans: BansOf(d.Ruleset.Bans),
		Restored: d.Restored, Format: format, Ruleset: script, Classification: ClassificationOf(d.Class),
		Sensor: SensorOf(d.Sensor), Moves: nonNil(d.Moves), Upstream: UpstreamPlanOf(d.Upstream),
	}
}
