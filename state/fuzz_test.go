package state

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/policy"
)

// FuzzStateLoad fuzzes what the store decodes: one ban's key and value and
// one history record's as the database holds them (DecodeBan,
// DecodeRecord), and a state.json as the migration reads it. Every input
// decodes or gives an error, never panics; what decodes has a canonical
// prefix and encodes back to itself; a state.json that does not decode is
// an error naming the file that leaves it alone, and one that decodes is
// imported exactly (of two bans of one prefix the later wins) and kept as
// state.json.migrated.
func FuzzStateLoad(f *testing.F) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ban := Ban{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Since: t0, Until: t0.Add(time.Hour), Reason: "syn-flood: 80", Rule: "syn-flood", Backend: "nftables", Drops: 3}
	v6 := Ban{Prefix: netip.MustParsePrefix("2001:db8::/64"), Forced: true, Origin: "crowdsec:cscli"}
	rec := Record{Prefix: ban.Prefix, Bans: 2, LastBan: t0, LastFor: time.Minute}
	f.Add(prefixKey(ban.Prefix), encodeBan(&ban), []byte(`{"version":1,"bans":[{"prefix":"192.0.2.7/32","since":"2025-01-01T00:00:00Z","until":"2025-01-01T01:00:00Z","reason":"r","backend":"nftables"}],"history":[]}`))
	f.Add(prefixKey(v6.Prefix), encodeBan(&v6), []byte(`{"version":1,"bans":null,"history":[{"prefix":"2001:db8::/64","bans":3,"last_ban":"2025-01-01T00:00:00Z","last_for_ns":600000000000}]}`))
	f.Add(prefixKey(rec.Prefix), encodeRecord(&rec), []byte(`{"version":2}`))
	f.Add([]byte{4, 10, 0, 0, 1, 33}, []byte{1, 0}, []byte(`{"version":1,"bans":[{"prefix":"::ffff:10.0.0.1/128"},{"prefix":"10.0.0.1/32","reason":"later"}]}`))
	f.Add([]byte{}, []byte{}, []byte(``))
	f.Fuzz(func(t *testing.T, key, val, doc []byte) {
		if b, err := DecodeBan(key, val); err == nil {
			if !b.Prefix.IsValid() || b.Prefix != policy.Canonical(b.Prefix) || !bytes.Equal(prefixKey(b.Prefix), key) {
				t.Fatalf("decoded ban with prefix %v from key %x", b.Prefix, key)
			}
			enc := encodeBan(&b)
			back, err := DecodeBan(key, enc)
			if err != nil || !banEqual(&b, &back) || !bytes.Equal(encodeBan(&back), enc) {
				t.Fatalf("ban %+v does not round-trip: %+v, %v", b, back, err)
			}
		}
		if r, err := DecodeRecord(key, val); err == nil {
			enc := encodeRecord(&r)
			back, err := DecodeRecord(key, enc)
			if err != nil || !recordEqual(&r, &back) {
				t.Fatalf("record %+v does not round-trip: %+v, %v", r, back, err)
			}
		}
		if a, err := decodeApplied(val); err == nil {
			if back, err := decodeApplied(encodeApplied(a)); err != nil || *back != *a {
				t.Fatalf("applied %+v does not round-trip: %+v, %v", a, back, err)
			}
		}
		migrate(t, doc)
	})
}

// migrate checks the import of doc as a state.json.
func migrate(t *testing.T, doc []byte) {
	dir := t.TempDir()
	legacy := filepath.Join(dir, LegacyFileName)
	if err := os.WriteFile(legacy, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, derr := DecodeLegacy(doc)
	if derr != nil {
		if err := s.Update(func(*State) error { return nil }); err == nil || !strings.Contains(err.Error(), legacy) {
			t.Fatalf("import of a state.json that does not decode (%v): %v, want an error naming %s", derr, err, legacy)
		}
		if got, _ := os.ReadFile(legacy); !bytes.Equal(got, doc) {
			t.Fatal("a state.json that does not decode was changed")
		}
		if _, err := os.Lstat(s.Path()); err == nil {
			t.Fatal("a state.json that does not decode left a database behind")
		}
		return
	}
	if err := s.Update(func(*State) error { return nil }); err != nil {
		t.Fatalf("a state.json that decodes does not import: %v", err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatalf("the imported store does not load: %v", err)
	}
	// Expected: canonical prefixes, the later of two bans of one prefix.
	bans := map[netip.Prefix]Ban{}
	for _, b := range want.Bans {
		b.Prefix = policy.Canonical(b.Prefix)
		bans[b.Prefix] = b
	}
	hist := map[netip.Prefix]Record{}
	for _, r := range want.History {
		r.Prefix = policy.Canonical(r.Prefix)
		hist[r.Prefix] = r
	}
	if len(got.Bans) != len(bans) || len(got.History) != len(hist) {
		t.Fatalf("imported %d bans and %d records, want %d and %d", len(got.Bans), len(got.History), len(bans), len(hist))
	}
	for i := range got.Bans {
		w := bans[got.Bans[i].Prefix]
		if !banEqual(&got.Bans[i], &w) {
			t.Fatalf("imported %+v, want %+v", got.Bans[i], w)
		}
	}
	for i := range got.History {
		w := hist[got.History[i].Prefix]
		if !recordEqual(&got.History[i], &w) {
			t.Fatalf("imported %+v, want %+v", got.History[i], w)
		}
	}
	if (got.Applied == nil) != (want.Applied == nil) || got.Applied != nil && *got.Applied != *want.Applied {
		t.Fatalf("imported applied %+v, want %+v", got.Applied, want.Applied)
	}
	if kept, err := os.ReadFile(filepath.Join(dir, MigratedName)); err != nil || !bytes.Equal(kept, doc) {
		t.Fatalf("%s not kept: %v", MigratedName, err)
	}
	if err := consistent(s, len(got.Bans)); err != nil {
		t.Fatal(err)
	}
}
