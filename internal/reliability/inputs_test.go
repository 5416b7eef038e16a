package reliability

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// hostileInput is one bad input given to the synban binary: it must exit
// with want, say what is wrong on stderr (naming mention, when set), and
// change neither the kernel nor the state directory.
type hostileInput struct {
	family, name string
	// args builds the command line; dir is a fresh scratch directory and
	// state the state directory holding a good run's state.
	args func(t *testing.T, dir, state string) []string
	// mention is a string stderr must contain (the path or the value at fault).
	mention func(dir, state string) string
	want    int
}

// hostileInputs lists the bad inputs of TestHostileInputsCLI: every bad
// policy under testdata/policy/bad through check and run, captures, command
// lines, file kinds, modes, owners and symlinks.
func hostileInputs(t *testing.T, good string) []hostileInput {
	t.Helper()
	var out []hostileInput
	add := func(family, name string, mention func(dir, state string) string, args func(t *testing.T, dir, state string) []string) {
		out = append(out, hostileInput{family: family, name: name, args: args, mention: mention, want: 2})
	}
	at := func(s string) func(string, string) string { return func(string, string) string { return s } }
	inDir := func(rel string) func(string, string) string {
		return func(dir, _ string) string { return filepath.Join(dir, rel) }
	}

	// Policies: every malformed policy of the policy package's tests.
	bad, err := filepath.Glob("../../testdata/policy/bad/*.toml")
	if err != nil || len(bad) == 0 {
		t.Fatalf("no bad policies under testdata/policy/bad: %v", err)
	}
	for _, path := range bad {
		abs, err := filepath.Abs(path)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(path)
		for _, cmd := range []string{"check", "run"} {
			add("policy", cmd+" "+base, at(base), func(_ *testing.T, _, state string) []string {
				return withStateDir([]string{cmd, "-c", abs}, state)
			})
		}
	}
	for _, h := range []struct{ name, text string }{
		{"allow 0.0.0.0/0", "[allow]\naddresses = [\"0.0.0.0/0\"]\n"},
		{"allow ::/0", "[allow]\naddresses = [\"::/0\"]\n"},
		{"ban 30000h", "[ban]\nduration = \"30000h\"\nmax_duration = \"30000h\"\n"},
		{"meter idle 30000h", "[meter]\nidle_timeout = \"30000h\"\n"},
	} {
		add("policy", h.name, at("policy.toml"), func(t *testing.T, dir, state string) []string {
			p := filepath.Join(dir, "policy.toml")
			writeFile(t, p, h.text, 0o600)
			return []string{"check", "-c", p}
		})
	}

	// Captures replayed with plan --from.
	capture := func(name string, mk func(t *testing.T, dir string)) {
		add("capture", name, inDir("cap"), func(t *testing.T, dir, state string) []string {
			mk(t, filepath.Join(dir, "cap"))
			return []string{"plan", "-c", good, "--from", filepath.Join(dir, "cap"), "--state-dir", state}
		})
	}
	tcp := func(dir string) string { return filepath.Join(dir, "net", "tcp") }
	mkNet := func(t *testing.T, dir string) {
		if err := os.MkdirAll(filepath.Join(dir, "net"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	capture("missing directory", func(*testing.T, string) {})
	capture("no net/tcp", mkNet)
	capture("net/tcp is a directory", func(t *testing.T, dir string) {
		if err := os.MkdirAll(tcp(dir), 0o700); err != nil {
			t.Fatal(err)
		}
	})
	capture("net/tcp is a FIFO", func(t *testing.T, dir string) {
		mkNet(t, dir)
		mkfifo(t, tcp(dir))
	})
	capture("net/tcp links to a FIFO", func(t *testing.T, dir string) {
		mkNet(t, dir)
		mkfifo(t, filepath.Join(dir, "fifo"))
		symlink(t, filepath.Join(dir, "fifo"), tcp(dir))
	})
	capture("net/tcp links to /dev/zero", func(t *testing.T, dir string) {
		mkNet(t, dir)
		symlink(t, "/dev/zero", tcp(dir))
	})
	capture("net/tcp is a socket", func(t *testing.T, dir string) {
		mkNet(t, dir)
		mksocket(t, tcp(dir))
	})
	for name, text := range map[string]string{
		"garbage lines": strings.Repeat("this is not a /proc/net/tcp line\n", 100),
		"binary":        strings.Repeat("\x00\x01\xfe\xff", 4096),
		"only absurd":   "  sl  local_address rem_address   st\n" + strings.Join(absurdLines, "\n") + "\n",
		"one huge line": strings.Repeat("F", 4<<20),
	} {
		capture(name, func(t *testing.T, dir string) {
			mkNet(t, dir)
			writeFile(t, tcp(dir), text, 0o600)
		})
	}

	// Command lines.
	for _, args := range [][]string{
		{"frobnicate"},
		{"run", "--no-such-flag"},
		{"run", "--backend", "pf"},
		{"plan", "--format", "pf"},
		{"run", "--log-level", "loud"},
		{"run", "extra-argument"},
		{"run", "--from", "/proc"},
		{"status", "extra-argument"},
		{"flush", "extra-argument"},
		{"version", "extra-argument"},
		{"watch", "--every", "1ms"},
		{"watch", "--every", "soon"},
		{"render", "pf"},
		{"render"},
		{"unban"},
		{"unban", "not-an-address"},
		{"ban"},
		{"ban", "192.0.2.1", "192.0.2.2"},
		{"ban", ""},
		{"ban", "192.0.2"},
		{"ban", "192.0.2.1/33"},
		{"ban", "192.0.2.1/24"},
		{"ban", "2001:db8::1/129"},
		{"ban", "fe80::1%eth0"},
		{"ban", "0.0.0.0/0"},
		{"ban", "::/0"},
		{"ban", "::ffff:0.0.0.0/96"},
		{"ban", "1.0.0.0/8"},
		{"ban", "2000::/3"},
		{"ban", "127.0.0.1"},
		{"ban", "::1"},
		{"ban", "::ffff:127.0.0.1"},
		{"ban", "192.0.2.1", "--for", "-1s"},
		{"ban", "192.0.2.1", "--for", "0"},
		{"ban", "192.0.2.1", "--for", "1ns"},
		{"ban", "192.0.2.1", "--for", "forever"},
		{"ban", "192.0.2.1", "--backend", "pf"},
	} {
		add("argument", strings.Join(args, " "), nil, func(_ *testing.T, _, state string) []string {
			return append(append([]string(nil), args...), "-c", good, "--state-dir", state)
		})
	}

	// File kinds given as the policy.
	kind := func(name string, mk func(t *testing.T, path string)) {
		add("file kind", "policy is "+name, inDir("p.toml"), func(t *testing.T, dir, _ string) []string {
			p := filepath.Join(dir, "p.toml")
			mk(t, p)
			return []string{"check", "-c", p}
		})
	}
	kind("missing", func(*testing.T, string) {})
	kind("a directory", func(t *testing.T, p string) {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	})
	kind("a FIFO", mkfifo)
	kind("a socket", mksocket)
	kind("a link to /dev/null", func(t *testing.T, p string) { symlink(t, "/dev/null", p) })
	kind("a link to /dev/zero", func(t *testing.T, p string) { symlink(t, "/dev/zero", p) })
	kind("a dangling link", func(t *testing.T, p string) { symlink(t, p+".gone", p) })
	kind("a link loop", func(t *testing.T, p string) {
		symlink(t, p+".b", p)
		symlink(t, p, p+".b")
	})
	kind("a link to a FIFO", func(t *testing.T, p string) {
		mkfifo(t, p+".fifo")
		symlink(t, p+".fifo", p)
	})

	// Modes and owners of the policy and the directories above it, as root.
	mode := func(name string, mention func(dir, state string) string, mk func(t *testing.T, dir, p string)) {
		add("mode", name, mention, func(t *testing.T, dir, state string) []string {
			p := filepath.Join(dir, "p.toml")
			mk(t, dir, p)
			return []string{"status", "-c", p, "--state-dir", state}
		})
	}
	for _, m := range []fs.FileMode{0o666, 0o662, 0o646, 0o620, 0o602, 0o777} {
		mode(fmt.Sprintf("policy mode %04o", m), inDir("p.toml"), func(t *testing.T, _, p string) {
			writeFile(t, p, "", m)
		})
	}
	mode("policy owned by nobody", inDir("p.toml"), func(t *testing.T, _, p string) {
		writeFile(t, p, "", 0o644)
		chown(t, p, 65534)
	})
	for _, m := range []fs.FileMode{0o777, 0o775, 0o757} {
		mode(fmt.Sprintf("policy's directory mode %04o", m), inDir(""), func(t *testing.T, dir, p string) {
			writeFile(t, p, "", 0o600)
			chmod(t, dir, m)
		})
	}
	mode("policy's directory owned by nobody", inDir(""), func(t *testing.T, dir, p string) {
		writeFile(t, p, "", 0o600)
		chown(t, dir, 65534)
	})
	mode("policy links into a writable directory", inDir("open"), func(t *testing.T, dir, p string) {
		open := filepath.Join(dir, "open")
		if err := os.Mkdir(open, 0o700); err != nil {
			t.Fatal(err)
		}
		chmod(t, open, 0o777)
		writeFile(t, filepath.Join(open, "real.toml"), "", 0o600)
		symlink(t, filepath.Join(open, "real.toml"), p)
	})
	mode("iptables path in a writable directory", inDir("bin"), func(t *testing.T, dir, p string) {
		open := filepath.Join(dir, "bin")
		if err := os.Mkdir(open, 0o700); err != nil {
			t.Fatal(err)
		}
		chmod(t, open, 0o777)
		script := filepath.Join(open, "iptables")
		writeFile(t, script, "#!/bin/sh\ntouch "+filepath.Join(dir, "ran")+"\n", 0o755)
		writeFile(t, p, fmt.Sprintf("backend = \"iptables\"\n[iptables]\npath = %q\n", script), 0o600)
	})
	mode("iptables path owned by nobody", inDir("iptables"), func(t *testing.T, dir, p string) {
		script := filepath.Join(dir, "iptables")
		writeFile(t, script, "#!/bin/sh\ntouch "+filepath.Join(dir, "ran")+"\n", 0o755)
		chown(t, script, 65534)
		writeFile(t, p, fmt.Sprintf("backend = \"iptables\"\n[iptables]\npath = %q\n", script), 0o600)
	})
	mode("iptables path relative", at("bin/iptables"), func(t *testing.T, _, p string) {
		writeFile(t, p, "backend = \"iptables\"\n[iptables]\npath = \"bin/iptables\"\n", 0o600)
	})

	// The state directory: kinds, modes, owners, planted links. Each case
	// gets its own copy of the good state in dir/state.
	stateCase := func(name string, mention func(dir, state string) string, mk func(t *testing.T, dir, sd string) string) {
		for _, cmd := range []string{"run", "ban"} {
			add("state", cmd+": "+name, mention, func(t *testing.T, dir, state string) []string {
				sd := filepath.Join(dir, "state")
				copyDir(t, state, sd)
				target := mk(t, dir, sd)
				args := []string{cmd, "-c", good, "--state-dir", target}
				if cmd == "ban" {
					args = append(args, "192.0.2.77")
				}
				return args
			})
		}
	}
	sub := func(rel string) func(dir, state string) string {
		return func(dir, _ string) string { return filepath.Join(dir, "state", rel) }
	}
	stateCase("directory is a link", inDir("link"), func(t *testing.T, dir, sd string) string {
		symlink(t, sd, filepath.Join(dir, "link"))
		return filepath.Join(dir, "link")
	})
	stateCase("directory is a file", inDir("file"), func(t *testing.T, dir, _ string) string {
		writeFile(t, filepath.Join(dir, "file"), "", 0o600)
		return filepath.Join(dir, "file")
	})
	for _, m := range []fs.FileMode{0o770, 0o707, 0o777} {
		stateCase(fmt.Sprintf("directory mode %04o", m), sub(""), func(t *testing.T, _, sd string) string {
			chmod(t, sd, m)
			return sd
		})
	}
	stateCase("directory owned by nobody", sub(""), func(t *testing.T, _, sd string) string {
		chown(t, sd, 65534)
		return sd
	})
	stateCase("lock links elsewhere", sub("lock"), func(t *testing.T, dir, sd string) string {
		writeFile(t, filepath.Join(dir, "victim"), "precious\n", 0o644)
		_ = os.Remove(filepath.Join(sd, "lock"))
		symlink(t, filepath.Join(dir, "victim"), filepath.Join(sd, "lock"))
		return sd
	})
	stateCase("lock is a FIFO", sub("lock"), func(t *testing.T, _, sd string) string {
		_ = os.Remove(filepath.Join(sd, "lock"))
		mkfifo(t, filepath.Join(sd, "lock"))
		return sd
	})
	// The database, and the state.json of earlier synbans that a run
	// imports: neither is followed, read as a FIFO or opened as a directory.
	for _, name := range []string{"state.db", "state.json"} {
		stateCase(name+" links elsewhere", sub(name), func(t *testing.T, dir, sd string) string {
			writeFile(t, filepath.Join(dir, "victim"), "{}\n", 0o644)
			_ = os.Remove(filepath.Join(sd, name))
			symlink(t, filepath.Join(dir, "victim"), filepath.Join(sd, name))
			return sd
		})
		stateCase(name+" is a FIFO", sub(name), func(t *testing.T, _, sd string) string {
			_ = os.Remove(filepath.Join(sd, name))
			mkfifo(t, filepath.Join(sd, name))
			return sd
		})
		stateCase(name+" is a directory", sub(name), func(t *testing.T, _, sd string) string {
			_ = os.Remove(filepath.Join(sd, name))
			if err := os.Mkdir(filepath.Join(sd, name), 0o700); err != nil {
				t.Fatal(err)
			}
			return sd
		})
	}
	return out
}

// TestHostileInputsCLI gives the synban binary, in a namespace holding a
// ruleset a good run applied, several hundred bad inputs: malformed
// policies, captures and command lines, files of the wrong kind, unsafe
// modes and owners, and symlinks planted in the state directory. Each must
// exit 2 within seconds with a bounded message naming what is wrong, leave
// the kernel's ruleset and the state directory as they were, and leave any
// file a planted link points to untouched.
func TestHostileInputsCLI(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, "inputs")
	state := t.TempDir()
	good := writePolicy(t, killPolicy)
	if code, _, stderr := runSynban(t, ns, "run", "-c", good, "--state-dir", state); code != 0 {
		t.Fatalf("good run exited %d: %s", code, stderr)
	}
	ruleset := ns.MustRun("nft", "-s", "list", "ruleset")
	stateBefore := snapshot(t, state)
	families := map[string]int{}
	for _, h := range hostileInputs(t, good) {
		dir := t.TempDir()
		args := h.args(t, dir, state)
		victims := snapshot(t, dir)
		began := time.Now()
		code, _, stderr := runSynban(t, ns, args...)
		took := time.Since(began)
		families[h.family]++
		where := fmt.Sprintf("%s %q (synban %s)", h.family, h.name, strings.Join(args, " "))
		if code != h.want {
			t.Errorf("%s: exit %d, want %d: %.300s", where, code, h.want, stderr)
		}
		if strings.TrimSpace(stderr) == "" {
			t.Errorf("%s: nothing on stderr says what is wrong", where)
		}
		if len(stderr) > 64<<10 {
			t.Errorf("%s: %d bytes on stderr, want a clear message under 64 KiB", where, len(stderr))
		}
		if h.mention != nil {
			if m := h.mention(dir, state); !strings.Contains(stderr, strings.TrimSuffix(m, "/")) {
				t.Errorf("%s: stderr does not name %q: %.300s", where, m, stderr)
			}
		}
		if took > 10*time.Second {
			t.Errorf("%s: took %s", where, took)
		}
		if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
			t.Errorf("%s: a refused program was executed", where)
		}
		if got := ns.MustRun("nft", "-s", "list", "ruleset"); got != ruleset {
			t.Fatalf("%s: the ruleset changed:\n%s\nwant:\n%s", where, got, ruleset)
		}
		if got := snapshot(t, state); got != stateBefore {
			t.Fatalf("%s: the state directory changed:\n%s\nwant:\n%s", where, got, stateBefore)
		}
		if got := snapshot(t, dir); !unchangedExceptState(victims, got) {
			t.Errorf("%s: files outside the state directory changed:\n%s\nwant:\n%s", where, got, victims)
		}
	}
	total := 0
	var parts []string
	for f, n := range families {
		total += n
		parts = append(parts, fmt.Sprintf("%s %d", f, n))
	}
	sort.Strings(parts)
	report(t, "%d hostile inputs (%s) exited 2 with the ruleset and the state directory unchanged", total, strings.Join(parts, ", "))
	if total < 200 {
		t.Errorf("only %d hostile inputs, want at least 200", total)
	}
}

// unchangedExceptState compares two snapshots of a case's scratch
// directory, ignoring the copy of the state directory (its lock may be
// created by a run that then refuses something else).
func unchangedExceptState(before, after string) bool {
	strip := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(l, "state/") && !strings.HasPrefix(l, "state ") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	return strip(before) == strip(after)
}

// snapshot lists every entry below dir with its kind, mode, owner, size,
// modification time and, for regular files and links, content or target.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b bytes.Buffer
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v uid=%d size=%d mtime=%d", rel, fi.Mode(), st.Uid, fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			fmt.Fprintf(&b, " -> %s", target)
		case fi.Mode().IsRegular() && fi.Size() < 1<<16:
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %q", data)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return b.String()
}

func writeFile(t *testing.T, path, text string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, mode) // WriteFile's mode is filtered by the umask
}

func chmod(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func chown(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Lchown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo %s: %v", path, err)
	}
}

// mksocket leaves a unix socket file at path.
func mksocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the regular files of src into a new directory dst (0700),
// keeping their modes.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dst, e.Name()), string(data), fi.Mode().Perm())
	}
}
