// Package atomicfile replaces a file so that a reader sees the old content
// or the new, never a part: the one way synban writes its small documents
// (the counters file, the upstream hand-off and status files).
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/synban/synban/internal/trust"
)

// Write replaces dir/name with data: a temporary file in dir with a random
// name, created exclusively (O_EXCL) and never through a symbolic link,
// mode 0600, is written, synced when durable, closed and renamed over
// dir/name; when durable the directory is synced too, so the rename
// survives a crash. On failure the temporary file is removed and the old
// file is left as it was. Errors name the file.
func Write(dir, name string, data []byte, durable bool) error {
	return WriteMode(dir, name, data, 0o600, durable)
}

// WriteMode is Write for a file another user reads (node_exporter reads
// the metrics textfile): the temporary file gets exactly perm's permission
// bits, whatever the umask, before it is renamed, so the file never
// appears with another mode.
func WriteMode(dir, name string, data []byte, perm fs.FileMode, durable bool) error {
	final := filepath.Join(dir, name)
	var f *os.File
	var err error
	for range 100 {
		tmp := filepath.Join(dir, "."+name+".tmp-"+strconv.FormatUint(rand.Uint64(), 36))
		f, err = trust.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", final, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if perm.Perm() != 0o600 {
		if err := f.Chmod(perm.Perm()); err != nil {
			return fmt.Errorf("chmod %s: %w", tmp, err)
		}
	}
	if durable {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("rename %s: %w", final, err)
	}
	ok = true
	if !durable {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
