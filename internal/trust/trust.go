// Package trust decides which files and programs synban may read or execute
// when it runs as root, in the manner of sshd's StrictModes and sudo.
//
// A file synban reads as root (the policy, the state directory and its
// files) is trusted when it, and every directory on the way to it from /,
// symbolic links resolved, is owned by root or by the invoking user (the
// real uid, os.Getuid) and is not writable by group or others. A directory
// writable by others is accepted when it has the sticky bit (like /tmp):
// only an entry's own owner can then remove or rename it, and every entry on
// the way must itself be trusted. A program synban executes (iptables,
// ip6tables) must likewise be owned by root alone.
//
// SUDO_UID is deliberately not trusted: a user allowed by sudoers to run
// only "synban run" could otherwise name a policy of their own whose
// [iptables] path runs any program as root. Run from sudo, synban reads
// files owned by root (chown root FILE), not the sudo caller's.
//
// The ownership checks apply only when the effective uid is 0: an ordinary
// user running synban (plan, check) can only hurt themselves. The checks
// that keep synban from hanging or from being pointed at the wrong thing
// (OpenRegular refusing FIFOs and devices, Program refusing relative paths
// and resolving names in a fixed PATH) apply to everyone.
package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// SystemPath is the fixed search path in which Program resolves a program
// name. The caller's $PATH is never used.
const SystemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// maxSymlinks bounds the symbolic links followed while resolving one path,
// as the kernel's ELOOP limit does.
const maxSymlinks = 40

// Error is a refusal: a file, directory or program synban will not trust or
// will not read. Its message names the path, the owner and the mode, says
// what is wrong and how to fix it:
//
//	untrusted directory /srv/x (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w /srv/x
type Error struct {
	// Kind is what Path is: "file", "directory", "program" or "symbolic link".
	Kind string
	// Path is the refused path: the file itself or a directory above it.
	Path string
	// UID is Path's owner, or -1 when Path could not be examined.
	UID int
	// Mode is Path's permission bits with setuid, setgid and sticky
	// (st_mode & 07777).
	Mode uint32
	// Problem says what is wrong ("writable by group and others").
	Problem string
	// Fix is the command or step that fixes it, or "".
	Fix string
}

// Error renders "untrusted KIND PATH (owner NAME, uid N, mode 0MMM): PROBLEM; fix: FIX".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("untrusted " + e.Kind + " " + e.Path)
	if e.UID >= 0 {
		fmt.Fprintf(&b, " (owner %s, uid %d, mode %04o)", ownerName(e.UID), e.UID, e.Mode)
	}
	b.WriteString(": " + e.Problem)
	if e.Fix != "" {
		b.WriteString("; fix: " + e.Fix)
	}
	return b.String()
}

// ownerName returns the user name of uid, or "uid N" when it has none.
func ownerName(uid int) string {
	if uid == 0 {
		return "root"
	}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}

// Enforced reports whether the ownership and mode checks apply: when the
// effective uid is 0.
func Enforced() bool { return os.Geteuid() == 0 }

// owners is the set of uids a checked path may be owned by.
type owners struct {
	uids []int
	// desc names them in a refusal ("root or the invoking user").
	desc string
}

func (o owners) ok(uid int) bool {
	for _, u := range o.uids {
		if u == uid {
			return true
		}
	}
	return false
}

// fileOwners are the owners a file synban reads may have: root and the
// invoking (real) user.
func fileOwners() owners {
	if uid := os.Getuid(); uid != 0 {
		return owners{uids: []int{0, uid}, desc: "root or the invoking user (uid " + strconv.Itoa(uid) + ")"}
	}
	return owners{uids: []int{0}, desc: "root"}
}

// rootOnly are the owners a program synban runs may have.
var rootOnly = owners{uids: []int{0}, desc: "root"}

// Refusal is the Error refusing path (of the given kind), whose Lstat is fi,
// for a problem found by the caller, such as a state directory that is a
// symbolic link.
func Refusal(kind, path string, fi fs.FileInfo, problem, fix string) *Error {
	uid, mode := statOf(fi)
	return &Error{Kind: kind, Path: path, UID: uid, Mode: mode, Problem: problem, Fix: fix}
}

// TypeName names the type of a file ("regular file", "directory", "fifo",
// "symbolic link", ...), for messages.
func TypeName(m fs.FileMode) string { return typeName(m) }

// statOf returns fi's owner and permission bits (with setuid, setgid, sticky).
func statOf(fi fs.FileInfo) (uid int, mode uint32) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), st.Mode & 0o7777
	}
	return -1, uint32(fi.Mode().Perm())
}

// typeName names the type of a file that is not regular.
func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m.IsRegular():
		return "regular file"
	}
	return "irregular file"
}

// refuse builds the Error for path described by fi.
func refuse(kind, path string, fi fs.FileInfo, problem, fix string) *Error {
	e := &Error{Kind: kind, Path: path, UID: -1, Problem: problem, Fix: fix}
	if fi != nil {
		e.UID, e.Mode = statOf(fi)
	}
	return e
}

// notRegularFix is the fix of a refusal to read what is not a regular file.
const notRegularFix = "synban reads only regular files; replace it with one"

// notRegular returns the refusal of path, which fi describes and which is
// not a regular file.
func notRegular(kind, path string, fi fs.FileInfo) *Error {
	return refuse(kind, path, fi, "not a regular file: "+typeName(fi.Mode()), notRegularFix)
}

// checkEntry checks one path component (not a symbolic link) against o:
// owner, and writability by group and others (allowed for a sticky
// directory).
func checkEntry(kind, path string, fi fs.FileInfo, o owners) error {
	uid, mode := statOf(fi)
	if !o.ok(uid) {
		return refuse(kind, path, fi, "not owned by "+o.desc, "chown root "+path)
	}
	w := mode & 0o022
	if w == 0 || (fi.IsDir() && mode&0o1000 != 0) {
		return nil
	}
	who := map[uint32]string{0o020: "group", 0o002: "others", 0o022: "group and others"}[w]
	return refuse(kind, path, fi, "writable by "+who, "chmod go-w "+path)
}

// split returns the non-empty, non-"." components of a slash-separated path.
func split(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// walk resolves path component by component, as the kernel does, checking
// every directory passed through, every symbolic link followed and the
// final entry against o. kind names the final entry in a refusal. It
// returns the resolved path and the final entry's FileInfo.
func walk(path, kind string, o owners) (string, fs.FileInfo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", nil, fmt.Errorf("resolve %s: %w", path, err)
	}
	root, err := os.Lstat("/")
	if err != nil {
		return "", nil, err
	}
	if err := checkEntry("directory", "/", root, o); err != nil {
		return "", nil, err
	}
	cur, fi := "/", root
	todo := split(abs)
	links := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		if name == ".." {
			cur = filepath.Dir(cur) // already checked on the way down
			if fi, err = os.Lstat(cur); err != nil {
				return "", nil, err
			}
			continue
		}
		next := filepath.Join(cur, name)
		if fi, err = os.Lstat(next); err != nil {
			return "", nil, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			// A link in a directory checked above cannot be replaced by
			// anyone untrusted; in a sticky directory its owner can.
			if err := checkOwner("symbolic link", next, fi, o); err != nil {
				return "", nil, err
			}
			if links++; links > maxSymlinks {
				return "", nil, &fs.PathError{Op: "resolve", Path: path, Err: syscall.ELOOP}
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", nil, err
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			todo = append(split(target), todo...)
			continue
		}
		if !fi.IsDir() && len(todo) > 0 {
			return "", nil, &fs.PathError{Op: "resolve", Path: path, Err: syscall.ENOTDIR}
		}
		k := "directory"
		if !fi.IsDir() {
			k = kind
		}
		if err := checkEntry(k, next, fi, o); err != nil {
			return "", nil, err
		}
		cur = next
	}
	return cur, fi, nil
}

// checkOwner checks only the owner of path.
func checkOwner(kind, path string, fi fs.FileInfo, o owners) error {
	if uid, _ := statOf(fi); !o.ok(uid) {
		return refuse(kind, path, fi, "not owned by "+o.desc, "chown -h root "+path)
	}
	return nil
}

// CheckFile checks, when running as root, that path (symbolic links
// resolved) is a regular file that synban may trust: it and every directory
// above it owned by root or the invoking user and not writable by group or
// others (a sticky directory excepted). A refusal is an *Error; a path that
// cannot be examined returns the *fs.PathError. Not enforced (nil) when the
// effective uid is not 0.
func CheckFile(path string) error {
	if !Enforced() {
		return nil
	}
	resolved, fi, err := walk(path, "file", fileOwners())
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return notRegular("file", resolved, fi)
	}
	return nil
}

// CheckDir is CheckFile for a directory: path must resolve to a directory
// that it and every directory above it are trusted.
func CheckDir(path string) error {
	if !Enforced() {
		return nil
	}
	resolved, fi, err := walk(path, "directory", fileOwners())
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return refuse("directory", resolved, fi, "not a directory: "+typeName(fi.Mode()), "")
	}
	return nil
}

// OpenRegular opens path read-only and returns it only when it is a regular
// file; anything else (a FIFO, a device, a socket, a directory) is refused
// at once with an *Error, without blocking: the open uses O_NONBLOCK, which
// is cleared again on the regular file it returns. With follow false a
// symbolic link is refused too (O_NOFOLLOW). A path that cannot be opened
// returns the *fs.PathError (errors.Is(err, fs.ErrNotExist) works).
// Files in procfs, which are regular with size 0, are accepted.
func OpenRegular(path string, follow bool) (*os.File, error) {
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := openFD(path, flags, 0)
	if err != nil {
		return nil, symlinkRefusal(path, err)
	}
	return regularFile(fd, path)
}

// openFD is open(2) retried on EINTR, returning an *fs.PathError.
func openFD(path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags, mode)
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, syscall.EINTR) {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
	}
}

// regularFile returns fd as an *os.File when it is a regular file, with
// O_NONBLOCK cleared; otherwise it closes fd and refuses.
func regularFile(fd int, path string) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, &Error{Kind: "file", Path: path, UID: int(st.Uid), Mode: st.Mode & 0o7777,
			Problem: "not a regular file: " + typeName(modeType(st.Mode)), Fix: notRegularFix}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// modeType converts st_mode's file type to an fs.FileMode type.
func modeType(m uint32) fs.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	case unix.S_IFREG:
		return 0
	}
	return fs.ModeIrregular
}

// OpenFile opens (and with flag O_CREATE creates, with mode perm) path
// without following a symbolic link in its last component (O_NOFOLLOW,
// O_CLOEXEC, and O_NONBLOCK until it is known to be a regular file) and
// returns it only when it is a regular file; a symbolic link or anything
// not regular is refused with an *Error. It never truncates: a caller that
// wants to truncate does it on the returned file, which is known to be
// regular. flag takes os.O_RDONLY, os.O_RDWR, os.O_WRONLY, os.O_CREATE and
// os.O_EXCL.
func OpenFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	flags := flag&(os.O_RDONLY|os.O_RDWR|os.O_WRONLY|os.O_CREATE|os.O_EXCL) |
		unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	fd, err := openFD(path, flags, uint32(perm.Perm()))
	if err != nil {
		return nil, symlinkRefusal(path, err)
	}
	return regularFile(fd, path)
}

// symlinkRefusal turns the ELOOP of an O_NOFOLLOW open of a symbolic link
// into an *Error; other errors are returned as they are.
func symlinkRefusal(path string, err error) error {
	if !errors.Is(err, syscall.ELOOP) {
		return err
	}
	fi, lerr := os.Lstat(path)
	if lerr != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return err
	}
	target, _ := os.Readlink(path)
	return refuse("file", path, fi, "a symbolic link (to "+target+"), which synban does not follow here", "remove the link: rm "+path)
}

// Program returns the path of the program to execute for name. With
// configured "" it is the first executable regular file called name in
// SystemPath (never $PATH). A configured value without a slash is a program
// name looked up the same way; otherwise it must be an absolute path to an
// executable regular file. As root the program (symbolic links resolved)
// and every directory above it must be owned by root and not writable by
// group or others (a sticky directory excepted); a refusal is an *Error
// naming the path, owner, mode and fix. The returned path is the one found
// or configured, not the resolved one: multi-call programs such as
// xtables-nft-multi look at the name they were run as.
func Program(name, configured string) (string, error) {
	if configured != "" && !strings.Contains(configured, "/") {
		name, configured = configured, ""
	}
	if configured == "" {
		for _, dir := range filepath.SplitList(SystemPath) {
			p := filepath.Join(dir, name)
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
				continue
			}
			// The first one found is the one a shell would run: an
			// untrusted one is refused, not skipped.
			if err := checkProgram(p); err != nil {
				return "", err
			}
			return p, nil
		}
		return "", fmt.Errorf("program %q not found in %s: %w", name, SystemPath, fs.ErrNotExist)
	}
	if !filepath.IsAbs(configured) {
		return "", &Error{Kind: "program", Path: configured, UID: -1, Problem: "not an absolute path", Fix: "give the full path, e.g. /usr/sbin/" + name}
	}
	fi, err := os.Stat(configured)
	if err != nil {
		return "", fmt.Errorf("program %s: %w", configured, err)
	}
	if !fi.Mode().IsRegular() {
		return "", refuse("program", configured, fi, "not a regular file: "+typeName(fi.Mode()), "")
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return "", refuse("program", configured, fi, "not executable", "chmod 0755 "+configured)
	}
	if err := checkProgram(configured); err != nil {
		return "", err
	}
	return configured, nil
}

// checkProgram checks, as root, that p and its directories are root's and
// not writable by group or others.
func checkProgram(p string) error {
	if !Enforced() {
		return nil
	}
	resolved, fi, err := walk(p, "program", rootOnly)
	var te *Error
	if errors.As(err, &te) {
		return err
	}
	if err != nil {
		return fmt.Errorf("program %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return refuse("program", resolved, fi, "not a regular file: "+typeName(fi.Mode()), "")
	}
	return nil
}
