// Package state is synban's crash-safe embedded store: the active bans (with
// their expiry and reason) and the ban history that outlive a run, kept in
// a bbolt database (go.etcd.io/bbolt) under a state directory (default
// /var/lib/synban): DIR/state.db.
//
// bbolt is chosen for its crash safety: a write transaction is committed
// by writing its new pages, fsyncing them and then one meta page (of two,
// alternated, each with a checksum), so a run killed or a host losing
// power at any moment leaves the database as the last committed
// transaction left it, never a mix. And it costs what changed: every ban
// is one key (its canonical prefix) and one value, so a run writes the
// bans it changed, not the whole store, and reads only what it needs: the
// metadata (version, ban count, the applied record of the generation
// shortcut) in their own bucket, the bans that end soon through an index
// keyed by expiry time, single bans by prefix. Reads of everything stream
// the database (ForEach). An exclusive lock on DIR/lock (flock) serializes
// overlapping runs; the lock holder keeps the database open until it
// releases the lock.
//
// A state.json written by an earlier synban (one JSON document) is
// imported on the first read-write open, in one transaction, then renamed
// to state.json.migrated (kept, not deleted); a corrupt one is an error
// naming it, and nothing is changed.
//
// Run as root, the store trusts its directory only as sshd's StrictModes
// would (see internal/trust): the directory may not be a symbolic link, it
// and the directories above it must be owned by root or the invoking user
// and not writable by group or others. It is created 0700 and its files
// 0600; the lock, the database and state.json are opened with O_NOFOLLOW
// and only when they are regular files, so a link or FIFO planted in the
// directory is refused, never followed or waited on. Read-only users
// (status, plan) open the database read-only and never create it.
package state

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/synban/synban/internal/strictjson"
	"github.com/synban/synban/internal/trust"
	"github.com/synban/synban/policy"
)

// DefaultDir is the state directory used when none is given.
const DefaultDir = "/var/lib/synban"

// Version is the store version this package writes and reads: of the
// database's layout, and of the legacy JSON document it imports.
const Version = 1

// FileName is the database's name inside the state directory, LockName the
// lock file's; LegacyFileName is the JSON document of earlier synbans,
// renamed to MigratedName once imported.
const (
	FileName       = "state.db"
	LockName       = "lock"
	LegacyFileName = "state.json"
	MigratedName   = "state.json.migrated"
)

// tmpPrefix starts the names of the temporary files earlier synbans wrote
// state.json through; leftovers of a killed run are removed by Lock.
const tmpPrefix = "." + LegacyFileName + ".tmp-"

// State is the store's content loaded whole (Load), and the JSON document
// of earlier synbans (state.json) that a store imports.
type State struct {
	// Version is the store version (Version).
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
	log *slog.Logger
	mu  sync.Mutex // serializes writes within this process, guards db
	// db is the database, open read-write from Lock to its release: a
	// run reads its metadata, a few bans and writes what changed without
	// opening the file again. Without the lock each call opens it.
	db *bolt.DB
}

// Open opens the state directory dir (DefaultDir when empty), creating it
// with mode 0700 when missing. It does not open the database; Lock, Load,
// View and Update do.
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
	return &Store{dir: abs, log: slog.New(slog.DiscardHandler)}, nil
}

// SetLogger sets where the store logs (the migration of a state.json);
// nil discards. Call it before the store is used.
func (s *Store) SetLogger(l *slog.Logger) {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	s.log = l
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

// Path is the state database's path.
func (s *Store) Path() string { return filepath.Join(s.dir, FileName) }

// Exists reports whether the directory holds a store: the database, or a
// state.json not yet migrated.
func (s *Store) Exists() bool {
	for _, name := range []string{FileName, LegacyFileName} {
		if _, err := os.Lstat(filepath.Join(s.dir, name)); !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

// attach opens the database read-write for the holder of the lock.
func (s *Store) attach() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return nil
	}
	db, err := s.openDB(false)
	if err != nil {
		return err
	}
	s.db = db
	return nil
}

// detach closes the database the lock holder opened.
func (s *Store) detach() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("close state database %s: %w", s.Path(), err)
	}
	return nil
}

// View runs fn in a read transaction. Without the lock it opens the
// database read-only (bolt.Options.ReadOnly) and creates nothing: a
// missing database reads as an empty store. A state.json not yet migrated
// has no database to read: View then fails, and Load reads the document.
func (s *Store) View(fn func(*Tx) error) error {
	s.mu.Lock()
	db := s.db
	s.mu.Unlock()
	if db == nil {
		var err error
		db, err = s.openDB(true)
		if errors.Is(err, errNoDB) {
			if _, err := os.Lstat(filepath.Join(s.dir, LegacyFileName)); err == nil {
				return fmt.Errorf("state store %s: %s is not migrated yet (the next run does it)", s.dir, LegacyFileName)
			}
			return fn(&Tx{path: s.Path()})
		}
		if err != nil {
			return err
		}
		defer db.Close()
	}
	return guard(s.Path(), func() error {
		return db.View(func(btx *bolt.Tx) error {
			t := newTx(btx)
			t.path = s.Path()
			return fn(t)
		})
	})
}

// Edit runs fn in one write transaction, committed when fn returns nil
// and wrote something (a transaction that wrote nothing is rolled back: the
// file is not touched).
// bbolt commits it atomically: after a crash or SIGKILL at any moment the
// database holds either everything fn wrote or none of it.
func (s *Store) Edit(fn func(*Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	db := s.db
	if db == nil {
		var err error
		if db, err = s.openDB(false); err != nil {
			return err
		}
		defer db.Close()
	}
	return guard(s.Path(), func() error {
		err := db.Update(func(btx *bolt.Tx) error {
			t := newTx(btx)
			t.path = s.Path()
			if err := fn(t); err != nil {
				return err
			}
			if err := t.flush(); err != nil {
				return err
			}
			if !t.wrote {
				// Nothing to commit: a commit would still write the
				// freelist and a meta page, with two fsyncs, every run.
				return errNothingWritten
			}
			return nil
		})
		if errors.Is(err, errNothingWritten) {
			return nil
		}
		return err
	})
}

// errNothingWritten rolls back an Edit that wrote nothing.
var errNothingWritten = errors.New("nothing written")

// guard runs fn, turning the panic with which bbolt meets some damaged
// pages into an error naming the file.
func guard(path string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("state database %s is corrupt (move it away to start with an empty state): %v", path, r)
		}
	}()
	if err := fn(); err != nil {
		return fmt.Errorf("state database %s: %w", path, err)
	}
	return nil
}

// Head is what the store's metadata says, read without reading the bans.
type Head struct {
	// Bans is how many bans the store holds.
	Bans int
	// Applied is the applied record; nil when none.
	Applied *Applied
}

// Head reads the store's metadata.
func (s *Store) Head() (Head, error) {
	var h Head
	err := s.View(func(t *Tx) error {
		var err error
		if h.Bans, err = t.Bans(); err != nil {
			return err
		}
		h.Applied, err = t.Applied()
		return err
	})
	return h, err
}

// Load reads the whole store, streaming it from the database. A missing
// store is an empty state; one that cannot be decoded is an error naming
// the file, never an empty state. Without the lock it writes nothing: a
// state.json not yet migrated is read as it is.
func (s *Store) Load() (*State, error) {
	s.mu.Lock()
	attached := s.db != nil
	s.mu.Unlock()
	if !attached && !fileExists(s.Path()) {
		st, err := s.readLegacy()
		if err != nil || st != nil {
			return st, err
		}
	}
	st := &State{Version: Version}
	err := s.View(func(t *Tx) error {
		var err error
		st, err = t.load()
		return err
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// fileExists reports whether path exists (as anything, even a link).
func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// load reads every ban and record into a State.
func (t *Tx) load() (*State, error) {
	st := &State{Version: Version}
	n, err := t.Bans()
	if err != nil {
		return nil, err
	}
	if st.Bans, err = t.appendBans(make([]Ban, 0, n)); err != nil {
		return nil, err
	}
	if err := t.ForEachRecord(func(r Record) error { st.History = append(st.History, r); return nil }); err != nil {
		return nil, err
	}
	if st.Applied, err = t.Applied(); err != nil {
		return nil, err
	}
	return st, nil
}

// Update loads the state, lets fn modify it, and writes what fn changed
// (bans, history records, the applied record) in one transaction. When fn
// returns an error nothing is written and the error is returned. It reads
// every ban; the per-ban methods of Tx (Edit) read only what they touch.
func (s *Store) Update(fn func(*State) error) error {
	return s.Edit(func(t *Tx) error {
		st, err := t.load()
		if err != nil {
			return err
		}
		return t.change(st, fn)
	})
}

// UpdateLoaded is Update on st, the state as Load returned it while the
// caller has held the lock since (so nobody else changed the store): it
// does not read the store again. fn modifies st in place, and what it
// changed is written in one transaction; when fn fails st may be modified
// and nothing is written.
func (s *Store) UpdateLoaded(st *State, fn func(*State) error) error {
	return s.Edit(func(t *Tx) error { return t.change(st, fn) })
}

// change runs fn on st, which holds what the store holds, and writes what
// fn changed.
func (t *Tx) change(st *State, fn func(*State) error) error {
	cmpBan := func(a, b Ban) int { return policy.ComparePrefixes(a.Prefix, b.Prefix) }
	oldHist := make(map[netip.Prefix]Record, len(st.History))
	for _, r := range st.History {
		oldHist[r.Prefix] = r
	}
	var oldApplied *Applied
	if st.Applied != nil {
		a := *st.Applied
		oldApplied = &a
	}
	if err := fn(st); err != nil {
		return err
	}
	for i := range st.Bans {
		st.Bans[i].Prefix = policy.Canonical(st.Bans[i].Prefix)
	}
	if !slices.IsSortedFunc(st.Bans, cmpBan) {
		slices.SortStableFunc(st.Bans, cmpBan) // stable: of two bans of one prefix, the later wins
	}
	if err := t.saveBans(st.Bans); err != nil {
		return err
	}
	var put []int
	for i := range st.History {
		r := &st.History[i]
		r.Prefix = policy.Canonical(r.Prefix)
		old, ok := oldHist[r.Prefix]
		delete(oldHist, r.Prefix)
		if ok && recordEqual(&old, r) {
			continue
		}
		put = append(put, i)
	}
	if err := t.putRecords(st.History, put); err != nil {
		return err
	}
	for p := range oldHist {
		if err := t.removeRecord(p); err != nil {
			return err
		}
	}
	if oldApplied == nil && st.Applied == nil || oldApplied != nil && st.Applied != nil && *oldApplied == *st.Applied {
		return nil
	}
	return t.SetApplied(st.Applied)
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

// DecodeLegacy decodes the JSON document of earlier synbans (state.json,
// version 1), which a store imports once. It is exported for the fuzz
// target.
func DecodeLegacy(data []byte) (*State, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty file")
	}
	var st State
	if err := strictjson.Decode(data, &st); err != nil {
		return nil, err
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

// removeTemps deletes temporary files left by a save of an earlier synban
// (which wrote state.json through temporary files) that was killed. Call
// it only while holding the lock.
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
	out := make([]Ban, 0, len(st.Bans))
	for _, b := range st.Bans {
		if !b.Expired(now) {
			out = append(out, b)
		}
	}
	cmp := func(a, b Ban) int { return policy.ComparePrefixes(a.Prefix, b.Prefix) }
	if !slices.IsSortedFunc(out, cmp) { // as loaded, they are
		slices.SortFunc(out, cmp)
	}
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
	merge(&st.Bans[i], b)
}

// merge extends old by b as Upsert does.
func merge(old *Ban, b Ban) {
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

// RemoveEach deletes the bans for exactly the prefixes ps, in one pass
// over the bans (Remove for each would be one pass each), and returns how
// many it deleted.
func (st *State) RemoveEach(ps []netip.Prefix) int {
	if len(ps) == 0 {
		return 0
	}
	gone := make(map[netip.Prefix]bool, len(ps))
	for _, p := range ps {
		gone[policy.Canonical(p)] = true
	}
	n := len(st.Bans)
	st.Bans = slices.DeleteFunc(st.Bans, func(b Ban) bool { return gone[b.Prefix] })
	return n - len(st.Bans)
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
