package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// tmuxSession is a detached tmux session on a server of its own (its own
// socket), killed when the test ends.
type tmuxSession struct {
	t            *testing.T
	socket, name string
}

func newTmux(t *testing.T, width, height int, command string) *tmuxSession {
	t.Helper()
	netnstest.RequireCommand(t, "tmux")
	s := &tmuxSession{t: t, socket: fmt.Sprintf("vw-top-%d", os.Getpid()), name: "vw-top"}
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", s.socket, "kill-server").Run() })
	s.run("new-session", "-d", "-s", s.name, "-x", fmt.Sprint(width), "-y", fmt.Sprint(height), command)
	return s
}

func (s *tmuxSession) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", s.socket}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %q: %v: %s", args, err, out)
	}
	return string(out)
}

// screen is what the pane shows now.
func (s *tmuxSession) screen() string { return s.run("capture-pane", "-p", "-t", s.name) }

// keys types keys into the pane (tmux key names such as Enter).
func (s *tmuxSession) keys(keys ...string) {
	s.run(append([]string{"send-keys", "-t", s.name}, keys...)...)
}

// lastScreen is a fmt.Stringer over the last screen captured.
type lastScreen struct{ s *string }

func (l lastScreen) String() string { return *l.s }

// topScreenRows returns the rows of top's table under the header title
// (SOURCE or PREFIX), as fields.
func topScreenRows(screen, title string) [][]string {
	var rows [][]string
	in := false
	for _, line := range strings.Split(screen, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			in = false
		case f[0] == title && len(f) > 1 && f[1] == "SYN_RECV":
			in = true
		case in:
			rows = append(rows, f)
		}
	}
	return rows
}

// TestTopInTerminal runs `synban top` in a real terminal (a detached tmux
// session) inside a victim during a bounded flood: the attacker comes up
// on the first row with its half-open count and verdict; after a run bans
// it, the next refresh shows the ban's time left, and the element's drop
// counter once the attacker sends up to 40 more; s changes the sort; the filter
// keeps only the quiet source; q exits with status 0. top writes nothing:
// the kernel holds the same before and after it ran a while.
func TestTopInTerminal(t *testing.T) {
	l := newVWLab(t)
	l.flood(vwAttacker, 150, 120)
	l.flood(vwQuiet, 20, 15)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exitFile, errFile := filepath.Join(t.TempDir(), "exit"), filepath.Join(t.TempDir(), "stderr")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(errFile)
			t.Logf("top's standard error:\n%s", b)
		}
	})
	before := withoutExpiry(l.victim.KernelState())
	tm := newTmux(t, 160, 40, fmt.Sprintf("ip netns exec %s env SYNBAN_TEST_ROLE=synban %s top -c %s --state-dir %s --every 300ms --backend nftables 2>%s; echo $? > %s",
		l.victim.Name, self, l.policy, l.stDir, errFile, exitFile))

	var screen string
	first := func() []string {
		screen = tm.screen()
		if rows := topScreenRows(screen, "SOURCE"); len(rows) > 0 {
			return rows[0]
		}
		return nil
	}
	netnstest.Eventually(t, 30*time.Second, func() bool {
		r := first()
		return len(r) > 1 && r[0] == vwAttacker
	}, "top never showed the attacker %s on the first row; screen:\n%s", vwAttacker, lastScreen{&screen})
	row := first()
	t.Logf("top during the flood:\n%s", strings.TrimRight(screen, "\n"))
	if n, err := strconv.Atoi(row[1]); err != nil || n < 120 || !strings.Contains(strings.Join(row, " "), "ban: syn-flood") {
		t.Errorf("attacker's row %q: want its half-open count (>= 120) and the verdict ban: syn-flood", row)
	}
	if after := withoutExpiry(l.victim.KernelState()); after != before {
		t.Errorf("top changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// A run bans the attacker; the view follows.
	if out, err := l.synban("run", "--backend", "nftables"); err != nil {
		t.Fatalf("synban run: %v: %s", err, out)
	}
	netnstest.Eventually(t, 30*time.Second, func() bool {
		r := strings.Join(first(), " ")
		return strings.HasPrefix(r, vwAttacker+" ") && strings.Contains(r, "9m")
	}, "top never showed the attacker's ban with its time left; screen:\n%s", lastScreen{&screen})
	// The banned attacker keeps sending: its element's drop counter shows it.
	sent := l.send(vwAttacker, 40)
	netnstest.Eventually(t, 30*time.Second, func() bool {
		r := first()
		return len(r) > 0 && r[0] == vwAttacker && r[len(r)-1] == strconv.Itoa(sent)
	}, "top never showed the attacker's %d dropped packets; screen:\n%s", sent, lastScreen{&screen})
	t.Logf("top after the run and %d more packets:\n%s", sent, strings.TrimRight(screen, "\n"))

	// s changes the sort.
	tm.keys("s")
	netnstest.Eventually(t, 30*time.Second, func() bool { return strings.Contains(tm.screen(), "sort: established;") },
		"s did not switch the sort to established")

	// The filter: only the quiet source is left.
	tm.keys("/")
	tm.keys("-l", vwQuiet)
	tm.keys("Enter")
	netnstest.Eventually(t, 30*time.Second, func() bool {
		rows := topScreenRows(tm.screen(), "SOURCE")
		return len(rows) == 1 && rows[0][0] == vwQuiet
	}, "the filter %q did not leave only that source; screen:\n%s", vwQuiet, lastScreen{&screen})

	tm.keys("q")
	netnstest.Eventually(t, 30*time.Second, func() bool {
		b, err := os.ReadFile(exitFile)
		return err == nil && len(bytes.TrimSpace(b)) > 0
	}, "top did not exit after q")
	if b, _ := os.ReadFile(exitFile); strings.TrimSpace(string(b)) != "0" {
		t.Fatalf("top exited with %q after q, want 0", b)
	}
}

// TestTopOnceAndBadInput: --once prints one plain refresh (a replayed
// capture, no root needed), sorted, filtered and cut to --top; bad flags
// and a missing terminal exit 2.
func TestTopOnceAndBadInput(t *testing.T) {
	from := filepath.Join("..", "..", "testdata", "proc", "mixed")
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"top", "--once", "--from", from, "--state-dir", t.TempDir(), "--top", "3"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("top --once: exit %d: %s", code, errb.String())
	}
	rows, prefixes := topScreenRows(out.String(), "SOURCE"), topScreenRows(out.String(), "PREFIX")
	if len(rows) != 3 || rows[0][0] != "2001:db8:66::6" || rows[1][0] != "203.0.113.50" || len(prefixes) != 2 || prefixes[0][0] != "2001:db8:bad:1::/64" ||
		strings.Join(prefixes[0][5:], " ") != "spared: spoofed - -" || !strings.Contains(out.String(), "flood: spoofed") {
		t.Fatalf("top --once --top 3: sources %q prefixes %q:\n%s", rows, prefixes, out.String())
	}
	out.Reset()
	code = Main(context.Background(), []string{"top", "--once", "--from", from, "--state-dir", t.TempDir(), "--filter", "203.0.113.50"}, &out, &errb)
	if rows := topScreenRows(out.String(), "SOURCE"); code != exitOK || len(rows) != 1 || strings.Join(rows[0][5:], " ") != "ban: syn-flood - -" {
		t.Fatalf("top --once --filter: exit %d rows %q:\n%s", code, rows, out.String())
	}
	out.Reset()
	code = Main(context.Background(), []string{"top", "--json", "--from", from, "--state-dir", t.TempDir(), "--top", "1"}, &out, &errb)
	var js struct {
		Rows []struct {
			Subject string  `json:"subject"`
			Prefix  bool    `json:"prefix"`
			SynRecv int     `json:"syn_recv"`
			Verdict string  `json:"verdict"`
			Drops   *uint64 `json:"drops"`
		} `json:"rows"`
		RuleDrops []string `json:"rule_drops"`
	}
	if err := json.Unmarshal(out.Bytes(), &js); code != exitOK || err != nil || len(js.Rows) != 2 || js.RuleDrops == nil ||
		!js.Rows[0].Prefix || js.Rows[0].Subject != "2001:db8:bad:1::/64" || js.Rows[0].Verdict != "spared" ||
		js.Rows[1].Subject != "2001:db8:66::6" || js.Rows[1].SynRecv != 75 || js.Rows[1].Verdict != "ban" || js.Rows[1].Drops != nil {
		t.Fatalf("top --json --top 1: exit %d, %v: %+v\n%s", code, err, js, out.String())
	}

	// Without --once, top needs a terminal: here standard input is /dev/null.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "top", "--from", from, "--state-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "SYNBAN_TEST_ROLE=synban")
	msg, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != exitUsage || !strings.Contains(string(msg), "needs a terminal") {
		t.Errorf("top without a terminal: %v: %s; want exit 2 and a message", err, msg)
	}
	for _, args := range [][]string{
		{"top", "--sort", "bytes"}, {"top", "--top", "-1"}, {"top", "--every", "1ms"}, {"top", "extra"},
		{"sample", "--top", "-2", "--from", from},
	} {
		errb.Reset()
		if code := Main(context.Background(), append(args, "--state-dir", t.TempDir()), &out, &errb); code != exitUsage {
			t.Errorf("%q: exit %d (%s), want 2", args, code, errb.String())
		}
	}
}

// TestSampleTop: sample --top N prints the N sources with the most
// entries, and says how many there were in all.
func TestSampleTop(t *testing.T) {
	from := filepath.Join("..", "..", "testdata", "proc", "mixed")
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"sample", "--top", "2", "--from", from}, &out, &errb); code != exitOK {
		t.Fatalf("sample --top 2: exit %d: %s", code, errb.String())
	}
	var table []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !strings.HasPrefix(l, "#") {
			table = append(table, strings.TrimSpace(l))
		}
	}
	if len(table) != 3 || !strings.HasPrefix(table[1], "2001:db8:66::6 ") || !strings.HasPrefix(table[2], "203.0.113.50 ") ||
		!strings.Contains(out.String(), "; 417 sources") {
		t.Fatalf("sample --top 2:\n%s", out.String())
	}
}
