package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that decoding never panics, that every failure is a
// *Error, and that a policy that parses also passes Validate.
func FuzzParse(f *testing.F) {
	f.Add(defaultTOML)
	seeds, _ := filepath.Glob(filepath.Join(testdata, "bad", "*.toml"))
	seeds = append(seeds, filepath.Join(testdata, "example.toml"))
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.toml", data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *Error", err, err)
			}
			if p != nil {
				t.Fatalf("policy returned with error %v", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed policy does not re-validate: %v", err)
		}
		for i := range p.Rules {
			if r, ok := p.RuleByName(p.Rules[i].Name); !ok || r != &p.Rules[i] {
				t.Fatalf("RuleByName(%q) did not find rule %d", p.Rules[i].Name, i)
			}
		}
	})
}
