package trust

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// fakeInfo is an fs.FileInfo with a given owner and st_mode.
type fakeInfo struct {
	uid  uint32
	mode uint32 // st_mode: type and permission bits
}

func (f fakeInfo) Name() string       { return "x" }
func (f fakeInfo) Size() int64        { return 0 }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode&syscall.S_IFMT == syscall.S_IFDIR }
func (f fakeInfo) Sys() any           { return &syscall.Stat_t{Uid: f.uid, Mode: f.mode} }
func (f fakeInfo) Mode() fs.FileMode {
	m := fs.FileMode(f.mode & 0o777)
	if f.IsDir() {
		m |= fs.ModeDir
	}
	if f.mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// TestCheckEntryModes is the mode and owner logic alone, without touching
// the file system.
func TestCheckEntryModes(t *testing.T) {
	o := owners{uids: []int{0, 1000}, desc: "root or the invoking user (uid 1000)"}
	dir, reg := uint32(syscall.S_IFDIR), uint32(syscall.S_IFREG)
	for _, tc := range []struct {
		name string
		fi   fakeInfo
		want string // "" means accepted; else a substring of the refusal
	}{
		{"root dir 0755", fakeInfo{0, dir | 0o755}, ""},
		{"root dir 0700", fakeInfo{0, dir | 0o700}, ""},
		{"invoker's dir 0755", fakeInfo{1000, dir | 0o755}, ""},
		{"root file 0644", fakeInfo{0, reg | 0o644}, ""},
		{"root file 0600 setuid", fakeInfo{0, reg | 0o4755}, ""},
		{"sticky dir 1777", fakeInfo{0, dir | 0o1777}, ""},
		{"sticky group-writable dir 1775", fakeInfo{0, dir | 0o1775}, ""},
		{"world-writable dir", fakeInfo{0, dir | 0o777}, "(owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w /p"},
		{"group-writable dir", fakeInfo{0, dir | 0o775}, "mode 0775): writable by group; fix: chmod go-w /p"},
		{"other-writable dir", fakeInfo{0, dir | 0o757}, "mode 0757): writable by others; fix: chmod go-w /p"},
		{"world-writable file", fakeInfo{0, reg | 0o666}, "mode 0666): writable by group and others; fix: chmod go-w /p"},
		{"sticky does not excuse a file", fakeInfo{0, reg | 0o1666}, "writable by group and others"},
		{"another user's file", fakeInfo{65534, reg | 0o644}, "uid 65534, mode 0644): not owned by root or the invoking user (uid 1000); fix: chown root /p"},
		{"another user's sticky dir", fakeInfo{65534, dir | 0o1777}, "not owned by root"},
	} {
		err := checkEntry("thing", "/p", tc.fi, o)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: refused: %v", tc.name, err)
			}
			continue
		}
		var te *Error
		if !errors.As(err, &te) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "untrusted thing /p ") {
			t.Errorf("%s: got %v, want an *Error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestOpenRegularRefusesFIFO: a FIFO is refused at once (the open does not
// wait for a writer: a hang here ends the test by its timeout), with or
// without following links, and through a symbolic link.
func TestOpenRegularRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "f.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path   string
		follow bool
		want   string
	}{
		{fifo, true, "untrusted file " + fifo + " "},
		{fifo, false, "not a regular file: fifo"},
		{link, true, "not a regular file: fifo"},
		{link, false, "a symbolic link (to " + fifo + ")"},
		{dir, true, "not a regular file: directory"},
	} {
		f, err := OpenRegular(tc.path, tc.follow)
		var te *Error
		if err == nil {
			f.Close()
		}
		if !errors.As(err, &te) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenRegular(%s, %v): %v, want an *Error containing %q", tc.path, tc.follow, err, tc.want)
		}
	}
	if _, err := OpenRegular(filepath.Join(dir, "missing"), true); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

// TestOpenRegularReadsFiles: a regular file is read in full and blocking
// mode is back; a procfs file (regular, size 0) is accepted too.
func TestOpenRegularReadsFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "p")
	if err := os.WriteFile(p, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenRegular(p, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := fcntlFlags(f)
	if err != nil {
		t.Fatal(err)
	}
	if flags&syscall.O_NONBLOCK != 0 {
		t.Errorf("O_NONBLOCK still set on %s", p)
	}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		t.Errorf("opened with flags %#o, want read-only", flags)
	}
	buf := make([]byte, 16)
	if n, _ := f.Read(buf); string(buf[:n]) != "hello\n" {
		t.Errorf("read %q", buf[:n])
	}
	pf, err := OpenRegular("/proc/net/tcp", true)
	if err != nil {
		t.Fatalf("procfs file refused: %v", err)
	}
	pf.Close()
}

func fcntlFlags(f *os.File) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFL, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// TestOpenFileNoFollow: OpenFile never follows a planted link, even to
// create, and leaves the link's target alone.
func TestOpenFileNoFollow(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(dir, "lock")
	if err := os.Symlink(target, lock); err != nil {
		t.Fatal(err)
	}
	_, err := OpenFile(lock, os.O_RDWR|os.O_CREATE, 0o600)
	var te *Error
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "untrusted file "+lock) || !strings.Contains(err.Error(), "a symbolic link (to "+target+")") {
		t.Fatalf("OpenFile of a link: %v", err)
	}
	if data, _ := os.ReadFile(target); string(data) != "keep" {
		t.Fatalf("target changed: %q", data)
	}
	f, err := OpenFile(filepath.Join(dir, "new"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	f.Close()
	if fi.Mode().Perm()&^0o600 != 0 {
		t.Errorf("created with mode %v, want at most 0600", fi.Mode())
	}
}

// TestProgramFixedPath: a program name is found in SystemPath whatever
// $PATH says, and a relative configured path is refused.
func TestProgramFixedPath(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "sh")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	p, err := Program("sh", "")
	if err != nil {
		t.Fatal(err)
	}
	if p == fake || !strings.HasPrefix(p, "/") {
		t.Errorf("Program(sh) = %s, want one from %s", p, SystemPath)
	}
	if p2, err := Program("iptables", "sh"); err != nil || p2 != p {
		t.Errorf("configured name sh: %s, %v; want %s", p2, err, p)
	}
	var te *Error
	if _, err := Program("iptables", "bin/iptables"); !errors.As(err, &te) || !strings.Contains(err.Error(), "untrusted program bin/iptables: not an absolute path") {
		t.Errorf("relative path: %v", err)
	}
	if _, err := Program("no-such-program-synban", ""); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing program: %v", err)
	}
	if _, err := Program("iptables", dir); !errors.As(err, &te) || !strings.Contains(err.Error(), "not a regular file: directory") {
		t.Errorf("directory as program: %v", err)
	}
}

// mkdir makes a directory with exactly mode m (umask aside).
func mkdir(t *testing.T, p string, m os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(p, uint32(m)); err != nil { // raw bits: 0o1777 is sticky
		t.Fatal(err)
	}
	return p
}

// write makes a file with exactly mode m.
func write(t *testing.T, p string, m os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(p, []byte("#!/bin/sh\ntouch \"$0.ran\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
	return p
}

// refused asserts err is an *Error refusing path with want in its message.
func refused(t *testing.T, what string, err error, path, want string) {
	t.Helper()
	var te *Error
	if !errors.As(err, &te) || te.Path != path || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: got %v; want a refusal of %s containing %q", what, err, path, want)
	}
}

// TestChecksAsRoot exercises CheckFile, CheckDir and Program on real files
// owned by root and by uid 65534.
func TestChecksAsRoot(t *testing.T) {
	netnstest.RequireRoot(t)
	base := mkdir(t, filepath.Join(t.TempDir(), "base"), 0o755)

	good := write(t, filepath.Join(base, "good"), 0o644)
	if err := CheckFile(good); err != nil {
		t.Errorf("root 0644 file in root 0755 dirs: %v", err)
	}
	if err := CheckDir(base); err != nil {
		t.Errorf("root 0755 dir: %v", err)
	}

	ww := write(t, filepath.Join(base, "ww"), 0o666)
	refused(t, "world-writable file", CheckFile(ww), ww, "mode 0666): writable by group and others; fix: chmod go-w "+ww)

	open := mkdir(t, filepath.Join(base, "open"), 0o777)
	inOpen := write(t, filepath.Join(open, "p.toml"), 0o644)
	refused(t, "file in a 0777 dir", CheckFile(inOpen), open, "untrusted directory "+open+" (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w "+open)
	refused(t, "0777 dir", CheckDir(open), open, "chmod go-w")

	gw := mkdir(t, filepath.Join(base, "gw"), 0o770)
	refused(t, "group-writable dir", CheckDir(gw), gw, "mode 0770): writable by group;")

	sticky := mkdir(t, filepath.Join(base, "sticky"), 0o1777)
	inSticky := write(t, filepath.Join(sticky, "p.toml"), 0o644)
	if err := CheckFile(inSticky); err != nil {
		t.Errorf("root file in a sticky 1777 dir: %v", err)
	}

	nobody := write(t, filepath.Join(base, "nobody"), 0o644)
	if err := os.Chown(nobody, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	refused(t, "file owned by 65534", CheckFile(nobody), nobody, "uid 65534, mode 0644): not owned by root; fix: chown root "+nobody)
	plant := write(t, filepath.Join(sticky, "planted"), 0o644)
	if err := os.Chown(plant, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	refused(t, "another user's file in a sticky dir", CheckFile(plant), plant, "not owned by root")

	nd := mkdir(t, filepath.Join(base, "nd"), 0o755)
	if err := os.Chown(nd, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	inND := write(t, filepath.Join(nd, "p.toml"), 0o644)
	refused(t, "root file in another user's dir", CheckFile(inND), nd, "untrusted directory "+nd)

	// Links: the target and its directories are what is checked; a link
	// owned by another user in a sticky directory is refused itself.
	link := filepath.Join(base, "link")
	if err := os.Symlink(inOpen, link); err != nil {
		t.Fatal(err)
	}
	refused(t, "link to a file in a 0777 dir", CheckFile(link), open, "writable by group and others")
	rel := filepath.Join(base, "rel")
	if err := os.Symlink("sticky/../good", rel); err != nil {
		t.Fatal(err)
	}
	if err := CheckFile(rel); err != nil {
		t.Errorf("relative link to a good file: %v", err)
	}
	badLink := filepath.Join(sticky, "badlink")
	if err := os.Symlink(good, badLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(badLink, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	refused(t, "another user's link in a sticky dir", CheckFile(badLink), badLink, "untrusted symbolic link "+badLink)
	loop := filepath.Join(base, "loop")
	if err := os.Symlink("loop", loop); err != nil {
		t.Fatal(err)
	}
	if err := CheckFile(loop); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("link loop: %v", err)
	}
	if err := CheckFile(filepath.Join(good, "x")); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("file as directory: %v", err)
	}
	if err := CheckFile(filepath.Join(base, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	fifo := filepath.Join(base, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	refused(t, "fifo", CheckFile(fifo), fifo, "not a regular file: fifo")

	// Programs: root's only.
	prog := write(t, filepath.Join(base, "iptables"), 0o755)
	if p, err := Program("iptables", prog); err != nil || p != prog {
		t.Errorf("root 0755 program: %s, %v", p, err)
	}
	progLink := filepath.Join(base, "iptables-link")
	if err := os.Symlink("iptables", progLink); err != nil {
		t.Fatal(err)
	}
	if p, err := Program("iptables", progLink); err != nil || p != progLink {
		t.Errorf("link to a good program: got %s, %v; want the link's own path", p, err)
	}
	script := write(t, filepath.Join(open, "iptables"), 0o755)
	_, err := Program("iptables", script)
	refused(t, "program in a 0777 dir", err, open, "untrusted directory "+open)
	if err := os.Chown(prog, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err = Program("iptables", prog)
	refused(t, "program owned by 65534", err, prog, "untrusted program "+prog+" (owner nobody, uid 65534, mode 0755): not owned by root; fix: chown root "+prog)
	noexec := write(t, filepath.Join(base, "noexec"), 0o644)
	_, err = Program("iptables", noexec)
	refused(t, "program not executable", err, noexec, "not executable")
	if _, err := os.Stat(script + ".ran"); err == nil {
		t.Error("a checked program ran")
	}
	for _, name := range []string{"sh", "iptables", "ip6tables", "ipset"} {
		if _, err := os.Stat("/usr/sbin/" + name); err != nil && name != "sh" {
			continue
		}
		if _, err := Program(name, ""); err != nil {
			t.Errorf("system program %s: %v", name, err)
		}
	}
}

// TestInvokerFilesAccepted: root and the real uid are the trusted owners;
// another uid is not, and SUDO_UID does not make it one.
func TestInvokerFilesAccepted(t *testing.T) {
	o := fileOwners()
	if !o.ok(0) || !o.ok(os.Getuid()) {
		t.Errorf("owners %v lack root or the invoking user %d", o.uids, os.Getuid())
	}
	if o.ok(65534) && os.Getuid() != 65534 {
		t.Errorf("owners %v accept uid 65534", o.uids)
	}
	t.Setenv("SUDO_UID", "65534")
	if o := fileOwners(); o.ok(65534) && os.Getuid() != 65534 {
		t.Errorf("SUDO_UID=65534 made uid 65534 trusted")
	}
}
