// Package handover is the private interface between `synban upstream` and
// the speaker binary, synban-speaker.
//
// The BGP speaker links its sessions and GoBGP's message codec, whose package
// initialisation and memory would otherwise be paid by every command that
// cron starts (a run under attack, version, status). So it lives in a
// binary of its own: `synban upstream` loads and checks the policy, reads
// the neighbors' secrets, takes the speaker's lock on the state directory,
// and then replaces itself (execve, same PID: a systemd unit or a signal
// sent to it reaches the speaker) with synban-speaker, passing the checked
// configuration through an anonymous memory file and the lock through its
// still-open descriptor. Bad input is therefore refused by synban before
// anything starts, with synban's messages and exit codes.
package handover

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/internal/strictjson"
	"github.com/synban/synban/internal/trust"
	"github.com/synban/synban/upstream"
)

// Binary is the speaker binary's file name.
const Binary = "synban-speaker"

// LibexecDir is where the Debian package installs Binary. A binary of
// that name next to the running synban (a build tree, a tarball) comes
// first.
const LibexecDir = "/usr/libexec/synban"

// Version is the hand-over format. synban and synban-speaker of different
// releases refuse each other with a message instead of misreading the
// configuration.
const Version = 1

// maxConfig bounds the configuration read from the memory file.
const maxConfig = 4 << 20

// Find returns the speaker binary to execute: Binary in the directory of
// the running executable, else in LibexecDir. As root the file and every
// directory above it must be root's and not writable by others
// (trust.Program), as for every program synban runs.
func Find() (string, error) {
	var dirs []string
	if self, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(self); err == nil {
			self = real
		}
		dirs = append(dirs, filepath.Dir(self))
	}
	dirs = append(dirs, LibexecDir)
	for _, d := range dirs {
		p := filepath.Join(d, Binary)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		return trust.Program(Binary, p)
	}
	return "", fmt.Errorf("the upstream speaker binary %s is not installed (looked next to synban and in %s): "+
		"install it with synban (the Debian package does), or build it: go build ./cmd/%s: %w", Binary, LibexecDir, Binary, os.ErrNotExist)
}

// Request is what synban passes to the speaker.
type Request struct {
	// Config is the checked configuration, secrets included.
	Config upstream.Config
	// StateDir holds the hand-off and status files.
	StateDir string
	// Lock is the speaker's lock file, locked; it stays locked in the
	// speaker.
	Lock *os.File
	// LogLevel is the slog level name; LogJSON asks for JSON logs.
	LogLevel string
	LogJSON  bool
}

// Exec replaces the process with the speaker binary bin. It returns only
// on failure, with nothing started.
func Exec(bin string, r Request) error {
	data, err := json.Marshal(r.Config)
	if err != nil {
		return fmt.Errorf("encode the upstream configuration: %w", err)
	}
	fd, err := unix.MemfdCreate("synban-upstream-config", 0)
	if err != nil {
		return fmt.Errorf("hand over to %s: memfd: %w", bin, err)
	}
	cfg := os.NewFile(uintptr(fd), "synban-upstream-config")
	defer cfg.Close()
	if _, err := cfg.Write(data); err != nil {
		return fmt.Errorf("hand over to %s: write the configuration: %w", bin, err)
	}
	if _, err := cfg.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("hand over to %s: %w", bin, err)
	}
	// Go opens every file close-on-exec: keep these two across the exec.
	for _, f := range []*os.File{cfg, r.Lock} {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("hand over to %s: keep descriptor %d: %w", bin, f.Fd(), err)
		}
	}
	args := []string{Binary,
		"--handover", strconv.Itoa(Version),
		"--config-fd", strconv.Itoa(int(cfg.Fd())),
		"--lock-fd", strconv.Itoa(int(r.Lock.Fd())),
		"--state-dir", r.StateDir,
		"--log-level", r.LogLevel,
	}
	if r.LogJSON {
		args = append(args, "--log-json")
	}
	err = unix.Exec(bin, args, os.Environ())
	return fmt.Errorf("execute %s: %w", bin, err)
}

// Receive is the speaker's side: it parses the arguments Exec passed and
// reads the configuration. The lock descriptor is returned open (closing
// it releases the lock) and marked close-on-exec again.
func Receive(args []string) (Request, error) {
	var r Request
	var version, cfgFD, lockFD = -1, -1, -1
	for i := 0; i < len(args); i++ {
		name := args[i]
		if name == "--log-json" {
			r.LogJSON = true
			continue
		}
		if i+1 >= len(args) {
			return r, fmt.Errorf("argument %q without a value", name)
		}
		val := args[i+1]
		i++
		var err error
		switch name {
		case "--handover":
			version, err = strconv.Atoi(val)
		case "--config-fd":
			cfgFD, err = strconv.Atoi(val)
		case "--lock-fd":
			lockFD, err = strconv.Atoi(val)
		case "--state-dir":
			r.StateDir = val
		case "--log-level":
			r.LogLevel = val
		default:
			return r, fmt.Errorf("unknown argument %q", name)
		}
		if err != nil {
			return r, fmt.Errorf("%s %q: %w", name, val, err)
		}
	}
	switch {
	case version < 0:
		return r, errors.New("started by `synban upstream`, not by hand")
	case version != Version:
		return r, fmt.Errorf("hand-over format %d, this speaker reads %d: synban and %s come from different releases", version, Version, Binary)
	case cfgFD < 3 || lockFD < 3 || r.StateDir == "":
		return r, errors.New("started without --config-fd, --lock-fd and --state-dir: it is started by `synban upstream`, not by hand")
	}
	cfg := os.NewFile(uintptr(cfgFD), "synban-upstream-config")
	defer cfg.Close()
	data, err := io.ReadAll(io.LimitReader(cfg, maxConfig+1))
	if err != nil {
		return r, fmt.Errorf("read the configuration (fd %d): %w", cfgFD, err)
	}
	if len(data) > maxConfig {
		return r, fmt.Errorf("configuration (fd %d) over %d bytes", cfgFD, maxConfig)
	}
	if err := strictjson.Decode(data, &r.Config); err != nil {
		return r, fmt.Errorf("configuration (fd %d): %w", cfgFD, err)
	}
	if _, err := unix.FcntlInt(uintptr(lockFD), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return r, fmt.Errorf("lock descriptor %d: %w", lockFD, err)
	}
	r.Lock = os.NewFile(uintptr(lockFD), "upstream speaker lock")
	return r, nil
}
