package jsondoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestGoldensValidate: every golden of this package is a valid document of
// docs/synban.schema.json, so the fixed values above exercise the contract
// as published (null parts and the upstream and XDP parts included), not
// only what this package happens to write.
func TestGoldensValidate(t *testing.T) {
	const file = "../../../../docs/synban.schema.json"
	c := jsonschema.NewCompiler()
	// The golden's name up to its first "_" is its command; policy's
	// document is policy_default's (policy_show is the same shape).
	defOf := map[string]string{"policy": "policy_default"}
	goldens, err := filepath.Glob("testdata/*.json")
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no goldens: %v", err)
	}
	for _, g := range goldens {
		name, _, _ := strings.Cut(strings.TrimSuffix(filepath.Base(g), ".json"), "_")
		def := name
		if d, ok := defOf[name]; ok {
			def = d
		}
		sch, err := c.Compile(file + "#/$defs/" + def)
		if err != nil {
			t.Fatalf("%s: $defs/%s: %v", file, def, err)
		}
		f, err := os.Open(g)
		if err != nil {
			t.Fatal(err)
		}
		inst, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", g, err)
		}
		if err := sch.Validate(inst); err != nil {
			t.Errorf("%s is not a valid $defs/%s: %v", g, def, err)
		}
	}
}
