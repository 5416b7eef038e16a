package engine

import (
	"github.com/synban/synban/detect"
	"github.com/synban/synban/rules"
)

// Offence is what the compiler takes for a detector's verdict: rules sits
// below detect and knows nothing of its analysis (hits, samples).
func Offence(v detect.Verdict) rules.Offence {
	return rules.Offence{Subject: v.Subject, Rule: v.Rule, State: v.State, Count: v.Count,
		Threshold: v.Threshold, Sources: v.Sources, BanFor: v.BanFor, Reason: v.Reason, Forced: v.Forced}
}

// Offences converts verdicts for rules.Compile, index for index.
func Offences(vs []detect.Verdict) []rules.Offence {
	if vs == nil {
		return nil
	}
	out := make([]rules.Offence, len(vs))
	for i, v := range vs {
		out[i] = Offence(v)
	}
	return out
}
