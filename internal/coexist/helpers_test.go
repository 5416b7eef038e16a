package coexist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/internal/testbin"
)

// synbanBin is cmd/synban, built once for the suite.
var synbanBin = testbin.Binary{Pkg: testbin.Synban}

func TestMain(m *testing.M) { os.Exit(synbanBin.RunTests(m)) }

// report logs a measured line in the test log and on standard output, where
// CI shows it for passing tests too.
func report(t testing.TB, format string, args ...any) {
	t.Helper()
	netnstest.Report(t, "coexist", format, args...)
}

// The lab's addresses: the victim (where synban and the other tool run) has
// one link to the attacker and one to the legitimate client.
const (
	victimA   = "10.71.0.1"
	attackerA = "10.71.0.2"
	victimC   = "10.72.0.1"
	clientA   = "10.72.0.2"
	// bystanderA is a third address the other tool bans or allows on its own.
	bystanderA = "10.71.0.3"
)

// Hook sets the suite tests explicitly, so it never depends on the default
// policy's hooks.
var (
	hooksInputForward = `["input", "forward"]`
	hooksPrerouting   = `["prerouting"]`
)

// lab is a victim running synban (and the other tool), an attacker synban
// bans, and a legitimate client.
type lab struct {
	t                        *testing.T
	victim, attacker, client *netnstest.NS
	policy, stateDir         string
}

// newLab builds the three namespaces, writes a policy with the given hooks
// (a TOML array) and starts busybox httpd on the victim's port 80.
func newLab(t *testing.T, hooks string) *lab {
	t.Helper()
	return newLabExtra(t, hooks, "")
}

// newLabExtra is newLab with extra appended to the policy.
func newLabExtra(t *testing.T, hooks, extra string) *lab {
	t.Helper()
	netnstest.RequireRoot(t)
	for _, c := range []string{"nft", "busybox", "nsenter", "unshare"} {
		netnstest.RequireCommand(t, c)
	}
	synbanBin.Path(t)
	l := &lab{t: t,
		victim:   netnstest.New(t, "cxv"),
		attacker: netnstest.New(t, "cxa"),
		client:   netnstest.New(t, "cxc"),
		stateDir: t.TempDir(),
	}
	netnstest.Link(t, l.victim, l.attacker, []string{victimA + "/24"}, []string{attackerA + "/24", bystanderA + "/24"})
	netnstest.Link(t, l.victim, l.client, []string{victimC + "/24"}, []string{clientA + "/24"})
	l.policy = filepath.Join(t.TempDir(), "policy.toml")
	text := fmt.Sprintf(`backend = "nftables"

[[rule]]
name = "syn-flood"
state = "syn_recv"
threshold = 50

[prefix]
enabled = false

[meter]
enabled = false

[nftables]
hooks = %s
`, hooks) + extra
	if err := os.WriteFile(l.policy, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l.victim.Start("busybox", "httpd", "-f", "-p", "80", "-h", www)
	netnstest.Eventually(t, 5*time.Second, func() bool { return dial(l.client, victimC+":80", time.Second) == nil },
		"busybox httpd in the victim did not accept the client's connection")
	return l
}

// synban runs the synban binary in the victim with the lab's policy and
// state directory.
func (l *lab) synban(args ...string) (string, error) {
	l.t.Helper()
	argv := append([]string{synbanBin.Path(l.t)}, args...)
	argv = append(argv, "-c", l.policy, "--state-dir", l.stateDir)
	return l.victim.Run(argv...)
}

func (l *lab) mustSynban(args ...string) string {
	l.t.Helper()
	out, err := l.synban(args...)
	if err != nil {
		l.t.Fatalf("synban %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// ban bans the attacker by hand for an hour.
func (l *lab) ban() {
	l.t.Helper()
	l.mustSynban("ban", attackerA, "--for", "1h")
	if err := l.attackerDropped(80); err != nil {
		l.t.Fatalf("right after synban ban: %v", err)
	}
}

// dial opens a TCP connection to addr from inside ns (the socket is made in
// ns by the test process) and closes it.
func dial(ns *netnstest.NS, addr string, timeout time.Duration) error {
	return nsenter.Do(ns.Path(), func() error {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

var elemCounterRE = regexp.MustCompile(`(?m)` + regexp.QuoteMeta(attackerA) + `[^,}\n]*counter packets (\d+)`)

// banCounter is the attacker's element counter in synban's ban_v4 set (the
// packets synban dropped from it); ok is false when the table, the set or
// the element is missing.
func (l *lab) banCounter() (uint64, bool) {
	out, err := l.victim.Run("nft", "list", "set", "inet", "synban", "ban_v4")
	if err != nil {
		return 0, false
	}
	m := elemCounterRE.FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n, true
}

// attackerDropped checks that the attacker cannot connect to the victim's
// port and that synban's element counter for it rose: synban dropped it,
// not the other tool.
func (l *lab) attackerDropped(port int) error {
	return l.droppedAt(victimA, port)
}

func (l *lab) droppedAt(host string, port int) error {
	before, ok := l.banCounter()
	if !ok {
		return errors.New("synban's ban_v4 set (or the attacker in it) is missing")
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	if err := dial(l.attacker, addr, 700*time.Millisecond); err == nil {
		return fmt.Errorf("the banned attacker connected to %s", addr)
	}
	after, _ := l.banCounter()
	if after <= before {
		return fmt.Errorf("the attacker's connection to %s failed, but synban's counter for it did not rise (%d): something else dropped it", addr, before)
	}
	return nil
}

// clientConnects checks the legitimate client reaches the victim's port.
func (l *lab) clientConnects(port int) error {
	addr := net.JoinHostPort(victimC, strconv.Itoa(port))
	var err error
	for range 3 { // a daemon that just reloaded may need a moment
		if err = dial(l.client, addr, 2*time.Second); err == nil {
			return nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("the legitimate client cannot connect to %s: %w", addr, err)
}

var (
	counterRE = regexp.MustCompile(`"packets":\s*\d+,\s*"bytes":\s*\d+`)
	expiresRE = regexp.MustCompile(`"expires":\s*\d+`)
)

// others is every nftables object in the victim that is not synban's
// (iptables-nft's tables of ufw and Docker included), from `nft -j list
// ruleset`, one JSON object a line, with rule handles. Counter values and
// set elements' remaining time are zeroed: they move with traffic and the
// clock, not with anyone's writes.
func (l *lab) others() string {
	l.t.Helper()
	out := l.victim.MustRun("nft", "-j", "list", "ruleset")
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		l.t.Fatalf("nft -j list ruleset: %v", err)
	}
	var lines []string
	for _, obj := range doc.Nftables {
		for kind, raw := range obj {
			if kind == "metainfo" {
				continue
			}
			var id struct {
				Family string `json:"family"`
				Table  string `json:"table"`
				Name   string `json:"name"`
			}
			_ = json.Unmarshal(raw, &id)
			tbl := id.Table
			if kind == "table" {
				tbl = id.Name
			}
			if id.Family == "inet" && tbl == "synban" {
				continue
			}
			s := counterRE.ReplaceAllString(string(raw), `"packets":0,"bytes":0`)
			s = expiresRE.ReplaceAllString(s, `"expires":0`)
			lines = append(lines, kind+" "+s)
		}
	}
	return strings.Join(lines, "\n")
}

// untouched runs synban args and fails the test unless every other table is
// the same before and after.
func (l *lab) untouched(args ...string) {
	l.t.Helper()
	before := l.others()
	l.mustSynban(args...)
	if after := l.others(); after != before {
		l.t.Fatalf("synban %s changed the other tool's ruleset:\n%s", strings.Join(args, " "), lineDiff(before, after))
	}
}

// lineDiff lists the lines only in a (-) and only in b (+).
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for l := range ma {
		if !mb[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range mb {
		if !ma[l] {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// step runs one action of the other tool, then checks synban still drops
// the attacker (or, where the action removed synban's table, that the next
// `synban run` restores it, reporting how long enforcement was missing),
// that the client still connects, and that a `synban run` leaves the other
// tool's ruleset as it was. It returns how long enforcement was missing
// (zero when it never was).
func (l *lab) step(name string, action func()) time.Duration {
	l.t.Helper()
	start := time.Now()
	action()
	var gap time.Duration
	if err := l.attackerDropped(80); err != nil {
		l.mustSynban("run")
		gap = time.Since(start)
		if err := l.attackerDropped(80); err != nil {
			l.t.Fatalf("after %s and a synban run: %v", name, err)
		}
		report(l.t, "%s removed synban's enforcement (%v); the next synban run restored it, %s after the action began", name, err, gap.Round(time.Millisecond))
	} else {
		report(l.t, "%s: the attacker is still dropped by synban", name)
	}
	if err := l.clientConnects(80); err != nil {
		l.t.Fatalf("after %s: %v", name, err)
	}
	l.settle(name)
	l.untouched("run")
	return gap
}

// settle waits until the other tool's ruleset has stopped changing (the
// same for a second): a daemon may still be finishing what the action
// started, which must not be taken for a change made by synban's run.
func (l *lab) settle(name string) {
	l.t.Helper()
	prev := l.others()
	netnstest.Eventually(l.t, 20*time.Second, func() bool {
		time.Sleep(time.Second)
		cur := l.others()
		same := cur == prev
		prev = cur
		return same
	}, "the other tool's ruleset kept changing for 20 s after %s", name)
}

// finish checks `synban flush` leaves the other tool's ruleset as it was
// and removes synban's table.
func (l *lab) finish() {
	l.t.Helper()
	l.untouched("flush")
	if out, err := l.victim.Run("nft", "list", "table", "inet", "synban"); err == nil {
		l.t.Fatalf("synban's table is still there after flush:\n%s", out)
	}
}

// sandbox runs programs in the victim's network namespace and a private
// mount namespace of their own: a temporary directory over /run, and temporary copies
// bound over the directories the program writes, so the host's files stay
// as they were.
type sandbox struct {
	t      *testing.T
	ns     *netnstest.NS
	binds  [][2]string // temporary copy, host directory
	runDir string      // bound over /run, shared by every program of the sandbox
}

// newSandbox copies each host directory in dirs to a temporary one (a
// directory the host lacks is refused: a bind mount needs a target, and the
// sandbox never creates one on the host) and checks when the test ends that
// the host's directories are byte-identical to what they were.
func newSandbox(t *testing.T, ns *netnstest.NS, dirs ...string) *sandbox {
	t.Helper()
	s := &sandbox{t: t, ns: ns, runDir: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(s.runDir, "lock"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := hashTrees(t, dirs)
	t.Cleanup(func() {
		if after := hashTrees(t, dirs); after != before {
			t.Errorf("the host's %v changed during the test:\n%s", dirs, lineDiff(before, after))
		}
	})
	for _, d := range dirs {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Fatalf("%s is not a directory on this host (installed by the tool's Debian package): %v", d, err)
		}
		tmp := t.TempDir()
		if out, err := exec.Command("cp", "-a", d+"/.", tmp).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v: %s", d, err, out)
		}
		s.binds = append(s.binds, [2]string{tmp, d})
	}
	return s
}

// copyOf is the sandbox's copy of the host directory dir.
func (s *sandbox) copyOf(dir string) string {
	for _, b := range s.binds {
		if b[1] == dir {
			return b[0]
		}
	}
	s.t.Fatalf("%s is not bound in the sandbox", dir)
	return ""
}

// argv is the command line that runs args in the sandbox.
func (s *sandbox) argv(args ...string) []string {
	script := fmt.Sprintf("set -e; mount --bind %q /run", s.runDir)
	for _, b := range s.binds {
		script += fmt.Sprintf("; mount --bind %q %q", b[0], b[1])
	}
	script += `; exec "$@"`
	return append([]string{"nsenter", "--net=" + s.ns.Path(), "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"}, args...)
}

// run runs args in the sandbox, bounded by timeout, and returns the combined
// output.
func (s *sandbox) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := s.argv(args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		return buf.String(), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, buf.String())
	}
	return buf.String(), nil
}

func (s *sandbox) mustRun(timeout time.Duration, args ...string) string {
	s.t.Helper()
	out, err := s.run(timeout, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// start starts a daemon in the sandbox with its output in logPath; stop
// (also called when the test ends) sends SIGTERM and waits up to 15 s.
func (s *sandbox) start(logPath string, args ...string) *daemon {
	s.t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	argv := s.argv(args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %v: %v", args, err)
	}
	d := &daemon{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); close(d.done) }()
	s.t.Cleanup(d.stop)
	return d
}

// daemon is a background program of the other tool.
type daemon struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
	once sync.Once
}

func (d *daemon) stop() {
	d.once.Do(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	})
}

// exited reports whether the daemon has exited.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// logTail is the last bytes of the daemon's log, for failure messages.
func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// hashTrees hashes every file (name, mode, content, symlink target) under
// the given directories, one line per entry.
func hashTrees(t *testing.T, dirs []string) string {
	t.Helper()
	var lines []string
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				lines = append(lines, p+" error "+err.Error())
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				return nil
			}
			h := ""
			switch {
			case fi.Mode().IsRegular():
				b, err := os.ReadFile(p)
				if err != nil {
					h = err.Error()
				} else {
					sum := sha256.Sum256(b)
					h = hex.EncodeToString(sum[:])
				}
			case fi.Mode()&fs.ModeSymlink != 0:
				h, _ = os.Readlink(p)
			}
			lines = append(lines, fmt.Sprintf("%s %v %s", p, fi.Mode(), h))
			return nil
		})
	}
	return strings.Join(lines, "\n")
}
