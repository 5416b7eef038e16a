package state

import (
	"os"
	"path/filepath"
	"testing"
)

// TestApplied: a version-1 document without the applied record loads with
// Applied nil; a record written round-trips; clearing it drops it.
func TestApplied(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := `{"version":1,"bans":[{"prefix":"192.0.2.1/32","since":"2026-01-01T00:00:00Z","until":"2099-01-01T00:00:00Z","reason":"r"}],"history":[]}`
	if err := os.WriteFile(filepath.Join(dir, LegacyFileName), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := s.Load()
	if err != nil || st.Applied != nil || len(st.Bans) != 1 {
		t.Fatalf("Load of a document without applied = %+v, %v; want one ban, Applied nil", st, err)
	}
	want := Applied{Backend: "nftables", Generation: 4242, Ruleset: "abc", Bans: 1}
	if err := s.Update(func(st *State) error { st.Applied = &want; return nil }); err != nil {
		t.Fatal(err)
	}
	if st, err = s.Load(); err != nil || st.Applied == nil || *st.Applied != want {
		t.Fatalf("Applied after a round trip = %+v, %v; want %+v", st.Applied, err, want)
	}
	if h, err := s.Head(); err != nil || h.Applied == nil || *h.Applied != want || h.Bans != 1 {
		t.Fatalf("Head = %+v, %v; want %+v and 1 ban", h, err, want)
	}
	if err := s.Update(func(st *State) error { st.Applied = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if st, err = s.Load(); err != nil || st.Applied != nil {
		t.Fatalf("Applied after clearing = %+v, %v; want nil", st.Applied, err)
	}
	if h, err := s.Head(); err != nil || h.Applied != nil {
		t.Fatalf("Head after clearing = %+v, %v; want no applied record", h, err)
	}
}
