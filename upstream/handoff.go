package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/internal/atomicfile"
	"github.com/synban/synban/internal/strictjson"
)

// DesiredFile is the hand-off file's name in the state directory.
const DesiredFile = "upstream-desired.json"

// maxDesiredSize bounds the hand-off file: far above any sane cap of rules.
const maxDesiredSize = 4 << 20

// desiredVersion is the hand-off file's format version.
const desiredVersion = 1

// Entry is one desired announcement and when a run last confirmed it.
type Entry struct {
	Announcement Announcement `json:"announcement"`
	Confirmed    time.Time    `json:"confirmed"`
}

// Desired is what the runs hand the speaker: the announcements they want
// and the decision state the next run continues from.
type Desired struct {
	Version int         `json:"version"`
	Written time.Time   `json:"written"`
	Entries []Entry     `json:"entries"`
	State   DecideState `json:"state"`
	// Uplink holds the uplink's counters at the end of the writing run's
	// window: the next run measures the rate since then.
	Uplink []LinkSample `json:"uplink,omitempty"`
}

// Confirm builds the hand-off content for a run at now that wants anns:
// every one of them is confirmed now.
func Confirm(now time.Time, anns []Announcement, st DecideState) Desired {
	d := Desired{Version: desiredVersion, Written: now, State: st, Entries: make([]Entry, len(anns))}
	for i, a := range anns {
		d.Entries[i] = Entry{Announcement: a, Confirmed: now}
	}
	return d
}

// Previous is the decision state the next run continues from: the state
// with the announcements of the entries (stored once, in the entries).
func (d Desired) Previous() DecideState {
	st := d.State
	st.Announcements = nil
	for _, e := range d.Entries {
		st.Announcements = append(st.Announcements, e.Announcement)
	}
	return st
}

// WriteDesired writes d to dir/DesiredFile atomically: a temporary file
// (0600, never following a symlink) is written, synced and renamed over the
// old one, and the directory synced, so a reader sees the old file or the
// new one, never a part.
func WriteDesired(dir string, d Desired) error {
	if d.Version == 0 {
		d.Version = desiredVersion
	}
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", DesiredFile, err)
	}
	data = append(data, '\n')
	if len(data) > maxDesiredSize {
		return fmt.Errorf("write %s: %d bytes, over the %d-byte bound", DesiredFile, len(data), maxDesiredSize)
	}
	return writeAtomic(dir, DesiredFile, data, true)
}

// writeAtomic replaces dir/name with data (atomicfile.Write): synced, with
// its directory, when durable.
func writeAtomic(dir, name string, data []byte, durable bool) error {
	return atomicfile.Write(dir, name, data, durable)
}

// ReadDesired reads dir/DesiredFile strictly: unknown fields, trailing
// data, a wrong version, a symlink or a file over the size bound are
// errors naming the file. A missing file is an empty Desired, not an
// error: no run yet means nothing desired.
func ReadDesired(dir string) (Desired, error) {
	path := filepath.Join(dir, DesiredFile)
	data, err := readBounded(path)
	if errors.Is(err, os.ErrNotExist) {
		return Desired{Version: desiredVersion}, nil
	}
	if err != nil {
		return Desired{}, err
	}
	return ParseDesired(path, data)
}

// readBounded reads a regular file, not through a symlink, of at most
// maxDesiredSize bytes.
func readBounded(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: not a regular file", path)
	}
	// What the file says is announced to the provider: only its owner
	// may have written it.
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("read %s: mode %04o is writable by group or others; want 0600", path, st.Mode().Perm())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 && int(sys.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("read %s: owned by uid %d, neither root nor this process (uid %d)", path, sys.Uid, os.Geteuid())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxDesiredSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxDesiredSize {
		return nil, fmt.Errorf("read %s: over the %d-byte bound", path, maxDesiredSize)
	}
	return data, nil
}

// ParseDesired decodes hand-off content strictly; name is used in errors.
func ParseDesired(name string, data []byte) (Desired, error) {
	var d Desired
	if err := strictjson.Decode(data, &d); err != nil {
		return Desired{}, fmt.Errorf("%s: %w", name, err)
	}
	if d.Version != desiredVersion {
		return Desired{}, fmt.Errorf("%s: version %d, want %d", name, d.Version, desiredVersion)
	}
	for i, e := range d.Entries {
		if e.Confirmed.IsZero() {
			return Desired{}, fmt.Errorf("%s: entry %d (%s): no confirmed time", name, i+1, e.Announcement.CLI())
		}
	}
	return d, nil
}
