package state

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/synban/synban/policy"
)

// pulledBans makes n bans as a CrowdSec pull stores them: random addresses
// (70% IPv4, 20% IPv6, 10% IPv4 /24), ends spread over 1h-4h after now,
// one reason and origin. The same seed gives the same bans.
func pulledBans(n int, seed uint64, now time.Time) []Ban {
	r := rand.New(rand.NewPCG(seed, 2))
	out := make([]Ban, n)
	for i := range out {
		var p netip.Prefix
		switch i % 10 {
		case 7, 8:
			var b [16]byte
			b[0], b[1] = 0x20, 0x01
			for j := 2; j < 16; j++ {
				b[j] = byte(r.IntN(256))
			}
			p = netip.PrefixFrom(netip.AddrFrom16(b), 128)
		case 9:
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(1 + r.IntN(200)), byte(r.IntN(256)), byte(r.IntN(256)), 0}), 24)
		default:
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(1 + r.IntN(200)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}), 32)
		}
		until := now.Add(time.Hour + time.Duration(r.IntN(3*3600*1000))*time.Millisecond)
		out[i] = Ban{Prefix: p, Since: now, Until: until, Reason: "crowdsec:cscli manual 'ban' from 'localhost'",
			Backend: "nftables", Origin: "crowdsec:cscli"}
	}
	return out
}

// BenchmarkSavePulled writes bans as a run that pulled them from a CrowdSec
// LAPI does (Update, under the lock): "first" 100,000 into an empty store,
// "unchanged" the same 100,000 again, "add=1000" 1,000 new ones beside
// them. file-MB is the database file's size after the write.
func BenchmarkSavePulled(b *testing.B) {
	const n = 100000
	now := time.Now()
	upsert := func(bans []Ban) func(*State) error {
		return func(st *State) error {
			for _, x := range bans {
				st.Upsert(x)
			}
			return nil
		}
	}
	open := func(b *testing.B) *Store {
		s, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		release, err := s.Lock(b.Context(), false)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = release() })
		return s
	}
	fileMB := func(b *testing.B, s *Store, want int) {
		var got int
		if err := s.View(func(t *Tx) error { var err error; got, err = t.Bans(); return err }); err != nil || got != want {
			b.Fatalf("store holds %d bans (%v), want %d", got, err, want)
		}
		fi, err := os.Stat(s.Path())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(fi.Size())/(1<<20), "file-MB")
	}
	bans := pulledBans(n, 1, now)
	distinct := map[netip.Prefix]bool{}
	for _, x := range bans {
		distinct[x.Prefix] = true
	}
	b.Run("first", func(b *testing.B) {
		var s *Store
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			s = open(b)
			b.StartTimer()
			if err := s.Update(upsert(bans)); err != nil {
				b.Fatal(err)
			}
		}
		fileMB(b, s, len(distinct))
	})
	b.Run("unchanged", func(b *testing.B) {
		s := open(b)
		if err := s.Update(upsert(bans)); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := s.Update(upsert(bans)); err != nil {
				b.Fatal(err)
			}
		}
		fileMB(b, s, len(distinct))
	})
	b.Run("add=1000", func(b *testing.B) {
		s := open(b)
		if err := s.Update(upsert(bans)); err != nil {
			b.Fatal(err)
		}
		total := len(distinct)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			more := pulledBans(1000, uint64(100+i), now)
			for _, x := range more {
				if !distinct[x.Prefix] {
					distinct[x.Prefix] = true
					total++
				}
			}
			b.StartTimer()
			if err := s.Update(upsert(more)); err != nil {
				b.Fatal(err)
			}
		}
		fileMB(b, s, total)
	})
}

// TestBulkWriteKeepsIndex: a bulk write in random order (new bans, bans
// rewritten with the same end or a new one, bans removed, a prefix twice)
// leaves the expiry index with one entry per ban, pointing at the ban's
// end, and the bans as written.
func TestBulkWriteKeepsIndex(t *testing.T) {
	s := mustOpen(t)
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	bans := pulledBans(3000, 7, now)
	if err := s.Update(func(st *State) error { st.Bans = bans; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix]Ban{}
	for _, b := range bans {
		want[b.Prefix] = b
	}
	if err := consistent(s, len(want)); err != nil {
		t.Fatal(err)
	}
	more := pulledBans(500, 8, now)
	err := s.Update(func(st *State) error {
		for i, b := range st.Bans {
			switch i % 4 {
			case 0: // same end, another reason: the index key stays
				b.Reason = "rewritten"
			case 1: // a later end: the index key moves
				b.Until = b.Until.Add(time.Minute)
			}
			st.Bans[i] = b
		}
		for i := 2; i < len(st.Bans); i += 8 {
			st.Remove(st.Bans[i].Prefix)
		}
		st.Bans = append(st.Bans, more...)
		dup := more[0]
		dup.Reason = "the later of two"
		st.Bans = append(st.Bans, dup)
		clear(want)
		for _, b := range st.Bans {
			want[policy.Canonical(b.Prefix)] = b
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := consistent(s, len(want)); err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error {
		return tx.Expiring(time.Unix(1<<40, 0), func(b Ban) error {
			w, ok := want[b.Prefix]
			if !ok || !banEqual(&b, &w) {
				return fmt.Errorf("stored %+v, want %+v (%v)", b, w, ok)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}
