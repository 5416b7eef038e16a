// Package state is synban's crash-safe embedded store: the active bans (with
// their expiry and reason) and the ban history that outlive a run, kept as one
// JSON document under a state directory (default /var/lib/synban).
//
// Every save writes a temporary file in the same directory, fsyncs it, renames
// it over the document and fsyncs the directory, so a run killed at any moment
// leaves either the old or the new state, never a mix. An exclusive lock on
// DIR/lock (flock) serializes overlapping runs.
//
// Run as root, the store trusts its directory only as sshd's StrictModes
// would (see internal/trust): the directory may not be a symbolic link, it
// and the directories above it must be owned by root or the invoking user
// and not writable by group or others. It is created 0700 and its files
// 0600; the lock, the document and temporary files are opened with
// O_NOFOLLOW and only when they are regular files, so a link or FIFO planted
// in the directory is refused, never followed or waited on.
package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/synban/synban/internal/trust"
	"github.com/synban/synban/policy"
)

// DefaultDir is the state directory used when none is given.
const DefaultDir = "/var/lib/synban"

// Version is the document version this package writes and reads.
const Version = 1

// FileName and LockName are the names of the state document and the lock
// file inside the state directory.
const (
	FileName = "state.json"
	LockName = "lock"
)

// tmpPrefix starts the names of the temporary files a save writes; leftovers
// of a killed run are removed by the next Lock.
const tmpPrefix = "." + FileName + ".tmp-"

// State is the stored document.
type State struct {
	// Version is the document version (Version).
	Version int `json:"version"`
	// Bans are the bans synban applied and has not yet expired or removed,
	// one per prefix.
	Bans []Ban `json:"bans"`
	// History holds one record per prefix ever banned, for escalation.
	History []Record `json:"history"`
	// Applied is what the last run that reconciled the kernel in full left
	// there, for a backend with a generation id (nftables); nil when
	// unknown. A version-1 document without it loads as nil. See Applied.
	Applied *Applied `json:"applied,omitempty"`

	// Indexes from prefix to position in Bans and History, so that recording
	// 100,000 bans is linear. They are rebuilt whenever the slice they index
	// changed length or an entry moved (code that edits the slices directly
	// stays correct, only slower).
	banIdx, histIdx map[netip.Prefix]int
}

// lookup finds p in items through idx, rebuilding idx when it is stale.
func lookup[T any](idx *map[netip.Prefix]int, items []T, prefix func(*T) netip.Prefix, p netip.Prefix) (int, bool) {
	if *idx == nil || len(*idx) != len(items) {
		*idx = make(map[netip.Prefix]int, len(items))
		for i := range items {
			(*idx)[prefix(&items[i])] = i
		}
	}
	i, ok := (*idx)[p]
	if ok && (i >= len(items) || prefix(&items[i]) != p) {
		*idx = nil // an entry moved: rebuild and look again
		return lookup(idx, items, prefix, p)
	}
	return i, ok
}

func banPrefix(b *Ban) netip.Prefix       { return b.Prefix }
func recordPrefix(r *Record) netip.Prefix { return r.Prefix }

// Applied identifies the kernel state a run left: while the backend's
// generation is still Generation and the structure synban wants still
// hashes to Ruleset, the kernel holds every ban the store holds (or has
// timed them out itself), and a run that decides nothing new need not read
// it back. Anything that changes bans in the kernel without a full
// reconcile (ban, unban, flush) clears it.
type Applied struct {
	// Backend names the backend ("nftables").
	Backend string `json:"backend"`
	// Generation is the backend's generation id after the apply.
	Generation uint32 `json:"generation"`
	// Ruleset is a hash of the structure applied (tables, chains, sets,
	// allow list; not the bans).
	Ruleset string `json:"ruleset"`
	// Bans is how many bans the store held when this was recorded: a
	// store edited or restored by other means than synban's (which clear
	// Applied) is then seldom taken for the one applied.
	Bans int `json:"bans"`
}

// Ban is one stored ban.
type Ban struct {
	// Prefix is the banned address (/32, /128) or prefix, in canonical form.
	Prefix netip.Prefix `json:"prefix"`
	// Since is when the ban was first applied; Until when it ends. A zero
	// Until means the ban does not expire.
	Since time.Time `json:"since"`
	Until time.Time `json:"until,omitzero"`
	// Reason explains the ban; Rule names the detection rule, when known.
	Reason string `json:"reason,omitempty"`
	Rule   string `json:"rule,omitempty"`
	// Backend names the backend that applied it ("nftables", "iptables", "route").
	Backend string `json:"backend,omitempty"`
	// Forced marks a manual ban made with `synban ban --force`: restored,
	// it may stay broader than the policy's minimum ban prefix length.
	Forced bool `json:"forced,omitempty"`
	// Drops is the ban's drop counter (packets) as last seen in the kernel,
	// for backends with per-ban counters (rules.DropCounter). A later run
	// that sees it unchanged knows the banned source sent nothing new.
	// Upsert keeps it; SetDrops sets it.
	Drops uint64 `json:"drops,omitempty"`
	// Origin is set on a ban pulled from a CrowdSec LAPI: "crowdsec:" and
	// the decision's origin ("crowdsec:cscli"). Empty for synban's own bans.
	// Pulled bans are reconciled with the LAPI every run and never pushed.
	Origin string `json:"origin,omitempty"`
}

// Record is the ban history of one prefix.
type Record struct {
	Prefix netip.Prefix `json:"prefix"`
	// Bans counts how many times the prefix was banned.
	Bans int `json:"bans"`
	// LastBan is when it was last banned, and LastFor for how long.
	LastBan time.Time     `json:"last_ban"`
	LastFor time.Duration `json:"last_for_ns"`
}

// ErrLocked is returned (wrapped) by Lock when another run holds the lock.
var ErrLocked = errors.New("state directory is locked by another run")

// Store is a state directory. Its methods are safe for concurrent use within
// one process; across processes, hold Lock around Load and Update.
type Store struct {
	dir string
	mu  sync.Mutex // serializes Update within this process
}

// Open opens the state directory dir (DefaultDir when empty), creating it
// with mode 0700 when missing. It does not read the document; Load does.
//
// A symbolic link as dir is refused, and so, when running as root, is a
// directory that it or a directory above it is owned by someone other than
// root or the invoking user or writable by group or others (an existing
// 0755 directory is fine); the refusal is a *trust.Error naming the path,
// owner, mode and fix.
func Open(dir string) (*Store, error) {
	if dir == "" {
		dir = DefaultDir
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open state directory %s: %w", dir, err)
	}
	fi, err := os.Lstat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		// Create nothing under a directory that is not trusted.
		if err := trust.CheckDir(existingAncestor(abs)); err != nil {
			return nil, fmt.Errorf("open state directory %s: %w", abs, err)
		}
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("open state directory %s: %w", abs, err)
		}
		fi, err = os.Lstat(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("open state directory %s: %w", abs, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := os.Readlink(abs)
		return nil, trust.Refusal("directory", abs, fi,
			"a symbolic link (to "+target+"); synban does not follow a link as its state directory",
			"give the real directory: --state-dir "+target)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open state directory %s: %w", abs, trust.Refusal("directory", abs, fi,
			"not a directory: "+trust.TypeName(fi.Mode()), "give a directory as --state-dir"))
	}
	if err := trust.CheckDir(abs); err != nil {
		return nil, fmt.Errorf("open state directory %s: %w", abs, err)
	}
	return &Store{dir: abs}, nil
}

// existingAncestor returns the nearest ancestor of the absolute path p that
// exists (at worst "/").
func existingAncestor(p string) string {
	for p != "/" {
		p = filepath.Dir(p)
		if _, err := os.Lstat(p); err == nil {
			return p
		}
	}
	return p
}

// Dir is the state directory's absolute path.
func (s *Store) Dir() string { return s.dir }

// Path is the state document's path.
func (s *Store) Path() string { return filepath.Join(s.dir, FileName) }

// Load reads the state. A missing document is an empty state; a document that
// cannot be decoded is an error naming the file, never an empty state.
func (s *Store) Load() (*State, error) {
	path := s.Path()
	data, err := readRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Version: Version}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state file %s: %w", path, err)
	}
	st, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("state file %s is corrupt (move it away to start with an empty state): %w", path, err)
	}
	return st, nil
}

// readRegular reads path, which must be a regular file and not a symbolic
// link (O_NOFOLLOW; a FIFO is refused at once, not waited on).
func readRegular(path string) ([]byte, error) {
	f, err := trust.OpenRegular(path, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func decode(data []byte) (*State, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty file")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var st State
	if err := dec.Decode(&st); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON document")
	}
	if st.Version != Version {
		return nil, fmt.Errorf("version %d, this synban reads version %d", st.Version, Version)
	}
	for i, b := range st.Bans {
		if !b.Prefix.IsValid() {
			return nil, fmt.Errorf("ban %d: missing or invalid prefix", i)
		}
	}
	for i, r := range st.History {
		if !r.Prefix.IsValid() {
			return nil, fmt.Errorf("history record %d: missing or invalid prefix", i)
		}
	}
	return &st, nil
}

// Update loads the state, lets fn modify it, and saves the result atomically.
// When fn returns an error nothing is saved and the error is returned.
func (s *Store) Update(fn func(*State) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.Load()
	if err != nil {
		return err
	}
	if err := fn(st); err != nil {
		return err
	}
	return s.save(st)
}

// save writes st atomically: temp file, fsync, rename, fsync of the directory.
func (s *Store) save(st *State) error {
	st.Version = Version
	st.normalize()
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	data = append(data, '\n')
	path := s.Path()
	f, err := s.createTemp()
	if err != nil {
		return fmt.Errorf("save state %s: %w", path, err)
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
		return fmt.Errorf("save state %s: write %s: %w", path, tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save state %s: fsync %s: %w", path, tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save state %s: close %s: %w", path, tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save state %s: rename: %w", path, err)
	}
	ok = true
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("save state %s: %w", path, err)
	}
	return nil
}

// createTemp creates a new temporary file for a save: O_EXCL and
// O_NOFOLLOW (never through a planted link), mode 0600.
func (s *Store) createTemp() (*os.File, error) {
	for range 100 {
		name := filepath.Join(s.dir, tmpPrefix+strconv.FormatUint(rand.Uint64(), 36))
		f, err := trust.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("create a temporary file in %s: too many name collisions", s.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// removeTemps deletes temporary files left by a save that was killed. Call it
// only while holding the lock.
func (s *Store) removeTemps() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("list state directory %s: %w", s.dir, err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.Remove(filepath.Join(s.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove leftover %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

// normalize sorts bans and history by prefix (IPv4 first).
func (st *State) normalize() {
	slices.SortFunc(st.Bans, func(a, b Ban) int { return policy.ComparePrefixes(a.Prefix, b.Prefix) })
	slices.SortFunc(st.History, func(a, b Record) int { return policy.ComparePrefixes(a.Prefix, b.Prefix) })
}

// Expired reports whether b has ended at now.
func (b Ban) Expired(now time.Time) bool {
	return !b.Until.IsZero() && !b.Until.After(now)
}

// Active returns the bans that have not ended at now, sorted by prefix.
func (st *State) Active(now time.Time) []Ban {
	var out []Ban
	for _, b := range st.Bans {
		if !b.Expired(now) {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b Ban) int { return policy.ComparePrefixes(a.Prefix, b.Prefix) })
	return out
}

// Expire removes the bans that have ended at now and returns them.
func (st *State) Expire(now time.Time) []Ban {
	var gone []Ban
	st.Bans = slices.DeleteFunc(st.Bans, func(b Ban) bool {
		if b.Expired(now) {
			gone = append(gone, b)
			return true
		}
		return false
	})
	return gone
}

// Upsert adds b, or, when a ban for the same prefix exists, extends it: the
// earlier Since and the later Until are kept (a zero Until, no expiry, wins),
// and non-empty Reason, Rule and Backend of b replace the old ones.
func (st *State) Upsert(b Ban) {
	b.Prefix = policy.Canonical(b.Prefix)
	i, ok := lookup(&st.banIdx, st.Bans, banPrefix, b.Prefix)
	if !ok {
		st.Bans = append(st.Bans, b)
		st.banIdx[b.Prefix] = len(st.Bans) - 1
		return
	}
	old := &st.Bans[i]
	if old.Since.IsZero() || (!b.Since.IsZero() && b.Since.Before(old.Since)) {
		old.Since = b.Since
	}
	if old.Until.IsZero() || b.Until.IsZero() {
		old.Until = time.Time{}
	} else if b.Until.After(old.Until) {
		old.Until = b.Until
	}
	if b.Reason != "" {
		old.Reason = b.Reason
	}
	if b.Rule != "" {
		old.Rule = b.Rule
	}
	if b.Backend != "" {
		old.Backend = b.Backend
	}
	old.Forced = old.Forced || b.Forced
}

// SetDrops stores n as the drop count last seen for the ban of exactly
// prefix p and reports whether there is such a ban.
func (st *State) SetDrops(p netip.Prefix, n uint64) bool {
	i, ok := lookup(&st.banIdx, st.Bans, banPrefix, policy.Canonical(p))
	if ok {
		st.Bans[i].Drops = n
	}
	return ok
}

// Find returns the ban for exactly prefix p.
func (st *State) Find(p netip.Prefix) (Ban, bool) {
	if i, ok := lookup(&st.banIdx, st.Bans, banPrefix, policy.Canonical(p)); ok {
		return st.Bans[i], true
	}
	return Ban{}, false
}

// Remove deletes the ban for exactly prefix p and reports whether there was one.
func (st *State) Remove(p netip.Prefix) bool {
	p = policy.Canonical(p)
	n := len(st.Bans)
	st.Bans = slices.DeleteFunc(st.Bans, func(b Ban) bool { return b.Prefix == p })
	return len(st.Bans) != n
}

// Record notes in the history that p was banned at time at for d.
func (st *State) Record(p netip.Prefix, at time.Time, d time.Duration) {
	p = policy.Canonical(p)
	i, ok := lookup(&st.histIdx, st.History, recordPrefix, p)
	if !ok {
		st.History = append(st.History, Record{Prefix: p, Bans: 1, LastBan: at, LastFor: d})
		st.histIdx[p] = len(st.History) - 1
		return
	}
	r := &st.History[i]
	r.Bans++
	r.LastBan, r.LastFor = at, d
}

// Last returns the history record of p.
func (st *State) Last(p netip.Prefix) (Record, bool) {
	if i, ok := lookup(&st.histIdx, st.History, recordPrefix, policy.Canonical(p)); ok {
		return st.History[i], true
	}
	return Record{}, false
}
