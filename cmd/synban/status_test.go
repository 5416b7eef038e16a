package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/state"
)

// ticking matches the times left that nft and ipset print, which count
// down between two listings without anything changing.
var ticking = regexp.MustCompile(`(?m)(expires |^[0-9a-f.:/]+ timeout )[0-9hms.]+`)

// timeoutsLeft blanks the times left in a kernel snapshot.
func timeoutsLeft(s string) string { return ticking.ReplaceAllString(s, "${1}T") }

// dirSnapshot lists every file under dir with its mode, size, mtime and
// contents; "" when dir does not exist.
func dirSnapshot(t *testing.T, dir string) string {
	t.Helper()
	if _, err := os.Lstat(dir); os.IsNotExist(err) {
		return ""
	}
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %s %d %s\n", path, fi.Mode(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			b.Write(data)
			b.WriteString("\n")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

type statusOut struct {
	Backend       string   `json:"backend"`
	Bans          []any    `json:"bans"`
	Missing       []string `json:"missing"`
	StoredBans    int      `json:"stored_bans"`
	StoredMissing []string `json:"stored_missing"`
	Notes         []string `json:"notes"`
}

// TestStatusWritesNothing, for each backend in its own namespace: status
// on a fresh host creates no state directory and nothing in the kernel;
// after a real run and two bans, status leaves the state directory (files,
// modes, mtimes, contents) and the kernel byte-identical; and after an
// outside flush it says plainly that the kernel lacks what the store holds
// and that the next run restores it, in text and in JSON.
func TestStatusWritesNothing(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, backend := range []string{"nftables", "iptables", "route"} {
		t.Run(backend, func(t *testing.T) {
			if backend == "iptables" {
				netnstest.RequireCommand(t, "iptables")
				netnstest.RequireCommand(t, "ipset")
			}
			ns := netnstest.New(t, "stro")
			dir := filepath.Join(t.TempDir(), "state")
			synban := func(args ...string) (string, string) {
				t.Helper()
				args = append(args, "--state-dir", dir, "--backend", backend)
				code, out, errs := runIn(t, ns, args...)
				if code != exitOK {
					t.Fatalf("synban %v: exit %d:\n%s%s", args, code, out, errs)
				}
				return out, errs
			}
			status := func() (string, statusOut) {
				t.Helper()
				out, _ := synban("status")
				js, _ := synban("status", "--json")
				var st statusOut
				if err := json.Unmarshal([]byte(js), &st); err != nil {
					t.Fatalf("status --json: %v:\n%s", err, js)
				}
				return out, st
			}

			// A fresh host: nothing created, and status says the structure
			// is missing (nftables, iptables) with no bans stored.
			k0 := ns.KernelState()
			out, st := status()
			if _, err := os.Lstat(dir); !os.IsNotExist(err) {
				t.Fatalf("status created the state directory %s (%v)", dir, err)
			}
			if k := ns.KernelState(); k != k0 {
				t.Fatalf("status on a fresh host changed the kernel:\nbefore:\n%s\nafter:\n%s", k0, k)
			}
			if backend != "route" && (len(st.Missing) == 0 || !strings.Contains(out, "missing; no bans stored; the next run creates it")) {
				t.Errorf("fresh host: status does not say the structure is missing:\n%s\n%+v", out, st)
			}

			// A real run, then two manual bans.
			synban("run")
			synban("ban", "192.0.2.7", "--for", "1h")
			synban("ban", "2001:db8::7", "--for", "1h")
			if backend == "route" {
				// A stored ban whose time has passed, its route still in
				// place, and a route of synban's protocol the store does
				// not know: status lists them and removes neither.
				synban("ban", "192.0.2.8", "--for", "1h")
				store, err := state.Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				if err := store.Update(func(s *state.State) error {
					b, ok := s.Find(netip.MustParsePrefix("192.0.2.8/32"))
					if !ok {
						return fmt.Errorf("no stored ban for 192.0.2.8")
					}
					b.Since, b.Until = b.Since.Add(-2*time.Hour), b.Since.Add(-time.Hour)
					s.Remove(b.Prefix) // Upsert keeps the later end
					s.Upsert(b)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				ns.MustRun("ip", "route", "add", "prohibit", "192.0.2.200/32", "proto", "211")
			}
			d1, k1 := dirSnapshot(t, dir), ns.KernelState()
			out, st = status()
			if d := dirSnapshot(t, dir); d != d1 {
				t.Errorf("status changed the state directory:\nbefore:\n%s\nafter:\n%s", d1, d)
			}
			if k := ns.KernelState(); timeoutsLeft(k) != timeoutsLeft(k1) {
				t.Errorf("status changed the kernel:\nbefore:\n%s\nafter:\n%s", k1, k)
			}
			wantBans := 2
			if backend == "route" {
				wantBans = 4
				for _, w := range []string{"192.0.2.8/32", "192.0.2.200/32", "2 routes of protocol 211 expired or unknown to the state store; the next run removes them"} {
					if !strings.Contains(out, w) {
						t.Errorf("route status lacks %q:\n%s", w, out)
					}
				}
			}
			if len(st.Bans) != wantBans || len(st.Missing) != 0 || st.StoredBans != 2 || len(st.StoredMissing) != 0 || st.Backend != backend {
				t.Errorf("status --json after bans = %+v, want %d bans, none missing, 2 stored", st, wantBans)
			}

			// One ban removed from outside: 1 of 2 stored bans missing.
			switch backend {
			case "nftables":
				ns.MustRun("nft", "delete", "element", "inet", "synban", "ban_v4", "{ 192.0.2.7 }")
			case "iptables":
				ns.MustRun("ipset", "del", "synban-ban-v4", "192.0.2.7")
			case "route":
				ns.MustRun("ip", "route", "del", "192.0.2.7/32", "proto", "211")
			}
			out, st = status()
			if !strings.Contains(out, "1 of 2 stored bans missing from the kernel; the next run restores them") ||
				strings.Join(st.StoredMissing, ",") != "192.0.2.7/32" || st.StoredBans != 2 {
				t.Errorf("after one ban removed from outside, status says:\n%s\n%+v", out, st)
			}

			// Everything flushed from outside (a firewall reload, a reboot).
			switch backend {
			case "nftables":
				ns.MustRun("nft", "flush", "ruleset")
			case "iptables":
				for _, c := range []string{"iptables", "ip6tables"} {
					ns.MustRun(c, "-F")
					ns.MustRun(c, "-X")
				}
				ns.MustRun("ipset", "destroy")
			case "route":
				ns.MustRun("ip", "-4", "route", "flush", "proto", "211")
				ns.MustRun("ip", "-6", "route", "flush", "proto", "211")
			}
			d2, k2 := dirSnapshot(t, dir), ns.KernelState()
			out, st = status()
			want := map[string]string{
				"nftables": "nftables: table inet synban missing; 2 bans stored; the next run restores them",
				"iptables": "iptables: ipv4 chain SYNBAN, ipv6 chain SYNBAN, ipset synban-ban-v4, ipset synban-ban-net-v4, ipset synban-ban-v6, ipset synban-ban-net-v6 missing; 2 bans stored; the next run restores them",
				"route":    "2 of 2 stored bans missing from the kernel; the next run restores them",
			}[backend]
			if !strings.Contains(out, want+"\n") || st.StoredBans != 2 || len(st.StoredMissing) != 2 || len(st.Notes) == 0 {
				t.Errorf("after an outside flush, status lacks %q:\n%s\n%+v", want, out, st)
			}
			if backend != "route" && len(st.Missing) == 0 {
				t.Errorf("status --json: no missing structure after the flush: %+v", st)
			}
			if d := dirSnapshot(t, dir); d != d2 {
				t.Errorf("status changed the state directory:\nbefore:\n%s\nafter:\n%s", d2, d)
			}
			if k := ns.KernelState(); k != k2 {
				t.Errorf("status changed the kernel after the flush:\nbefore:\n%s\nafter:\n%s", k2, k)
			}

			// The next run does restore them.
			synban("run")
			if _, st = status(); len(st.Missing) != 0 || len(st.StoredMissing) != 0 {
				t.Errorf("after the next run, status still reports something missing: %+v", st)
			}
		})
	}
}
