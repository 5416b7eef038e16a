package state

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustOpen(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOpenCreatesDir0700(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode = %v, want drwx------", fi.Mode())
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file); err == nil {
		t.Fatal("Open on a regular file succeeded")
	}
}

func TestMissingIsEmpty(t *testing.T) {
	s := mustOpen(t)
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != Version || len(st.Bans) != 0 || len(st.History) != 0 {
		t.Fatalf("missing file loaded as %+v, want empty state", st)
	}
}

// TestCorruptNamesFile: a state.json that does not decode is an error
// naming it as corrupt, from Load and from Update, and Update then changes
// nothing: the file stays, no database is created.
func TestCorruptNamesFile(t *testing.T) {
	for name, content := range map[string]string{
		"truncated": `{"version":1,"bans":[{"prefix":"10.0.0.1/32"`,
		"empty":     "",
		"garbage":   "\x00\x01\x02",
		"unknown":   `{"version":1,"bans":[],"history":[],"extra":1}`,
		"version":   `{"version":99,"bans":[],"history":[]}`,
		"prefix":    `{"version":1,"bans":[{"prefix":"10.0.0.300/32"}],"history":[]}`,
		"noprefix":  `{"version":1,"bans":[{"reason":"x"}],"history":[]}`,
		"trailing":  `{"version":1,"bans":[],"history":[]} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			s := mustOpen(t)
			legacy := filepath.Join(s.Dir(), LegacyFileName)
			if err := os.WriteFile(legacy, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := s.Load()
			if err == nil {
				t.Fatalf("corrupt file loaded as %+v", st)
			}
			if !strings.Contains(err.Error(), legacy) || !strings.Contains(err.Error(), "corrupt") {
				t.Fatalf("error %q does not name the file %s as corrupt", err, legacy)
			}
			if err := s.Update(func(*State) error { return nil }); err == nil || !strings.Contains(err.Error(), legacy) {
				t.Fatalf("Update over a corrupt file: %v, want an error naming %s", err, legacy)
			}
			got, _ := os.ReadFile(legacy)
			if string(got) != content {
				t.Fatal("Update changed a corrupt file")
			}
			if ents, _ := os.ReadDir(s.Dir()); len(ents) != 1 {
				t.Fatalf("Update over a corrupt state.json left %v in the state dir, want it alone", ents)
			}
		})
	}
}

func TestUpdateRoundTrip(t *testing.T) {
	s := mustOpen(t)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	p4 := netip.MustParsePrefix("203.0.113.7/32")
	p6 := netip.MustParsePrefix("2001:db8::/64")
	err := s.Update(func(st *State) error {
		st.Upsert(Ban{Prefix: p6, Since: now, Until: now.Add(time.Hour), Reason: "syn-flood: 900", Rule: "syn-flood", Backend: "route"})
		st.Upsert(Ban{Prefix: p4, Since: now, Until: now.Add(10 * time.Minute), Reason: "conn-flood", Backend: "nftables"})
		st.Record(p4, now, 10*time.Minute)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Bans) != 2 || st.Bans[0].Prefix != p4 || st.Bans[1].Prefix != p6 {
		t.Fatalf("bans = %+v, want %s then %s", st.Bans, p4, p6)
	}
	b := st.Bans[1]
	if !b.Until.Equal(now.Add(time.Hour)) || !b.Since.Equal(now) || b.Reason != "syn-flood: 900" || b.Rule != "syn-flood" || b.Backend != "route" {
		t.Fatalf("ban did not round-trip: %+v", b)
	}
	r, ok := st.Last(p4)
	if !ok || r.Bans != 1 || !r.LastBan.Equal(now) || r.LastFor != 10*time.Minute {
		t.Fatalf("Last(%s) = %+v, %v", p4, r, ok)
	}
	// A ban without an end stays without one through a save.
	forever := netip.MustParsePrefix("192.0.2.1/32")
	if err := s.Update(func(st *State) error { st.Upsert(Ban{Prefix: forever, Since: now}); return nil }); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Load(); err != nil {
		t.Fatal(err)
	} else if b, ok := st.Find(forever); !ok || !b.Until.IsZero() || b.Expired(now.Add(1000*time.Hour)) {
		t.Fatalf("no-expiry ban loaded as %+v, %v", b, ok)
	}
	if _, ok := st.Last(p6); ok {
		t.Fatalf("Last(%s) found a record that was never made", p6)
	}

	want := errors.New("abort")
	if err := s.Update(func(st *State) error { st.Bans = nil; return want }); !errors.Is(err, want) {
		t.Fatalf("Update returned %v, want %v", err, want)
	}
	if st, _ := s.Load(); len(st.Bans) != 3 {
		t.Fatal("a failed Update was saved")
	}
	ents, _ := os.ReadDir(s.Dir())
	for _, e := range ents {
		if e.Name() != FileName {
			t.Errorf("unexpected file %s left in the state dir", e.Name())
		}
	}
}

func TestHelpers(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	a := netip.MustParsePrefix("198.51.100.9/32")
	b := netip.MustParsePrefix("198.51.100.0/24")
	c := netip.MustParsePrefix("2001:db8::1/128")
	var st State
	st.Upsert(Ban{Prefix: a, Since: t0, Until: t0.Add(time.Minute), Reason: "first"})
	st.Upsert(Ban{Prefix: b, Since: t0, Until: t0.Add(5 * time.Minute)})
	st.Upsert(Ban{Prefix: c, Since: t0}) // no expiry
	// Same prefix (written as IPv4-mapped, unmasked): extends, keeps Since.
	st.Upsert(Ban{Prefix: netip.MustParsePrefix("::ffff:198.51.100.9/128"), Since: t0.Add(30 * time.Second), Until: t0.Add(3 * time.Minute), Reason: "second"})
	if len(st.Bans) != 3 {
		t.Fatalf("Upsert of an existing prefix added a ban: %+v", st.Bans)
	}
	got, ok := st.Find(a)
	if !ok || !got.Since.Equal(t0) || !got.Until.Equal(t0.Add(3*time.Minute)) || got.Reason != "second" {
		t.Fatalf("extended ban = %+v", got)
	}
	// A shorter Until does not shorten.
	st.Upsert(Ban{Prefix: a, Until: t0.Add(time.Second)})
	if got, _ := st.Find(a); !got.Until.Equal(t0.Add(3 * time.Minute)) {
		t.Fatalf("Upsert shortened a ban to %v", got.Until)
	}

	if n := len(st.Active(t0.Add(4 * time.Minute))); n != 2 {
		t.Fatalf("Active at +4m = %d bans, want 2 (the /24 and the no-expiry /128)", n)
	}
	gone := st.Expire(t0.Add(3 * time.Minute)) // Until == now counts as ended
	if len(gone) != 1 || gone[0].Prefix != a {
		t.Fatalf("Expire at +3m removed %+v, want only %s", gone, a)
	}
	if _, ok := st.Find(a); ok {
		t.Fatal("expired ban still present")
	}
	if !st.Remove(b) || st.Remove(b) {
		t.Fatal("Remove should report true once, then false")
	}
	if act := st.Active(t0.Add(1000 * time.Hour)); len(act) != 1 || act[0].Prefix != c {
		t.Fatalf("a ban without Until must never expire, Active = %+v", act)
	}

	st.Record(a, t0, time.Minute)
	st.Record(netip.MustParsePrefix("198.51.100.9/32"), t0.Add(time.Hour), 4*time.Minute)
	r, ok := st.Last(a)
	if !ok || r.Bans != 2 || !r.LastBan.Equal(t0.Add(time.Hour)) || r.LastFor != 4*time.Minute {
		t.Fatalf("Last after two records = %+v", r)
	}
}

func TestLock(t *testing.T) {
	s := mustOpen(t)
	// A leftover of a killed save is cleaned up by the next Lock.
	leftover := filepath.Join(s.Dir(), tmpPrefix+"123")
	if err := os.WriteFile(leftover, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	release, err := s.Lock(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover temp file not removed under lock: %v", err)
	}

	// A second lock (another open file description, as another run has) fails at once.
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := s2.Lock(context.Background(), false); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock(wait=false) = %v, want ErrLocked", err)
	} else if !strings.Contains(err.Error(), "pid") {
		t.Errorf("ErrLocked message %q does not name the holder", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Lock(wait=false) took %s", d)
	}

	// Waiting gives up when the context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	_, err = s2.Lock(ctx, true)
	cancel()
	if !errors.Is(err, ErrLocked) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock(wait=true) with an ended context = %v", err)
	}

	// A waiter gets the lock once it is released.
	got := make(chan error, 1)
	go func() {
		rel, err := s2.Lock(context.Background(), true)
		if err == nil {
			err = rel()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("waiter returned (%v) while the lock was held", err)
	default:
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Fatalf("second release: %v", err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter did not get the lock after release")
	}
}

// TestUpsertIndexStaysCorrect records 100,000 bans and looks each up again; with a
// linear search per ban this takes seconds, with the index milliseconds.
func TestUpsertIndexStaysCorrect(t *testing.T) {
	st := &State{}
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	const n = 100000
	for i := 0; i < n; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		st.Upsert(Ban{Prefix: p, Until: now.Add(time.Hour)})
		st.Record(p, now, time.Hour)
	}
	if len(st.Bans) != n || len(st.History) != n {
		t.Fatalf("have %d bans, %d records; want %d each", len(st.Bans), len(st.History), n)
	}
	// Upserting again extends, never duplicates.
	p := netip.MustParsePrefix("10.0.0.7/32")
	st.Upsert(Ban{Prefix: p, Until: now.Add(2 * time.Hour), Reason: "again"})
	if b, ok := st.Find(p); !ok || !b.Until.Equal(now.Add(2*time.Hour)) || b.Reason != "again" || len(st.Bans) != n {
		t.Fatalf("re-upsert: %+v, %v, %d bans", b, ok, len(st.Bans))
	}
	// Direct edits of the slices (as a caller clearing bans does) must not
	// leave a stale index behind.
	st.Bans = st.Bans[:0]
	if _, ok := st.Find(p); ok {
		t.Fatal("Find found a ban after Bans was cleared")
	}
	st.Upsert(Ban{Prefix: p, Until: now.Add(time.Hour)})
	if _, ok := st.Find(p); !ok || len(st.Bans) != 1 {
		t.Fatalf("after clear and upsert: %d bans", len(st.Bans))
	}
	st.Remove(p)
	st.History[0], st.History[n-1] = st.History[n-1], st.History[0]
	if r, ok := st.Last(st.History[0].Prefix); !ok || r.Prefix != st.History[0].Prefix {
		t.Fatalf("Last after a swap returned %+v, %v", r, ok)
	}
	if r, ok := st.Last(netip.MustParsePrefix("10.0.0.0/32")); !ok || r.Bans != 1 {
		t.Fatalf("Last(10.0.0.0) = %+v, %v", r, ok)
	}
}

// TestRemoveEach removes exactly the bans of the prefixes given (made
// canonical) and counts them.
func TestRemoveEach(t *testing.T) {
	st := &State{Version: Version}
	for _, p := range []string{"10.0.0.1/32", "10.0.0.2/32", "10.0.1.0/24", "2001:db8::/48"} {
		st.Upsert(Ban{Prefix: netip.MustParsePrefix(p)})
	}
	n := st.RemoveEach([]netip.Prefix{netip.MustParsePrefix("10.0.0.2/32"), netip.MustParsePrefix("10.0.1.7/24"),
		netip.MustParsePrefix("192.0.2.1/32")})
	if n != 2 || len(st.Bans) != 2 || st.Bans[0].Prefix.String() != "10.0.0.1/32" || st.Bans[1].Prefix.String() != "2001:db8::/48" {
		t.Errorf("removed %d, left %+v", n, st.Bans)
	}
}

// TestEditWritingNothingCommitsNothing: an update that changes nothing
// (the same bans, history and applied record) commits no transaction, so
// the file is not written; one that changes a ban does.
func TestEditWritingNothingCommitsNothing(t *testing.T) {
	s := mustOpen(t)
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	fill := func(st *State) error {
		st.Upsert(Ban{Prefix: netip.MustParsePrefix("10.0.0.1/32"), Since: now, Until: now.Add(time.Hour), Reason: "r"})
		st.Record(netip.MustParsePrefix("10.0.0.1/32"), now, time.Hour)
		st.Applied = &Applied{Backend: "nftables", Generation: 7, Ruleset: "x", Bans: 1}
		return nil
	}
	if err := s.Update(fill); err != nil {
		t.Fatal(err)
	}
	txid := func() int {
		var id int
		if err := s.View(func(tx *Tx) error { id = tx.tx.ID(); return nil }); err != nil {
			t.Fatal(err)
		}
		return id
	}
	before := txid()
	if err := s.Update(func(st *State) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Edit(func(tx *Tx) error { _, err := tx.Expire(now); return err }); err != nil {
		t.Fatal(err)
	}
	if got := txid(); got != before {
		t.Errorf("updates that changed nothing committed: transaction %d, was %d", got, before)
	}
	if err := s.Update(func(st *State) error { st.SetDrops(netip.MustParsePrefix("10.0.0.1/32"), 5); return nil }); err != nil {
		t.Fatal(err)
	}
	if got := txid(); got != before+1 {
		t.Errorf("an update that changed a ban: transaction %d, want %d", got, before+1)
	}
}
