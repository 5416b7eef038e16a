package jsondoc

import "github.com/synban/synban/engine"

// Run is `run --json`, and each cycle of `watch --json`.
type Run struct {
	Backend        string         `json:"backend"`
	BackendWhy     string         `json:"backend_why"`
	SourceCount    int            `json:"source_count"`
	Verdicts       []Verdict      `json:"verdicts"`
	Added          int            `json:"added"`
	Refreshed      int            `json:"refreshed"`
	Created        bool           `json:"created"`
	Restored       int            `json:"restored"`
	Unchanged      bool           `json:"unchanged"`
	Expired        int            `json:"expired"`
	SysctlChanges  int            `json:"sysctl_changes"`
	Classification Classification `json:"classification"`
}

// RunOf is what a run did.
func RunOf(out *engine.Outcome) Run {
	d, res := out.Decision, out.Result
	return Run{
		Backend: out.Choice.Name, BackendWhy: out.Choice.Why, SourceCount: d.Report.Sources,
		Verdicts: VerdictsOf(d.Report.Verdicts), Added: res.Added, Refreshed: res.Refreshed,
		Created: res.Created, Restored: d.Restored, Unchanged: d.Unchanged, Expired: out.Expired,
		SysctlChanges: out.SysctlChanges, Classification: ClassificationOf(d.Class),
	}
}
