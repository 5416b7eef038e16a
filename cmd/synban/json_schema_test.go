package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/state"
)

// schemaFile is the JSON Schema of every --json document.
const schemaFile = "../../docs/synban.schema.json"

// jsonSchemas compiles docs/synban.schema.json and returns a validator per
// $defs entry that describes a whole document (one with a "schema" key).
func jsonSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", schemaFile, err)
	}
	c := jsonschema.NewCompiler()
	const url = "https://github.com/synban/synban/docs/synban.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatalf("%s: %v", schemaFile, err)
	}
	if _, err := c.Compile(url); err != nil {
		t.Fatalf("%s does not compile: %v", schemaFile, err)
	}
	out := map[string]*jsonschema.Schema{}
	for name, def := range doc.(map[string]any)["$defs"].(map[string]any) {
		props, _ := def.(map[string]any)["properties"].(map[string]any)
		if _, ok := props["schema"]; !ok {
			continue
		}
		s, err := c.Compile(url + "#/$defs/" + name)
		if err != nil {
			t.Fatalf("%s: $defs/%s: %v", schemaFile, name, err)
		}
		out[name] = s
	}
	return out
}

// compileSchemaRoot compiles the schema file's root: any document synban
// prints.
func compileSchemaRoot(t *testing.T) *jsonschema.Schema {
	t.Helper()
	s, err := jsonschema.NewCompiler().Compile(schemaFile)
	if err != nil {
		t.Fatalf("%s: %v", schemaFile, err)
	}
	return s
}

// schemaCheck validates what commands print against the schema file and
// records which document kinds were seen.
type schemaCheck struct {
	t       *testing.T
	schemas map[string]*jsonschema.Schema
	seen    map[string]bool
}

func newSchemaCheck(t *testing.T) *schemaCheck {
	return &schemaCheck{t: t, schemas: jsonSchemas(t), seen: map[string]bool{}}
}

// validate checks that out is exactly one JSON document valid against
// $defs/def, with "schema" first; an error document's kind must match the
// exit code.
func (s *schemaCheck) validate(args []string, def string, code int, out, errs string) {
	t := s.t
	t.Helper()
	sch, ok := s.schemas[def]
	if !ok {
		t.Fatalf("%s has no document $defs/%s", schemaFile, def)
	}
	s.seen[def] = true
	if !strings.HasPrefix(out, "{\n  \"schema\": ") {
		t.Errorf("synban %v: the document does not start with \"schema\" (exit %d):\n%s%s", args, code, out, errs)
		return
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		t.Errorf("synban %v: not JSON: %v\n%s", args, err, out)
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Errorf("synban %v: more than one JSON document on stdout:\n%s", args, out)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("synban %v: output is not a valid $defs/%s: %v\n%s", args, def, err, out)
	}
	wantErr := code != exitOK
	var e struct {
		Error *jsondoc.Error `json:"error"`
	}
	if json.Unmarshal(raw, &e) != nil || (e.Error != nil) != wantErr || (wantErr && e.Error.Kind != errorKind(code)) {
		t.Errorf("synban %v: exit %d with error %+v: an error document, of the exit code's kind, goes with a non-zero exit and only with it", args, code, e.Error)
	}
}

// TestJSONSchemaOffline validates the real --json output of every command
// that needs no kernel state (captured tables, policies, renders, errors)
// against docs/synban.schema.json.
func TestJSONSchemaOffline(t *testing.T) {
	s := newSchemaCheck(t)
	dir := t.TempDir()
	example, err := filepath.Abs("../../testdata/policy/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	bad := writePolicy(t, "[[rule]]\nname = \"x\"\nstate = \"syn_recv\"\nthreshold = 0\n")
	units := filepath.Join(dir, "units")
	if err := os.Mkdir(units, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		def  string
		code int
		args []string
	}{
		{"version", exitOK, []string{"version"}},
		{"check", exitOK, []string{"check"}},
		{"check", exitOK, []string{"check", "-c", example}},
		{"plan", exitOK, []string{"plan", "--from", "../../testdata/proc/mixed", "--state-dir", dir}},
		{"plan", exitOK, []string{"plan", "--from", "../../testdata/proc/mixed", "--state-dir", dir, "--backend", "route"}},
		{"sample", exitOK, []string{"sample", "--from", "../../testdata/proc/mixed"}},
		{"explain", exitOK, []string{"explain", "203.0.113.50", "--from", "../../testdata/proc/mixed", "--state-dir", dir}},
		{"explain", exitOK, []string{"explain", "198.51.100.0/24", "--from", "../../testdata/proc/mixed", "--state-dir", dir}},
		{"explain", exitOK, []string{"explain", "2001:db8:bad:1::7", "--from", "../../testdata/proc/mixed", "--state-dir", dir}},
		{"top", exitOK, []string{"top", "--once", "--from", "../../testdata/proc/mixed", "--state-dir", dir}},
		{"error", exitUsage, []string{"explain", "not-an-address", "--from", "../../testdata/proc/mixed", "--state-dir", dir}},
		{"render", exitOK, []string{"render", "nft-include"}},
		{"render", exitOK, []string{"render", "cron"}},
		{"render", exitOK, []string{"render", "systemd", "--output-dir", units}},
		{"policy_default", exitOK, []string{"policy", "default"}},
		{"policy_show", exitOK, []string{"policy", "show", "-c", example}},
		{"error", exitUsage, []string{"check", "-c", bad}},
		{"error", exitUsage, []string{"check", "--no-such-flag"}},
		{"error", exitUsage, []string{"frobnicate"}},
		{"error", exitUsage, []string{"version", "extra"}},
		{"error", exitUsage, []string{"plan", "--format", "pf"}},
		{"error", exitUsage, []string{"policy", "default", "-c", example}},
		{"error", exitUsage, []string{"render", "pf"}},
		{"error", exitUsage, []string{"sample", "--log-level", "loud"}},
		{"error", exitUsage, []string{"policy"}},
	} {
		args := append(tc.args, "--json")
		code, out, errs := runMain(t, args...)
		if code != tc.code {
			t.Errorf("synban %v: exit %d, want %d:\n%s%s", args, code, tc.code, out, errs)
			continue
		}
		s.validate(args, tc.def, code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, state.FileName)); !os.IsNotExist(err) {
		t.Errorf("a read-only command wrote the state store: %v", err)
	}
}

// TestJSONSchemaKernel validates the real --json output of the commands
// that change or read the firewall, run in a namespace: run, status, ban
// (one and --from-file), unban, flush, watch, a locked run (kind locked),
// and check --online against a LAPI that does not answer (exit 1, the
// document carrying its error). Together with TestJSONSchemaOffline every
// document kind of the schema file is checked.
func TestJSONSchemaKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "op-json")
	s := newSchemaCheck(t)
	dir := filepath.Join(t.TempDir(), "state")
	list := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(list, []byte("198.51.100.0/24\n198.51.100.9\n2001:db8:7::/48\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "bouncer-key")
	if err := os.WriteFile(key, []byte("0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Nothing listens on the namespace's loopback: the login is refused at once.
	online := writePolicy(t, "[crowdsec]\nenabled = true\nlapi_url = \"http://127.0.0.1:9/\"\npush = false\n"+
		"bouncer_key_file = \""+key+"\"\ntimeout = \"2s\"\n")
	upPolicy := writePolicy(t, upstreamPolicyText(""))
	for _, tc := range []struct {
		def  string
		code int
		args []string
	}{
		{"status", exitOK, []string{"status", "--state-dir", dir}},
		{"run", exitOK, []string{"run", "--state-dir", dir}},
		{"ban", exitOK, []string{"ban", "192.0.2.7", "--for", "2h", "--state-dir", dir}},
		{"ban", exitOK, []string{"ban", "--from-file", list, "--state-dir", dir}},
		{"status", exitOK, []string{"status", "--state-dir", dir}},
		{"unban", exitOK, []string{"unban", "192.0.2.7", "192.0.2.8", "--state-dir", dir}},
		{"error", exitUsage, []string{"ban", "127.0.0.1", "--state-dir", dir}},
		{"check", exitFailure, []string{"check", "--online", "-c", online}},
		// [upstream] on: plan and status carry their "upstream" part.
		{"plan", exitOK, []string{"plan", "-c", upPolicy, "--state-dir", dir, "--backend", "nftables"}},
		{"status", exitOK, []string{"status", "-c", upPolicy, "--state-dir", dir, "--backend", "nftables"}},
		{"flush", exitOK, []string{"flush", "--state-dir", dir}},
	} {
		args := append(tc.args, "--json")
		code, out, errs := runIn(t, ns, args...)
		if code != tc.code {
			t.Errorf("synban %v: exit %d, want %d:\n%s%s", args, code, tc.code, out, errs)
			continue
		}
		s.validate(args, tc.def, code, out, errs)
		if slices.Contains(args, upPolicy) && !strings.Contains(out, "\n  \"upstream\": {") {
			t.Errorf("synban %v: [upstream] is on but the document has no upstream part:\n%s", args, out)
		}
	}

	// A run that finds the lock taken: kind "locked", exit 3.
	store, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	release, err := store.Lock(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"run", "--state-dir", dir, "--json"}
	code, out, errs := runIn(t, ns, args...)
	if code != exitLocked {
		t.Errorf("run with the lock held: exit %d, want %d:\n%s%s", code, exitLocked, out, errs)
	} else {
		s.validate(args, "error", code, out, errs)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}

	// watch prints one run document per cycle; the first is checked, then
	// SIGTERM ends it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := synbanIn(t, ctx, ns, "watch", "--every", "200ms", "--state-dir", dir, "--json")
	var stdout, stderr netnstest.LogBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	netnstest.Eventually(t, 30*time.Second, func() bool { return strings.Contains(stdout.String(), "\n}\n") },
		"watch --json printed no document: %s", stderr.String())
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("watch after SIGTERM: %v: %s", err, stderr.String())
	}
	first, _, _ := strings.Cut(stdout.String(), "\n}\n")
	s.validate([]string{"watch", "--json"}, "run", exitOK, first+"\n}\n", stderr.String())

	// Every document kind of the schema file was met by one of the tests.
	offline := map[string]bool{"version": true, "plan": true, "sample": true, "render": true, "policy_default": true, "policy_show": true,
		"explain": true, "top": true}
	for def := range s.schemas {
		if !s.seen[def] && !offline[def] {
			t.Errorf("$defs/%s is checked against no real output", def)
		}
	}
}

// TestJSONCommandsDocumented: every command that takes --json has a
// document in the schema file (policy has two) and an example in
// docs/json.md; the commands without --json (they print a script, roff,
// or only logs) are named in docs/json.md as such.
func TestJSONCommandsDocumented(t *testing.T) {
	schemas := jsonSchemas(t)
	md, err := os.ReadFile("../../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	withJSON := 0
	for _, c := range commands() {
		if newFlagSet(c, io.Discard, &options{}).Lookup("json") == nil {
			if _, ok := schemas[c.name]; ok {
				t.Errorf("command %s takes no --json but %s has $defs/%s", c.name, schemaFile, c.name)
			}
			if !strings.Contains(string(md), "`synban "+c.name+"`") {
				t.Errorf("command %s takes no --json: docs/json.md does not say so (no `synban %s`)", c.name, c.name)
			}
			continue
		}
		withJSON++
		defs := []string{c.name}
		switch c.name {
		case "policy":
			defs = []string{"policy_default", "policy_show"}
		case "watch":
			defs = []string{"run"}
		}
		for _, def := range defs {
			if _, ok := schemas[def]; !ok {
				t.Errorf("command %s: %s has no $defs/%s", c.name, schemaFile, def)
			}
		}
		if !strings.Contains(string(md), "\n### `synban "+c.name) {
			t.Errorf("command %s: docs/json.md has no section \"### `synban %s ...`\"", c.name, c.name)
		}
	}
	if _, ok := schemas["error"]; !ok {
		t.Errorf("%s has no $defs/error", schemaFile)
	}
	// Every example in docs/json.md is a valid document of some command.
	all := compileSchemaRoot(t)
	blocks := strings.Split(string(md), "```json\n")[1:]
	if len(blocks) < withJSON {
		t.Errorf("docs/json.md has %d JSON examples, fewer than the %d commands with --json", len(blocks), withJSON)
	}
	for _, b := range blocks {
		text, _, _ := strings.Cut(b, "```")
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
		if err != nil {
			t.Errorf("docs/json.md: example is not JSON: %v\n%s", err, text)
			continue
		}
		if err := all.Validate(inst); err != nil {
			t.Errorf("docs/json.md: example matches no document of %s: %v\n%s", schemaFile, err, text)
		}
	}
}
