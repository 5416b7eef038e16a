package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/synban/synban/internal/trust"
	"github.com/synban/synban/policy"
)

// Buckets of the store, and the keys of its meta bucket.
var (
	bucketMeta    = []byte("meta")
	bucketBans    = []byte("bans")
	bucketExpiry  = []byte("expiry")
	bucketHistory = []byte("history")
	bucketTally   = []byte("tally")

	keyVersion  = []byte("version")
	keyCount    = []byte("bans")
	keyApplied  = []byte("applied")
	keyMigrated = []byte("migrated")
)

// openTimeout bounds how long opening the database waits for another
// process holding it (a run writing while `status` reads, say).
const openTimeout = 30 * time.Second

// fillPercent is how full bbolt fills the pages it splits in the bans,
// expiry and history buckets (bbolt's default: half). A store grows by
// bulk writes made in key order (a first pull or restore writes 100,000
// bans in one transaction), after which every page stays as full as the
// split left it: at half, 100,000 pulled bans took 32 MB of pages for
// 16 MB of data. Fuller still (0.9, 1.0) shrinks that first write further
// but splits nearly every page the next run's scattered inserts touch, and
// the file grows more by then (BenchmarkSavePulled, add=1000).
const fillPercent = 0.75

// allocSize is how much bbolt grows the file beyond what a commit needs
// (bbolt's default: 16 MiB, a third of the file of 100,000 bans). Growth
// steps are rare either way: the store grows with the bans it holds.
const allocSize = 1 << 20

// mmapSize is the least that a read-write open maps of the database file
// (address space only: nothing is read or resident until used). bbolt maps
// the file and, when a commit outgrows the map, maps it anew and first
// copies every key and value of the transaction's tree out of the old map:
// writing 100,000 bans into an empty store remapped ten times (32 KiB
// doubling to 32 MiB) and made 14 million allocations doing so. Stores up
// to this size, some 500,000 bans, are never remapped while written.
const mmapSize = 128 << 20

// errNoDB is returned by openDB read-only when the database file is missing.
var errNoDB = errors.New("no database file")

// openDB opens the store's database. Read-only (bolt.Options.ReadOnly) it
// creates nothing and returns errNoDB when the file is missing; read-write
// it creates the file (0600) and its buckets and imports a legacy
// state.json (see migrate). Either way the file is opened with
// trust.OpenFile: never through a symbolic link, only when regular.
func (s *Store) openDB(readOnly bool) (*bolt.DB, error) {
	path := s.Path()
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		// A link, FIFO or directory planted as the database: the same
		// refusal as for any file of the store, never followed.
		f, err := trust.OpenRegular(path, false)
		if err == nil {
			f.Close()
			err = fmt.Errorf("%s changed while being opened", path)
		}
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	if readOnly {
		// Missing, or created and never initialised (a run killed at
		// once): nothing stored. A link or FIFO is refused by the open.
		if fi, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) || err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			return nil, errNoDB
		}
	}
	var legacy *State
	if !readOnly {
		// Read a state.json to import before anything is created, so a
		// corrupt one changes nothing.
		var err error
		if legacy, err = s.readLegacy(); err != nil {
			return nil, err
		}
	}
	opts := &bolt.Options{
		ReadOnly: readOnly,
		Timeout:  openTimeout,
		OpenFile: trust.OpenFile,
		// The freelist is written with every commit (bbolt's default): a
		// store without it is walked whole on every open to rebuild it.
		FreelistType: bolt.FreelistMapType,
	}
	if !readOnly {
		opts.InitialMmapSize = mmapSize
	}
	db, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open state database %s: still in use by another process after %s", path, openTimeout)
		}
		return nil, fmt.Errorf("open state database %s: %w", path, corruptOr(err))
	}
	db.AllocSize = allocSize
	if readOnly {
		if err := db.View(func(tx *bolt.Tx) error { return checkVersion(tx) }); err != nil {
			db.Close()
			return nil, fmt.Errorf("state database %s: %w", path, err)
		}
		return db, nil
	}
	if err := s.prepare(db, legacy); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// corruptOr marks bbolt's errors about the file's content as corruption.
func corruptOr(err error) error {
	if errors.Is(err, bolt.ErrInvalid) || errors.Is(err, bolt.ErrChecksum) || errors.Is(err, bolt.ErrVersionMismatch) || errors.Is(err, bolt.ErrInvalidMapping) {
		return fmt.Errorf("corrupt (move it away to start with an empty state): %w", err)
	}
	return err
}

// checkVersion refuses a database of another store version.
func checkVersion(tx *bolt.Tx) error {
	m := tx.Bucket(bucketMeta)
	if m == nil {
		if tx.Bucket(bucketBans) != nil {
			return errors.New("corrupt (move it away to start with an empty state): no meta bucket")
		}
		return nil // created, never written
	}
	v := m.Get(keyVersion)
	if len(v) != 1 || v[0] != Version {
		return fmt.Errorf("corrupt or of another synban (move it away to start with an empty state): store version %x, this synban reads %d", v, Version)
	}
	return nil
}

// prepare creates the buckets of a new database, checks the version of an
// existing one, and imports legacy (state.json) in the same transaction;
// then it renames state.json out of the way.
func (s *Store) prepare(db *bolt.DB, legacy *State) error {
	path := s.Path()
	if legacy == nil {
		// An existing store needs no write transaction (each commit is
		// two fsyncs): only a new one does.
		ready := false
		err := db.View(func(btx *bolt.Tx) error {
			if err := checkVersion(btx); err != nil {
				return err
			}
			ready = btx.Bucket(bucketMeta) != nil && btx.Bucket(bucketBans) != nil && btx.Bucket(bucketExpiry) != nil &&
				btx.Bucket(bucketHistory) != nil && btx.Bucket(bucketTally) != nil
			return nil
		})
		if err != nil {
			return fmt.Errorf("state database %s: %w", path, err)
		}
		if ready {
			return nil
		}
	}
	imported := false
	err := db.Update(func(btx *bolt.Tx) error {
		if err := checkVersion(btx); err != nil {
			return err
		}
		rebuild := btx.Bucket(bucketTally) == nil
		for _, b := range [][]byte{bucketMeta, bucketBans, bucketExpiry, bucketHistory, bucketTally} {
			if _, err := btx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		if rebuild {
			// A store without the tally gets it from its bans, once.
			tx := newTx(btx)
			tx.tally = map[string]int{}
			if err := tx.ForEachBan(func(b Ban) error { tx.tally[tallyKey(&b)]++; return nil }); err != nil {
				return err
			}
			tx.tallyDirty = true
			if err := tx.flush(); err != nil {
				return err
			}
		}
		m := btx.Bucket(bucketMeta)
		if m.Get(keyVersion) == nil {
			if err := m.Put(keyVersion, []byte{Version}); err != nil {
				return err
			}
		}
		if legacy == nil || m.Get(keyMigrated) != nil {
			return nil // nothing to import, or imported by a run killed before the rename
		}
		tx := newTx(btx)
		bans := slices.Clone(legacy.Bans)
		for i := range bans {
			bans[i].Prefix = policy.Canonical(bans[i].Prefix)
		}
		// Stable: of two bans of one prefix the later wins, as Put would.
		slices.SortStableFunc(bans, func(a, b Ban) int { return policy.ComparePrefixes(a.Prefix, b.Prefix) })
		if err := tx.saveBans(bans); err != nil {
			return err
		}
		all := make([]int, len(legacy.History))
		for i := range all {
			all[i] = i
		}
		if err := tx.putRecords(legacy.History, all); err != nil {
			return err
		}
		if err := tx.SetApplied(legacy.Applied); err != nil {
			return err
		}
		if err := tx.flush(); err != nil {
			return err
		}
		imported = true
		return m.Put(keyMigrated, []byte(time.Now().UTC().Format(time.RFC3339)))
	})
	if err != nil {
		return fmt.Errorf("state database %s: %w", path, err)
	}
	if legacy == nil {
		return nil
	}
	from, to := filepath.Join(s.dir, LegacyFileName), filepath.Join(s.dir, MigratedName)
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("state database %s: keep the imported %s as %s: %w", path, from, to, err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("state database %s: %w", path, err)
	}
	if imported {
		s.log.Info("state store migrated from JSON", "from", from, "to", path, "kept_as", to,
			"bans", len(legacy.Bans), "history", len(legacy.History))
	}
	return nil
}

// readLegacy reads DIR/state.json, the JSON document of earlier synbans,
// when it exists; nil when it does not.
func (s *Store) readLegacy() (*State, error) {
	path := filepath.Join(s.dir, LegacyFileName)
	data, err := readRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state file %s: %w", path, err)
	}
	st, err := DecodeLegacy(data)
	if err != nil {
		return nil, fmt.Errorf("state file %s is corrupt (move it away to start with an empty state): %w", path, err)
	}
	return st, nil
}

// Tx is one transaction on the store: a View reads, an Edit also writes.
// Its methods read and write single bans; none reads every ban unless its
// name says so (ForEachBan, ForEachRecord).
type Tx struct {
	tx                            *bolt.Tx
	meta, bans, exp, hist, tallyB *bolt.Bucket
	count                         int
	countRead, countDirty         bool
	// tally is the tally bucket in memory once read (see Tally).
	tally      map[string]int
	tallyDirty bool
	path       string
	// wrote is set by every method that writes: Edit commits only then.
	wrote bool
}

func newTx(btx *bolt.Tx) *Tx {
	t := &Tx{tx: btx, meta: btx.Bucket(bucketMeta), bans: btx.Bucket(bucketBans),
		exp: btx.Bucket(bucketExpiry), hist: btx.Bucket(bucketHistory), tallyB: btx.Bucket(bucketTally)}
	t.setFill()
	return t
}

// setFill sets fillPercent on the buckets that hold one key per ban or
// record (bbolt keeps it per bucket handle, for one transaction).
func (t *Tx) setFill() {
	for _, b := range []*bolt.Bucket{t.bans, t.exp, t.hist} {
		if b != nil {
			b.FillPercent = fillPercent
		}
	}
}

// Group is a group of bans as the metrics count them (see Ban.Group).
type Group struct {
	// Backend is the bans' Backend ("" when they name none).
	Backend string
	// Reason is what Ban.Group says.
	Reason string
}

// Group is what the metrics count b under: its rule, "manual" for a manual
// ban without one, the origin of a pulled ban, or "" when none is known.
func (b *Ban) Group() Group {
	reason := b.Rule
	if reason == "" && b.Reason == "manual ban" {
		reason = "manual"
	}
	if b.Origin != "" {
		reason = b.Origin
	}
	return Group{Backend: b.Backend, Reason: reason}
}

// tallyKey is b's key in the tally bucket: backend, NUL, reason.
func tallyKey(b *Ban) string {
	g := b.Group()
	return g.Backend + "\x00" + g.Reason
}

// readTally loads the tally bucket into t.tally.
func (t *Tx) readTally() error {
	if t.tally != nil {
		return nil
	}
	t.tally = map[string]int{}
	if t.empty() || t.tallyB == nil {
		return nil
	}
	return t.tallyB.ForEach(func(k, v []byte) error {
		n, m := binary.Uvarint(v)
		if m != len(v) || n > 1<<40 || bytes.Count(k, []byte{0}) != 1 {
			return fmt.Errorf("corrupt tally entry %q", k)
		}
		t.tally[string(k)] = int(n)
		return nil
	})
}

// Tally counts the stored bans by group (Ban.Group), from the tally the
// store keeps in step with every ban written: it reads no ban.
func (t *Tx) Tally() (map[Group]int, error) {
	if err := t.readTally(); err != nil {
		return nil, err
	}
	out := make(map[Group]int, len(t.tally))
	for k, n := range t.tally {
		backend, reason, _ := strings.Cut(k, "\x00")
		out[Group{Backend: backend, Reason: reason}] = n
	}
	return out, nil
}

// countIn moves b in or out (delta) of the tally.
func (t *Tx) countIn(b *Ban, delta int) error {
	if err := t.readTally(); err != nil {
		return err
	}
	t.tally[tallyKey(b)] += delta
	t.tallyDirty = true
	return nil
}

// empty reports whether the database has no buckets yet (created read-only
// by nobody: a read then sees an empty store).
func (t *Tx) empty() bool { return t.bans == nil }

// Bans is how many bans the store holds, from its metadata.
func (t *Tx) Bans() (int, error) {
	if t.countRead || t.empty() {
		return t.count, nil
	}
	v := t.meta.Get(keyCount)
	if v != nil {
		n, k := binary.Uvarint(v)
		if k != len(v) || n > 1<<40 {
			return 0, fmt.Errorf("corrupt ban count %x", v)
		}
		t.count = int(n)
	}
	t.countRead = true
	return t.count, nil
}

// Applied is the store's applied record (see Applied); nil when none.
func (t *Tx) Applied() (*Applied, error) {
	if t.empty() {
		return nil, nil
	}
	v := t.meta.Get(keyApplied)
	if v == nil {
		return nil, nil
	}
	return decodeApplied(v)
}

// SetApplied stores a, or clears the record when a is nil.
func (t *Tx) SetApplied(a *Applied) error {
	t.wrote = true
	if a == nil {
		return t.meta.Delete(keyApplied)
	}
	return t.meta.Put(keyApplied, encodeApplied(a))
}

// Find returns the ban for exactly prefix p.
func (t *Tx) Find(p netip.Prefix) (Ban, bool, error) {
	if t.empty() {
		return Ban{}, false, nil
	}
	k := prefixKey(policy.Canonical(p))
	v := t.bans.Get(k)
	if v == nil {
		return Ban{}, false, nil
	}
	b, err := DecodeBan(k, v)
	return b, err == nil, err
}

// Last returns the history record of p.
func (t *Tx) Last(p netip.Prefix) (Record, bool, error) {
	if t.empty() {
		return Record{}, false, nil
	}
	k := prefixKey(policy.Canonical(p))
	v := t.hist.Get(k)
	if v == nil {
		return Record{}, false, nil
	}
	r, err := DecodeRecord(k, v)
	return r, err == nil, err
}

// Put stores b (its prefix made canonical), replacing the ban of the same
// prefix, and keeps the expiry index and the count in step.
func (t *Tx) Put(b Ban) error { return t.put(b, nil) }

// expBatch holds writes to the expiry index that a bulk write (saveBans)
// makes after its writes to the bans bucket, each in key order: bbolt
// inserts into a node of its tree in memory, moving the keys after the
// insertion point, and splits the node only at commit, so keys inserted in
// random order into one node cost O(n²). A first pull of 100,000 bans
// (their ends random, all later than the stored ones, so all in the
// index's last node) spent 8 s there; in key order each insertion appends.
// The bulk write writes each prefix once, so a key is deleted at most once
// and inserted at most once (deletions first: a ban rewritten with the same
// end keeps its key).
type expBatch struct {
	del, put [][]byte
}

// apply makes the batch's deletions, then its insertions, each in key
// order (a key both deleted and inserted stays).
func (x *expBatch) apply(exp *bolt.Bucket) error {
	slices.SortFunc(x.del, bytes.Compare)
	for _, k := range x.del {
		if err := exp.Delete(k); err != nil {
			return fmt.Errorf("unindex a ban: %w", err)
		}
	}
	slices.SortFunc(x.put, bytes.Compare)
	for _, k := range x.put {
		if err := exp.Put(k, nil); err != nil {
			return fmt.Errorf("index a ban: %w", err)
		}
	}
	x.del, x.put = x.del[:0], x.put[:0]
	return nil
}

// put is Put; with x, the expiry index's writes go into x instead.
func (t *Tx) put(b Ban, x *expBatch) error {
	b.Prefix = policy.Canonical(b.Prefix)
	if !b.Prefix.IsValid() {
		return errors.New("store a ban: invalid prefix")
	}
	k := prefixKey(b.Prefix)
	if _, err := t.Bans(); err != nil {
		return err
	}
	t.wrote = true
	if old := t.bans.Get(k); old != nil {
		ob, err := DecodeBan(k, old)
		if err != nil {
			return err
		}
		if x != nil {
			x.del = append(x.del, expiryKey(ob.Until, k))
		} else if err := t.exp.Delete(expiryKey(ob.Until, k)); err != nil {
			return err
		}
		if err := t.countIn(&ob, -1); err != nil {
			return err
		}
	} else {
		t.count++
		t.countDirty = true
	}
	if err := t.countIn(&b, 1); err != nil {
		return err
	}
	if err := t.bans.Put(k, encodeBan(&b)); err != nil {
		return fmt.Errorf("store ban %s: %w", b.Prefix, err)
	}
	if x != nil {
		x.put = append(x.put, expiryKey(b.Until, k))
		return nil
	}
	if err := t.exp.Put(expiryKey(b.Until, k), nil); err != nil {
		return fmt.Errorf("index ban %s: %w", b.Prefix, err)
	}
	return nil
}

// Remove deletes the ban for exactly prefix p and reports whether there was
// one.
func (t *Tx) Remove(p netip.Prefix) (bool, error) { return t.remove(p, nil) }

// remove is Remove; with x, the expiry index's deletion goes into x.
func (t *Tx) remove(p netip.Prefix, x *expBatch) (bool, error) {
	k := prefixKey(policy.Canonical(p))
	old := t.bans.Get(k)
	if old == nil {
		return false, nil
	}
	if _, err := t.Bans(); err != nil {
		return false, err
	}
	ob, err := DecodeBan(k, old)
	if err != nil {
		return false, err
	}
	t.wrote = true
	if x != nil {
		x.del = append(x.del, expiryKey(ob.Until, k))
	} else if err := t.exp.Delete(expiryKey(ob.Until, k)); err != nil {
		return false, err
	}
	if err := t.countIn(&ob, -1); err != nil {
		return false, err
	}
	if err := t.bans.Delete(k); err != nil {
		return false, err
	}
	t.count--
	t.countDirty = true
	return true, nil
}

// PutRecord stores the history record r, replacing the one of its prefix.
func (t *Tx) PutRecord(r Record) error {
	r.Prefix = policy.Canonical(r.Prefix)
	if !r.Prefix.IsValid() {
		return errors.New("store a history record: invalid prefix")
	}
	t.wrote = true
	return t.hist.Put(prefixKey(r.Prefix), encodeRecord(&r))
}

// putRecords stores the records recs[i] for each i of idx, in key order
// (see expBatch: in random order, many new keys cost O(n²)); of two of one
// prefix the later wins.
func (t *Tx) putRecords(recs []Record, idx []int) error {
	keys := make([][]byte, len(idx))
	for j, i := range idx {
		keys[j] = prefixKey(policy.Canonical(recs[i].Prefix))
	}
	order := make([]int, len(idx))
	for j := range order {
		order[j] = j
	}
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(keys[a], keys[b]) })
	for _, j := range order {
		if err := t.PutRecord(recs[idx[j]]); err != nil {
			return err
		}
	}
	return nil
}

// removeRecord deletes the history record of p.
func (t *Tx) removeRecord(p netip.Prefix) error {
	t.wrote = true
	return t.hist.Delete(prefixKey(policy.Canonical(p)))
}

// Expiring calls fn, in order of their end, for the bans that end before
// t: first the bans that never end (zero Until), then the others. It
// reads only those bans (the expiry index), however many the store holds.
func (t *Tx) Expiring(before time.Time, fn func(Ban) error) error {
	if t.empty() {
		return nil
	}
	limit := make([]byte, stampLen)
	putStamp(limit, before)
	c := t.exp.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:min(stampLen, len(k))], limit) < 0; k, _ = c.Next() {
		if len(k) < stampLen {
			return fmt.Errorf("corrupt expiry index key %x", k)
		}
		pk := k[stampLen:]
		v := t.bans.Get(pk)
		if v == nil {
			return fmt.Errorf("corrupt expiry index: no ban for key %x", k)
		}
		b, err := DecodeBan(pk, v)
		if err != nil {
			return err
		}
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

// Expire removes the bans that have ended at now (their Until is not after
// now) and returns them. It reads only those (the expiry index).
func (t *Tx) Expire(now time.Time) ([]Ban, error) {
	var gone []Ban
	err := t.Expiring(now.Add(1), func(b Ban) error {
		if b.Expired(now) {
			gone = append(gone, b)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, b := range gone {
		if _, err := t.Remove(b.Prefix); err != nil {
			return nil, err
		}
	}
	return gone, nil
}

// ForEachBan calls fn for every stored ban, in prefix order (IPv4 first),
// streaming them from the database.
func (t *Tx) ForEachBan(fn func(Ban) error) error {
	if t.empty() {
		return nil
	}
	strs := make(map[string]string)
	return t.bans.ForEach(func(k, v []byte) error {
		b, err := decodeBan(k, v, strs)
		if err != nil {
			return err
		}
		return fn(b)
	})
}

// appendBans appends every ban to dst, in prefix order (as ForEachBan
// calls its function), each decoded in place.
func (t *Tx) appendBans(dst []Ban) ([]Ban, error) {
	if t.empty() {
		return dst, nil
	}
	strs := make(map[string]string)
	err := t.bans.ForEach(func(k, v []byte) error {
		dst = append(dst, Ban{})
		if err := decodeBanInto(&dst[len(dst)-1], k, v, strs); err != nil {
			dst = dst[:len(dst)-1]
			return err
		}
		return nil
	})
	return dst, err
}

// ForEachRecord calls fn for every history record, in prefix order.
func (t *Tx) ForEachRecord(fn func(Record) error) error {
	if t.empty() {
		return nil
	}
	return t.hist.ForEach(func(k, v []byte) error {
		r, err := DecodeRecord(k, v)
		if err != nil {
			return err
		}
		return fn(r)
	})
}

// Upsert adds b, or extends the ban of the same prefix as State.Upsert
// does.
func (t *Tx) Upsert(b Ban) error {
	b.Prefix = policy.Canonical(b.Prefix)
	old, ok, err := t.Find(b.Prefix)
	if err != nil {
		return err
	}
	if ok {
		merge(&old, b)
		b = old
	}
	return t.Put(b)
}

// saveBans makes the stored bans exactly bans (sorted by prefix, canonical;
// of two of one prefix the later wins), writing only those whose stored
// bytes differ: one walk of the bans bucket alongside the list, then the
// writes (a bucket is not written while a cursor walks it).
func (t *Tx) saveBans(bans []Ban) error {
	var put []int
	var gone []netip.Prefix
	drop := func(k []byte) error {
		p, err := decodePrefixKey(k)
		gone = append(gone, p)
		return err
	}
	c := t.bans.Cursor()
	k, v := c.First()
	var buf, key []byte
	for j := range bans {
		b := &bans[j]
		key = appendPrefixKey(key[:0], b.Prefix)
		for k != nil && bytes.Compare(k, key) < 0 {
			if err := drop(k); err != nil {
				return err
			}
			k, v = c.Next()
		}
		if j+1 < len(bans) && bans[j+1].Prefix == b.Prefix {
			continue // the later ban of the prefix wins: only it is written
		}
		if k != nil && bytes.Equal(k, key) {
			buf = appendBan(buf[:0], b)
			same := bytes.Equal(v, buf)
			k, v = c.Next()
			if same {
				continue
			}
		}
		put = append(put, j)
	}
	for ; k != nil; k, _ = c.Next() {
		if err := drop(k); err != nil {
			return err
		}
	}
	// The bans bucket is written in key order (gone and put are); the
	// expiry index after it, in its own key order (see expBatch).
	var x expBatch
	for _, p := range gone {
		if _, err := t.remove(p, &x); err != nil {
			return err
		}
	}
	for _, j := range put {
		if err := t.put(bans[j], &x); err != nil {
			return err
		}
	}
	return x.apply(t.exp)
}

// RemoveAll removes every ban (the history stays).
func (t *Tx) RemoveAll() error {
	t.wrote = true
	for _, b := range []**bolt.Bucket{&t.bans, &t.exp, &t.tallyB} {
		name := bucketBans
		switch b {
		case &t.exp:
			name = bucketExpiry
		case &t.tallyB:
			name = bucketTally
		}
		if err := t.tx.DeleteBucket(name); err != nil {
			return err
		}
		nb, err := t.tx.CreateBucket(name)
		if err != nil {
			return err
		}
		*b = nb
	}
	t.setFill()
	t.count, t.countRead, t.countDirty = 0, true, true
	t.tally, t.tallyDirty = map[string]int{}, true
	return nil
}

// flush writes the ban count and the tally when they changed.
func (t *Tx) flush() error {
	if t.tallyDirty {
		t.tallyDirty = false
		for k, n := range t.tally {
			var err error
			if n <= 0 {
				err = t.tallyB.Delete([]byte(k))
				delete(t.tally, k)
			} else {
				err = t.tallyB.Put([]byte(k), binary.AppendUvarint(nil, uint64(n)))
			}
			if err != nil {
				return fmt.Errorf("write the ban tally: %w", err)
			}
		}
	}
	if !t.countDirty {
		return nil
	}
	t.countDirty = false
	return t.meta.Put(keyCount, binary.AppendUvarint(nil, uint64(t.count)))
}
