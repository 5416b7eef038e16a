package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/templates"
)

// script writes synban's completion script for shell into a file.
func script(t *testing.T, shell string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"completion", shell}, &out, &errb); code != exitOK {
		t.Fatalf("completion %s: exit %d: %s", shell, code, errb.String())
	}
	path := filepath.Join(t.TempDir(), "synban."+shell)
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// bashComplete sources the bash script and runs its completion function
// on words, completing the last one, as bash does on TAB; it returns
// COMPREPLY.
func bashComplete(t *testing.T, path string, words ...string) []string {
	t.Helper()
	var quoted []string
	for _, w := range words {
		quoted = append(quoted, "'"+w+"'")
	}
	prog := "source " + path + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
		strconv.Itoa(len(words)-1) + "\n_synban\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	out, err := exec.Command("bash", "--norc", "--noprofile", "-c", prog).CombinedOutput()
	if err != nil {
		t.Fatalf("bash completion of %q: %v: %s", words, err, out)
	}
	var reply []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			reply = append(reply, l)
		}
	}
	return reply
}

// TestCompletionBash checks the bash script parses (bash -n) and completes:
// a command from its prefix, a command's flags from its own FlagSet, the
// values of --backend and --log-level, render's kinds and completion's
// shells, and nothing after a flag that takes a free value.
func TestCompletionBash(t *testing.T) {
	netnstest.RequireCommand(t, "bash")
	path := script(t, "bash")
	if out, err := exec.Command("bash", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v: %s", err, out)
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"synban", "pl"}, []string{"plan"}},
		{[]string{"synban", "ex"}, []string{"explain"}},
		{[]string{"synban", "run", "--ba"}, []string{"--backend"}},
		{[]string{"synban", "run", "--backend", "n"}, []string{"nftables"}},
		{[]string{"synban", "status", "--log-level", "d"}, []string{"debug"}},
		{[]string{"synban", "render", "s"}, []string{"systemd"}},
		{[]string{"synban", "completion", "f"}, []string{"fish"}},
		{[]string{"synban", "ban", "--for", ""}, nil},
		{[]string{"synban", "status", "--dry"}, nil}, // a flag of run, not of status
	} {
		if got := bashComplete(t, path, tc.words...); !slices.Equal(got, tc.want) {
			t.Errorf("complete %q: COMPREPLY = %q, want %q", tc.words, got, tc.want)
		}
	}
	// Every command completes to exactly the flags its FlagSet defines.
	for _, c := range cliModel() {
		var want []string
		for _, f := range c.flags {
			want = append(want, dash(f.name))
		}
		got := bashComplete(t, path, "synban", c.name, "-")
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("flags of %s: completion %q, FlagSet %q", c.name, got, want)
		}
	}
}

// TestCompletionZsh checks the zsh script parses (zsh -n) and, sourced
// after compinit, registers _synban for synban.
func TestCompletionZsh(t *testing.T) {
	netnstest.RequireCommand(t, "zsh")
	path := script(t, "zsh")
	if out, err := exec.Command("zsh", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v: %s", err, out)
	}
	home := t.TempDir()
	cmd := exec.Command("zsh", "-f", "-c", "autoload -U compinit && compinit -u -d "+home+"/zcompdump && source "+path+" && print -r -- $_comps[synban]")
	cmd.Env = append(os.Environ(), "HOME="+home, "ZDOTDIR="+home)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "_synban" {
		t.Fatalf("zsh: sourcing the script did not register _synban for synban: %v: %q", err, out)
	}
}

// TestCompletionFish checks the fish script parses (fish -n) and completes
// `synban pl` to plan and run's --backend to its values, with fish's own
// completion engine (complete -C).
func TestCompletionFish(t *testing.T) {
	netnstest.RequireCommand(t, "fish")
	path := script(t, "fish")
	if out, err := exec.Command("fish", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("fish -n: %v: %s", err, out)
	}
	complete := func(line string) []string {
		t.Helper()
		cmd := exec.Command("fish", "--no-config", "-c", "source "+path+"; complete -C '"+line+"'")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fish complete -C %q: %v: %s", line, err, out)
		}
		var words []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				words = append(words, strings.SplitN(l, "\t", 2)[0])
			}
		}
		return words
	}
	if got := complete("synban pl"); !slices.Equal(got, []string{"plan"}) {
		t.Errorf("fish: synban pl -> %q, want [plan]", got)
	}
	if got := complete("synban run --backend "); !slices.Equal(got, []string{"auto", "iptables", "nftables", "route"}) &&
		!slices.Equal(got, []string{"auto", "nftables", "iptables", "route"}) {
		t.Errorf("fish: run --backend -> %q, want the four backends", got)
	}
	if got := complete("synban render "); !slices.Contains(got, "systemd") || slices.Contains(got, "plan") {
		t.Errorf("fish: render -> %q, want the kinds only", got)
	}
}

// TestCompletionBadShell: an unknown shell or none is bad input (exit 2).
func TestCompletionBadShell(t *testing.T) {
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}, {"completion", "bash", "zsh"}} {
		var out, errb bytes.Buffer
		if code := Main(context.Background(), args, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "completion") {
			t.Errorf("%q: exit %d, stderr %q; want 2", args, code, errb.String())
		}
	}
}

// TestFlagValuesAccepted: every value the completions offer for a flag is
// one the command accepts, and every flag named as a path exists.
func TestFlagValuesAccepted(t *testing.T) {
	for _, v := range flagValues["backend"] {
		if err := checkBackendFlag(v); err != nil {
			t.Errorf("--backend %s offered but refused: %v", v, err)
		}
	}
	for _, v := range flagValues["format"] {
		if err := templates.CheckFormat(v); err != nil {
			t.Errorf("--format %s offered but refused: %v", v, err)
		}
	}
	for _, v := range flagValues["log-level"] {
		if _, err := logLevel(&options{logLevel: v}); err != nil {
			t.Errorf("--log-level %s offered but refused: %v", v, err)
		}
	}
	defined := map[string]bool{}
	for _, c := range cliModel() {
		for _, f := range c.flags {
			defined[f.name] = true
		}
	}
	for name := range flagPaths {
		if !defined[name] {
			t.Errorf("flagPaths names %q, which no command defines", name)
		}
	}
	for name := range flagValues {
		if !defined[name] {
			t.Errorf("flagValues names %q, which no command defines", name)
		}
	}
}

// TestManPage checks `synban man` is roff that groff formats without a
// warning and that it documents every command and every flag of every
// command's FlagSet, with its default.
func TestManPage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"man"}, &out, &errb); code != exitOK {
		t.Fatalf("man: exit %d: %s", code, errb.String())
	}
	page := out.String()
	for _, c := range cliModel() {
		if !strings.Contains(page, "\\fB"+roff(c.name)+"\\fR") || !strings.Contains(page, roff(c.summary)) {
			t.Errorf("man page lacks command %s", c.name)
		}
		section := page[strings.Index(page, ".SH FLAGS"):]
		if len(c.flags) == 0 {
			continue
		}
		i := strings.Index(section, ".SS "+roff("synban "+c.name)+"\n")
		if i < 0 {
			t.Errorf("man page lacks the flags of %s", c.name)
			continue
		}
		section = section[i+1:]
		if j := strings.Index(section, "\n.SS "); j >= 0 {
			section = section[:j]
		}
		for _, f := range c.flags {
			if !strings.Contains(section, "\\fB"+roff(dash(f.name))+"\\fR") {
				t.Errorf("man page: %s lacks %s", c.name, dash(f.name))
			}
			if !f.isBool && f.def != "" && !strings.Contains(section, roff("(default "+f.def+")")) {
				t.Errorf("man page: %s %s lacks its default %q", c.name, dash(f.name), f.def)
			}
		}
	}
	netnstest.RequireCommand(t, "groff")
	cmd := exec.Command("groff", "-man", "-ww", "-z", "-Tutf8")
	cmd.Stdin = strings.NewReader(page)
	if msg, err := cmd.CombinedOutput(); err != nil || len(msg) > 0 {
		t.Errorf("groff -man -ww: %v: %s", err, msg)
	}
}
