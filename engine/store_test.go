package engine

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/state"
)

// TestSteadyRunReadsNoBan: with the nftables generation as the last run
// left it and nothing decided, a run reads the store's metadata and the
// bans that end soon, not the others. The test overwrites every stored
// ban's value with bytes that do not decode: the steady run still
// succeeds (and counts the bans from the metadata, for the summary and the
// metrics file), while the full
// reconcile after an outside commit decodes them and fails naming the
// database, which shows the corruption would have been seen.
func TestSteadyRunReadsNoBan(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, "st")
	dir := t.TempDir()
	prom := filepath.Join(t.TempDir(), "synban.prom")
	p, err := policy.Parse("steady.toml", []byte(fmt.Sprintf("[meter]\nenabled = false\n[metrics]\ntextfile = %q\n", prom)))
	if err != nil {
		t.Fatal(err)
	}
	store, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	now := time.Now()
	if err := store.Edit(func(tx *state.Tx) error {
		for i := range n {
			b := state.Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)}), 32),
				Since: now, Until: now.Add(time.Hour), Reason: "test", Rule: "syn-flood", Backend: "nftables"}
			if err := tx.Put(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e := New(nil, Options{StateDir: dir, Backend: "nftables"})
	run := func() (*Outcome, error) {
		var out *Outcome
		err := nsenter.Do(ns.Path(), func() error {
			var err error
			out, err = e.Run(context.Background(), p, time.Now())
			return err
		})
		return out, err
	}
	if out, err := run(); err != nil || out.Result.Added != n {
		t.Fatalf("first run: %v (%+v)", err, out)
	}
	if out, err := run(); err != nil || !out.Decision.Unchanged {
		t.Fatalf("second run: %v, want the generation shortcut (%+v)", err, out)
	}

	// Every ban's value replaced by bytes that do not decode; the count,
	// the expiry index and the tally stay.
	db, err := bolt.Open(filepath.Join(dir, state.FileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		bans := tx.Bucket([]byte("bans"))
		if bans == nil {
			return fmt.Errorf("no bans bucket")
		}
		var keys [][]byte
		if err := bans.ForEach(func(k, _ []byte) error { keys = append(keys, append([]byte(nil), k...)); return nil }); err != nil {
			return err
		}
		if len(keys) != n {
			return fmt.Errorf("%d keys in the bans bucket, want %d", len(keys), n)
		}
		for _, k := range keys {
			if err := bans.Put(k, []byte{0xff, 0xff}); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(prom); err != nil {
		t.Fatal(err)
	}
	out, err := run()
	if err != nil || !out.Decision.Unchanged || out.Decision.Restored != n {
		t.Fatalf("steady run over undecodable bans: %v (%+v); want it unchanged, %d restored, reading no ban", err, out, n)
	}
	// The metrics count the bans from the store's tally.
	metrics, err := os.ReadFile(prom)
	if want := fmt.Sprintf(`synban_bans{backend="nftables",reason="syn-flood"} %d`, n); err != nil || !strings.Contains(string(metrics), want) {
		t.Fatalf("metrics after the steady run: %v; want %q in:\n%s", err, want, metrics)
	}
	if _, err := ns.Run("nft", "add", "table", "ip", "st_bump"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, state.FileName)) {
		t.Fatalf("full run over undecodable bans: %v; want an error naming %s", err, filepath.Join(dir, state.FileName))
	}
}
