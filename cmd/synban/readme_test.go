package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/synban/synban/engine"
	"github.com/synban/synban/internal/netnstest"
)

// docFiles are the documents whose synban command lines must work: the
// README and the comments of the default and the example policy.
var docFiles = []string{"../../README.md", "../../policy/default.toml", "../../testdata/policy/example.toml"}

// docLine is one synban command line a document shows.
type docLine struct {
	file, text string
	args       []string // without "synban"
}

var (
	fenceRE  = regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")
	inlineRE = regexp.MustCompile("`(synban [^`]+)`")
)

// docCommandLines returns every synban command line of docFiles: the lines
// of code blocks that start with "synban " or "go run ./cmd/synban ", and
// the inline code spans that start with "synban ". A shell pipe or
// redirection ends the line; messages such as "synban check: ..." are not
// command lines.
func docCommandLines(t *testing.T) []docLine {
	t.Helper()
	var out []docLine
	for _, file := range docFiles {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		var candidates []string
		for _, m := range fenceRE.FindAllStringSubmatch(text, -1) {
			for _, l := range strings.Split(m[1], "\n") {
				l = strings.TrimSpace(l)
				if rest, ok := strings.CutPrefix(l, "go run ./cmd/synban "); ok {
					l = "synban " + rest
				}
				if strings.HasPrefix(l, "synban ") {
					candidates = append(candidates, l)
				}
			}
		}
		text = fenceRE.ReplaceAllString(text, "")
		for _, m := range inlineRE.FindAllStringSubmatch(text, -1) {
			candidates = append(candidates, strings.Join(strings.Fields(m[1]), " "))
		}
		for _, c := range candidates {
			line := c
			for _, cut := range []string{" \\| ", " | ", " > ", " #"} {
				line, _, _ = strings.Cut(line, cut)
			}
			fields := strings.Fields(line)
			if len(fields) < 2 || strings.HasSuffix(fields[1], ":") || fields[1] == "CMD:" {
				continue
			}
			out = append(out, docLine{file: filepath.Base(file), text: c, args: fields[1:]})
		}
	}
	if len(out) < 30 {
		t.Fatalf("found only %d synban command lines in %v: the extraction is broken", len(out), docFiles)
	}
	return out
}

// flagSetOf returns cmd's flags.
func flagSetOf(cmd *command) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cmd.setup(fs, &options{})
	return fs
}

// docFlag returns the flag a token names ("--for", "[--online]",
// "--user=x"), or "" for a token that is not a flag ("-" is stdin).
func docFlag(tok string) string {
	tok = strings.Trim(tok, "[]")
	if !strings.HasPrefix(tok, "-") || tok == "-" {
		return ""
	}
	name, _, _ := strings.Cut(strings.TrimLeft(tok, "-"), "=")
	return name
}

// TestDocsCommandLinesParse: every synban command line in the README and
// the policies' comments names a command synban has, and every flag it
// shows exists on that command.
func TestDocsCommandLinesParse(t *testing.T) {
	cmds := commands()
	for _, l := range docCommandLines(t) {
		if l.args[0] == "help" || l.args[0] == "--help" {
			continue
		}
		cmd := findCommand(cmds, l.args[0])
		if cmd == nil {
			t.Errorf("%s: `%s`: synban has no command %q", l.file, l.text, l.args[0])
			continue
		}
		fs := flagSetOf(cmd)
		for _, tok := range l.args[1:] {
			if name := docFlag(tok); name != "" && fs.Lookup(name) == nil {
				t.Errorf("%s: `%s`: synban %s has no flag -%s", l.file, l.text, cmd.name, name)
			}
		}
	}
}

// readmeFlagRow is one row of the README's table of shared flags.
var readmeFlagRow = regexp.MustCompile("(?m)^\\| (`-[^|]+) \\| [^|]+ \\| ((?:`[a-z]+` ?)+) \\|$")

// TestReadmeFlagTable: each flag of the README's table of shared flags is
// on exactly the commands the table lists.
func TestReadmeFlagTable(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := readmeFlagRow.FindAllStringSubmatch(string(data), -1)
	if len(rows) < 10 {
		t.Fatalf("found %d rows of the README's flag table, want the whole table", len(rows))
	}
	cmds := commands()
	for _, row := range rows {
		var listed []string
		for _, c := range strings.Fields(row[2]) {
			listed = append(listed, strings.Trim(c, "`"))
		}
		for _, spelling := range strings.Split(row[1], ", ") {
			name := docFlag(strings.Fields(strings.Trim(spelling, "`"))[0])
			var has []string
			for _, c := range cmds {
				if flagSetOf(c).Lookup(name) != nil {
					has = append(has, c.name)
				}
			}
			slices.Sort(has)
			want := slices.Sorted(slices.Values(listed))
			if !slices.Equal(has, want) {
				t.Errorf("README lists -%s on %v; synban has it on %v", name, want, has)
			}
		}
	}
}

// expandDocLine turns a documented command line into the argument lists to
// run: alternatives ("systemd|cron|nft-include") each, placeholders
// replaced by test files and addresses of the captured table, brackets
// dropped. ok is false for a line that changes the kernel or runs until
// stopped (run without --dry-run, ban, unban, flush, watch, the upstream
// daemon, top without --once, which needs a terminal): those are only
// checked for their flags.
func expandDocLine(l docLine, policyFile, capture, stateDir, outDir string) (runs [][]string, ok bool) {
	switch l.args[0] {
	case "run":
		if !slices.Contains(l.args, "--dry-run") {
			return nil, false
		}
	case "top":
		if !slices.Contains(l.args, "--once") && !slices.Contains(l.args, "[--once]") {
			return nil, false
		}
	case "ban", "unban", "flush", "watch", "upstream":
		return nil, false
	}
	runs = [][]string{nil}
	prev := ""
	for _, tok := range l.args {
		tok = strings.Trim(tok, "[]")
		alts := strings.Split(strings.ReplaceAll(tok, "\\|", "|"), "|")
		switch {
		case tok == "FILE" || tok == "POLICY" || strings.HasPrefix(tok, "/etc/synban/"):
			alts = []string{policyFile}
		case tok == "DIR" && prev == "--from":
			alts = []string{capture}
		case tok == "DIR" && prev == "--state-dir":
			alts = []string{stateDir}
		case prev == "--output-dir":
			alts = []string{outDir}
		case tok == "N" && prev == "--top":
			alts = []string{"3"}
		case tok == "COMMAND":
			alts = nil
			for _, c := range commands() {
				alts = append(alts, c.name)
			}
		}
		for i, a := range alts {
			switch a {
			case "ADDR":
				alts[i] = "203.0.113.50" // an offender of testdata/proc/mixed
			case "PREFIX":
				alts[i] = "198.51.100.0/24" // a spared prefix of it
			}
		}
		var next [][]string
		for _, r := range runs {
			for _, a := range alts {
				next = append(next, append(slices.Clone(r), a))
			}
		}
		runs, prev = next, tok
	}
	return runs, true
}

// TestReadmeCommandsRun runs, in a namespace, every read-only command line
// the README and the policies' comments show (plan, check, sample, status,
// render, policy, version, help; placeholders replaced by test files and a
// captured table): each exits 0 and changes nothing in the kernel.
func TestReadmeCommandsRun(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "op-readme")
	policyFile, err := filepath.Abs("../../testdata/policy/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	capture, err := filepath.Abs("../../testdata/proc/mixed")
	if err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(t.TempDir(), "state")
	outDir := t.TempDir()
	before := ns.KernelState()
	_, err = os.Stat(engine.DefaultStateDir)
	hadStateDir := err == nil
	ran := 0
	for _, l := range docCommandLines(t) {
		runs, ok := expandDocLine(l, policyFile, capture, stateDir, outDir)
		if !ok {
			continue
		}
		for _, args := range runs {
			code, out, errs := runIn(t, ns, args...)
			ran++
			if code != exitOK {
				t.Errorf("%s: `%s`: synban %v: exit %d:\n%s%s", l.file, l.text, args, code, out, errs)
			}
		}
	}
	if ran < 20 {
		t.Errorf("ran only %d documented command lines", ran)
	}
	if after := ns.KernelState(); after != before {
		t.Errorf("the documented read-only commands changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Stat(engine.DefaultStateDir); !hadStateDir && err == nil {
		t.Errorf("the documented read-only commands created %s", engine.DefaultStateDir)
	}
}

// TestHelpCommand: `synban help COMMAND` prints that command's usage, as
// `synban COMMAND --help` does; an unknown command exits 2.
func TestHelpCommand(t *testing.T) {
	for _, c := range commands() {
		code, out, errs := runMain(t, "help", c.name)
		_, want, _ := runMain(t, c.name, "--help")
		if code != exitOK || out != want || !strings.HasPrefix(out, "usage: synban "+c.name+" ") {
			t.Errorf("synban help %s: exit %d, %q (stderr %q); want %s --help's usage %q", c.name, code, out, errs, c.name, want)
		}
	}
	if code, _, errs := runMain(t, "help", "frobnicate"); code != exitUsage || !strings.Contains(errs, `"frobnicate"`) {
		t.Errorf("synban help frobnicate: exit %d, stderr %q", code, errs)
	}
}

// aptLineRE is an `apt-get install` command line.
var aptLineRE = regexp.MustCompile(`(?m)apt-get install ((?:-[a-z-]+ )*)([a-z0-9 .+\\\n\t-]+)`)

// TestInstallLinesListEveryPackage: the README's apt-get lines, beside the
// test command, and .ci/run's install every package whose programs the
// tests run (internal/netnstest.Packages, which the tests' skip messages
// name).
func TestInstallLinesListEveryPackage(t *testing.T) {
	for _, file := range []string{"../../README.md", "../../.ci/run"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		installed := map[string]bool{}
		for _, m := range aptLineRE.FindAllStringSubmatch(string(data), -1) {
			for _, f := range strings.Fields(strings.ReplaceAll(m[2], "\\", " ")) {
				installed[f] = true
			}
		}
		for _, p := range netnstest.Packages() {
			if !installed[p] {
				t.Errorf("%s: no apt-get install line installs %s", file, p)
			}
		}
	}
}
