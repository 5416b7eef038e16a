package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
)

// TestPolicyDefault: `synban policy default` prints policy/default.toml
// byte for byte, comments included, and --json carries the same text.
func TestPolicyDefault(t *testing.T) {
	want, err := os.ReadFile("../../policy/default.toml")
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := runMain(t, "policy", "default")
	if code != exitOK || out != string(want) {
		t.Fatalf("policy default: exit %d, output differs from policy/default.toml (%d vs %d bytes): %s", code, len(out), len(want), errs)
	}
	code, js, errs := runMain(t, "policy", "default", "--json")
	var doc jsondoc.Policy
	if code != exitOK || json.Unmarshal([]byte(js), &doc) != nil || doc.TOML != string(want) {
		t.Fatalf("policy default --json: exit %d, toml differs: %s%s", code, js, errs)
	}
}

// TestPolicyShowRoundTrip: for the default, the annotated example and the
// golden policies, `policy show` prints TOML that check accepts, and
// showing that file again prints the same bytes; every default is filled
// in (a key the input leaves out is shown).
func TestPolicyShowRoundTrip(t *testing.T) {
	inputs, err := filepath.Glob("../../testdata/policy/*.toml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no policies under testdata/policy: %v", err)
	}
	inputs = append([]string{""}, inputs...) // "": the embedded default
	dir := t.TempDir()
	for i, in := range inputs {
		args := []string{"policy", "show"}
		if in != "" {
			args = append(args, "-c", in)
		}
		code, shown, errs := runMain(t, args...)
		if code != exitOK || shown == "" {
			t.Fatalf("synban %v: exit %d: %s", args, code, errs)
		}
		for _, key := range []string{"\nbackend = ", "\n[[rule]]\n", "\nban_for = ", "\nmax_duration = ", "\npull_scenarios_containing = ", "\nhooks = "} {
			if !strings.Contains(shown, key) {
				t.Errorf("synban %v lacks %q:\n%s", args, key, shown)
			}
		}
		if filepath.Base(in) == "example.toml" {
			// The example documents [upstream]: its 64-bit integers and its
			// [[upstream.neighbor]] are shown too.
			for _, key := range []string{"\n[upstream]\n", "\nlocal_asn = 64512\n", "\n[[upstream.neighbor]]\n", "\npeer_asn = 64500\n"} {
				if !strings.Contains(shown, key) {
					t.Errorf("synban %v lacks %q:\n%s", args, key, shown)
				}
			}
		}
		file := filepath.Join(dir, "shown"+string(rune('a'+i))+".toml")
		if err := os.WriteFile(file, []byte(shown), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, out, errs := runMain(t, "check", "-c", file); code != exitOK {
			t.Fatalf("check refuses what policy show %q printed: exit %d: %s%s\n%s", in, code, out, errs, shown)
		}
		code, again, errs := runMain(t, "policy", "show", "-c", file)
		if code != exitOK || again != shown {
			t.Fatalf("policy show of policy show's output (%q) differs: exit %d %s\nfirst:\n%s\nagain:\n%s", in, code, errs, shown, again)
		}
	}
}

// TestPolicyCommandBadInput: bad arguments and bad policies exit 2 with a
// message naming what is wrong.
func TestPolicyCommandBadInput(t *testing.T) {
	bad := writePolicy(t, "[ban]\nduration = \"0s\"\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policy"}, "one of default or show"},
		{[]string{"policy", "edit"}, `unknown "edit"`},
		{[]string{"policy", "default", "show"}, "one of default or show"},
		{[]string{"policy", "default", "-c", bad}, "-c is for policy show"},
		{[]string{"policy", "show", "-c", bad}, "policy.toml:2: ban.duration"},
		{[]string{"policy", "show", "--state-dir", "/tmp"}, "state-dir"},
	} {
		code, out, errs := runMain(t, tc.args...)
		if code != exitUsage || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("synban %v: exit %d, stdout %q, stderr %q; want exit 2 naming %q", tc.args, code, out, errs, tc.want)
		}
	}
}
