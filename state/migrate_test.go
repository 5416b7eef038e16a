package state

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMigrateLegacy: the first read-write open imports a state.json in one
// transaction, renames it state.json.migrated (kept), logs one info line,
// and a second open imports nothing; reads without the lock read the
// state.json as it is and change nothing.
func TestMigrateLegacy(t *testing.T) {
	dir := t.TempDir()
	doc := `{"version":1,"bans":[` +
		`{"prefix":"192.0.2.1/32","since":"2026-01-01T00:00:00Z","until":"2099-01-01T00:00:00Z","reason":"syn-flood: 80","rule":"syn-flood","backend":"nftables","drops":7},` +
		`{"prefix":"2001:db8::/64","since":"2026-01-01T00:00:00Z","reason":"manual ban","backend":"nftables","forced":true},` +
		`{"prefix":"198.51.100.0/24","since":"2026-01-01T00:00:00Z","until":"2026-01-02T00:00:00Z","backend":"route","origin":"crowdsec:cscli"}],` +
		`"history":[{"prefix":"192.0.2.1/32","bans":3,"last_ban":"2026-01-01T00:00:00Z","last_for_ns":600000000000}],` +
		`"applied":{"backend":"nftables","generation":17,"ruleset":"abc","bans":3}}`
	legacy := filepath.Join(dir, LegacyFileName)
	if err := os.WriteFile(legacy, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := DecodeLegacy([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want.normalize()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Without the lock: read as it is, nothing created or renamed.
	if st, err := s.Load(); err != nil || len(st.Bans) != 3 {
		t.Fatalf("Load of an unmigrated store = %+v, %v", st, err)
	}
	if _, err := os.Lstat(s.Path()); !os.IsNotExist(err) {
		t.Fatalf("a read created %s: %v", s.Path(), err)
	}

	var logs bytes.Buffer
	s.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	release := lock(t, s)
	if got := strings.Count(logs.String(), "level=INFO"); got != 1 || !strings.Contains(logs.String(), "migrated") || !strings.Contains(logs.String(), legacy) {
		t.Errorf("migration logged %d info lines, want one naming %s:\n%s", got, legacy, logs.String())
	}
	if _, err := os.Lstat(legacy); !os.IsNotExist(err) {
		t.Errorf("%s still there after the import: %v", legacy, err)
	}
	if kept, err := os.ReadFile(filepath.Join(dir, MigratedName)); err != nil || string(kept) != doc {
		t.Errorf("%s not kept as it was: %v", MigratedName, err)
	}
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, st, want)
	if h, err := s.Head(); err != nil || h.Bans != 3 || h.Applied == nil || *h.Applied != *want.Applied {
		t.Errorf("Head after the import = %+v, %v", h, err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	// A second open imports nothing and logs nothing.
	logs.Reset()
	release = lock(t, s)
	defer release()
	if logs.Len() != 0 {
		t.Errorf("second open logged:\n%s", logs.String())
	}
	st, err = s.Load()
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, st, want)
}

// TestMigrateKilledBeforeRename: a store that holds the import but still
// has its state.json (a run killed between the commit and the rename)
// renames it without importing it again over newer bans.
func TestMigrateKilledBeforeRename(t *testing.T) {
	dir := t.TempDir()
	doc := `{"version":1,"bans":[{"prefix":"192.0.2.1/32","since":"2026-01-01T00:00:00Z","until":"2099-01-01T00:00:00Z"}],"history":[]}`
	legacy := filepath.Join(dir, LegacyFileName)
	if err := os.WriteFile(legacy, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(st *State) error { st.Remove(netip.MustParsePrefix("192.0.2.1/32")); return nil }); err != nil {
		t.Fatal(err)
	}
	// Put the document back as if the rename had not happened.
	if err := os.Rename(filepath.Join(dir, MigratedName), legacy); err != nil {
		t.Fatal(err)
	}
	release := lock(t, s)
	defer release()
	if st, err := s.Load(); err != nil || len(st.Bans) != 0 {
		t.Fatalf("after the second open: %+v, %v; want the removed ban to stay removed", st, err)
	}
	if _, err := os.Lstat(legacy); !os.IsNotExist(err) {
		t.Errorf("%s not renamed: %v", legacy, err)
	}
}

// TestCorruptDatabase: a state.db that is not a database is an error
// naming it as corrupt, from a read and from the lock; it is left alone.
func TestCorruptDatabase(t *testing.T) {
	for name, content := range map[string][]byte{
		"garbage":   bytes.Repeat([]byte("synban!\x00"), 4096),
		"truncated": make([]byte, 100),
	} {
		t.Run(name, func(t *testing.T) {
			s := mustOpen(t)
			if err := os.WriteFile(s.Path(), content, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Load(); err == nil || !strings.Contains(err.Error(), s.Path()) {
				t.Errorf("Load of a corrupt database: %v, want an error naming %s", err, s.Path())
			}
			if rel, err := s.Lock(t.Context(), false); err == nil || !strings.Contains(err.Error(), s.Path()) || !strings.Contains(err.Error(), "corrupt") {
				if err == nil {
					rel()
				}
				t.Errorf("Lock over a corrupt database: %v, want an error naming %s as corrupt", err, s.Path())
			}
			if got, _ := os.ReadFile(s.Path()); !bytes.Equal(got, content) {
				t.Error("the corrupt database was changed")
			}
		})
	}
}

// TestExpiryIndex: Expiring yields the bans that never end and then those
// ending before the time given, in order of their end, and no other;
// Expire removes exactly the ended ones and keeps the count; RemoveAll
// leaves an empty store.
func TestExpiryIndex(t *testing.T) {
	s := mustOpen(t)
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	ban := func(i int, until time.Time) Ban {
		return Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32), Since: t0, Until: until}
	}
	if err := s.Edit(func(tx *Tx) error {
		for i := range 100 {
			if err := tx.Put(ban(i, t0.Add(time.Duration(100-i)*time.Minute))); err != nil {
				return err
			}
		}
		if err := tx.Put(ban(500, time.Time{})); err != nil { // never ends
			return err
		}
		// Replacing a ban moves its index entry.
		return tx.Put(ban(99, t0.Add(time.Hour*1000)))
	}); err != nil {
		t.Fatal(err)
	}
	var seen []Ban
	if err := s.View(func(tx *Tx) error {
		return tx.Expiring(t0.Add(10*time.Minute+time.Second), func(b Ban) error { seen = append(seen, b); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	// The never-ending ban, then ends at +1m..+10m (bans 99..90, less 99 moved).
	if len(seen) != 10 || !seen[0].Until.IsZero() || !seen[1].Until.Equal(t0.Add(2*time.Minute)) || !seen[9].Until.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("Expiring(+10m1s) = %+v", seen)
	}
	var gone []Ban
	if err := s.Edit(func(tx *Tx) error {
		var err error
		gone, err = tx.Expire(t0.Add(5 * time.Minute)) // Until == now has ended
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(gone) != 4 { // +2m..+5m
		t.Fatalf("Expire(+5m) removed %d bans, want 4: %+v", len(gone), gone)
	}
	h, err := s.Head()
	if err != nil || h.Bans != 97 {
		t.Fatalf("Head after the expiry = %+v, %v; want 97 bans", h, err)
	}
	if err := consistent(s, 97); err != nil {
		t.Fatal(err)
	}
	if err := s.Edit(func(tx *Tx) error { return tx.RemoveAll() }); err != nil {
		t.Fatal(err)
	}
	if err := consistent(s, 0); err != nil {
		t.Fatalf("after RemoveAll: %v", err)
	}
}

// TestUpdateLoadedMatchesUpdate: UpdateLoaded on a loaded state, which
// writes what changed by comparing with the database, stores what Update
// stores for the same edit (removals, changed and appended bans, a prefix
// appended twice, history), and keeps the count and the index in step.
func TestUpdateLoadedMatchesUpdate(t *testing.T) {
	s := mustOpen(t)
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	if err := s.Update(func(st *State) error {
		for i := range 50 {
			st.Upsert(Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 32), Since: t0, Until: t0.Add(time.Hour), Reason: "r"})
		}
		st.Upsert(Ban{Prefix: netip.MustParsePrefix("2001:db8::1/128"), Since: t0})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(st *State) error {
		st.Remove(netip.MustParsePrefix("10.1.0.3/32"))
		st.SetDrops(netip.MustParsePrefix("10.1.0.7/32"), 99)
		st.Upsert(Ban{Prefix: netip.MustParsePrefix("10.1.0.200/32"), Since: t0, Until: t0.Add(time.Minute)})
		st.Bans = append(st.Bans, Ban{Prefix: netip.MustParsePrefix("10.1.0.9/32"), Since: t0, Reason: "appended twice, the later wins"})
		st.Record(netip.MustParsePrefix("10.1.0.9/32"), t0, time.Minute)
		return nil
	}
	if err := s.UpdateLoaded(st, edit); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t)
	if err := s2.Update(func(st *State) error {
		for i := range 50 {
			st.Upsert(Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 32), Since: t0, Until: t0.Add(time.Hour), Reason: "r"})
		}
		st.Upsert(Ban{Prefix: netip.MustParsePrefix("2001:db8::1/128"), Since: t0})
		return edit(st)
	}); err != nil {
		t.Fatal(err)
	}
	want, err := s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, want)
	if b, ok := got.Find(netip.MustParsePrefix("10.1.0.9/32")); !ok || b.Reason != "appended twice, the later wins" {
		t.Errorf("duplicate prefix stored as %+v, %v", b, ok)
	}
	if len(got.Bans) != 51 {
		t.Errorf("%d bans stored, want 51", len(got.Bans))
	}
	if err := consistent(s, len(got.Bans)); err != nil {
		t.Fatal(err)
	}
}

// lock takes s's lock or fails the test.
func lock(t *testing.T, s *Store) func() error {
	t.Helper()
	release, err := s.Lock(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	return release
}

// sameState fails unless got and want hold the same bans, history and
// applied record.
func sameState(t *testing.T, got, want *State) {
	t.Helper()
	if len(got.Bans) != len(want.Bans) || len(got.History) != len(want.History) {
		t.Fatalf("got %d bans and %d records, want %d and %d", len(got.Bans), len(got.History), len(want.Bans), len(want.History))
	}
	for i := range got.Bans {
		if !banEqual(&got.Bans[i], &want.Bans[i]) {
			t.Errorf("ban %d = %+v, want %+v", i, got.Bans[i], want.Bans[i])
		}
	}
	for i := range got.History {
		if !recordEqual(&got.History[i], &want.History[i]) {
			t.Errorf("record %d = %+v, want %+v", i, got.History[i], want.History[i])
		}
	}
	if (got.Applied == nil) != (want.Applied == nil) || got.Applied != nil && *got.Applied != *want.Applied {
		t.Errorf("applied = %+v, want %+v", got.Applied, want.Applied)
	}
}
