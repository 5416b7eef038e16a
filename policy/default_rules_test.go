package policy

import (
	"strings"
	"testing"
)

// TestDefaultSynRateFollowsMeter: the default rule list bans a source over
// the meter (syn-rate); a file that turns the meter off and lists no rules
// keeps the other default rules instead of failing on a rule it never
// wrote, while a syn_rate rule the file lists itself still needs the meter.
func TestDefaultSynRateFollowsMeter(t *testing.T) {
	names := func(p *Policy) string {
		var out []string
		for _, r := range p.Rules {
			out = append(out, r.Name)
		}
		return strings.Join(out, ",")
	}
	if got := names(Default()); got != "syn-flood,conn-flood,syn-rate" {
		t.Errorf("default rules %s", got)
	}
	if r, ok := Default().RuleByName("syn-rate"); !ok || r.State != StateSynRate || r.Threshold != 200 || len(r.Ports) != 0 {
		t.Errorf("default syn-rate rule %+v", r)
	}
	p, err := Parse("off.toml", []byte("[meter]\nenabled = false\n"))
	if err != nil {
		t.Fatalf("meter off, default rules: %v", err)
	}
	if got := names(p); got != "syn-flood,conn-flood" {
		t.Errorf("meter off: rules %s, want the two that need no meter", got)
	}
	_, err = Parse("own.toml", []byte("[meter]\nenabled = false\n\n[[rule]]\nname = \"r\"\nstate = \"syn_rate\"\nthreshold = 10\n"))
	if err == nil || !strings.Contains(err.Error(), "needs [meter] enabled = true") {
		t.Errorf("a listed syn_rate rule without the meter: %v", err)
	}
}
