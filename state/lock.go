package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/internal/trust"
)

// lockPoll is how often a waiting Lock retries.
const lockPoll = 50 * time.Millisecond

// Lock takes the exclusive lock on the state directory (flock on DIR/lock).
// With wait false it returns an error wrapping ErrLocked at once when another
// run holds it; with wait true it retries until the lock is free or ctx is
// done (then the error wraps both ErrLocked and ctx's error). The lock is
// released by calling release, or by the kernel when the process dies. Once
// locked, leftovers of an earlier synban's save killed mid-write are
// removed and the database is opened read-write (created, and a state.json
// imported, when needed) until release. A DIR/lock that
// is a symbolic link or not a regular file is refused with a *trust.Error
// and left alone.
func (s *Store) Lock(ctx context.Context, wait bool) (release func() error, err error) {
	path := filepath.Join(s.dir, LockName)
	// O_NOFOLLOW, and only a regular file: a link or FIFO planted as the
	// lock is refused, so the pid written below never lands anywhere else.
	f, err := trust.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	fd := int(f.Fd())
	for {
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !wait {
			holder := lockHolder(f)
			f.Close()
			return nil, fmt.Errorf("lock %s%s: %w", path, holder, ErrLocked)
		}
		t := time.NewTimer(lockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			holder := lockHolder(f)
			f.Close()
			return nil, fmt.Errorf("lock %s%s: %w", path, holder, errors.Join(ErrLocked, ctx.Err()))
		case <-t.C:
		}
	}
	// Note who holds it, for the error message of a run that finds it locked.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err := s.removeTemps(); err != nil {
		_ = unix.Flock(fd, unix.LOCK_UN)
		f.Close()
		return nil, err
	}
	if err := s.attach(); err != nil {
		_ = unix.Flock(fd, unix.LOCK_UN)
		f.Close()
		return nil, err
	}
	var once sync.Once
	var relErr error
	release = func() error {
		once.Do(func() {
			relErr = s.detach()
			if err := unix.Flock(fd, unix.LOCK_UN); err != nil && relErr == nil {
				relErr = fmt.Errorf("unlock %s: %w", path, err)
			}
			if err := f.Close(); err != nil && relErr == nil {
				relErr = fmt.Errorf("close lock file %s: %w", path, err)
			}
		})
		return relErr
	}
	return release, nil
}

// lockHolder returns " (held by pid N)" from the lock file, or "".
func lockHolder(f *os.File) string {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid := strings.TrimSpace(string(buf[:n]))
	if _, err := strconv.Atoi(pid); err != nil || pid == "" {
		return ""
	}
	return " (held by pid " + pid + ")"
}
