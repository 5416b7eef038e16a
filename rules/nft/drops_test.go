package nft

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backendtest"
	"github.com/synban/synban/templates"
)

// nftSetElem is one element of `nft -j list set`.
type nftSetElem struct {
	Prefix  string
	Timeout int64 // seconds
	Counter *struct{ Packets, Bytes uint64 }
}

// listSetJSON reads a set with `nft -j list set` and returns whether it is
// declared with the counter flag, and its elements.
func listSetJSON(t *testing.T, run func(...string) string, family, table, set string) (bool, []nftSetElem) {
	t.Helper()
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	out := run("nft", "-j", "list", "set", family, table, set)
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j list set %s: %v\n%s", set, err, out)
	}
	for _, obj := range doc.Nftables {
		raw, ok := obj["set"]
		if !ok {
			continue
		}
		var s struct {
			Stmt []map[string]json.RawMessage `json:"stmt"`
			Elem []json.RawMessage            `json:"elem"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		counter := false
		for _, st := range s.Stmt {
			if _, ok := st["counter"]; ok {
				counter = true
			}
		}
		var els []nftSetElem
		for _, e := range s.Elem {
			els = append(els, decodeJSONElem(t, e))
		}
		return counter, els
	}
	t.Fatalf("nft -j list set %s: no set in %s", set, out)
	return false, nil
}

// decodeJSONElem decodes an element: a bare value, a prefix object, or an
// "elem" object carrying timeout and counter around either.
func decodeJSONElem(t *testing.T, raw json.RawMessage) nftSetElem {
	t.Helper()
	var e nftSetElem
	var wrapped struct {
		Elem *struct {
			Val     json.RawMessage `json:"val"`
			Timeout int64           `json:"timeout"`
			Counter *struct{ Packets, Bytes uint64 }
		} `json:"elem"`
	}
	if json.Unmarshal(raw, &wrapped) == nil && wrapped.Elem != nil {
		raw = wrapped.Elem.Val
		e.Timeout, e.Counter = wrapped.Elem.Timeout, wrapped.Elem.Counter
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		e.Prefix = s
		return e
	}
	var p struct {
		Prefix struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("element %s: %v", raw, err)
	}
	e.Prefix = p.Prefix.Addr + "/" + itoa(p.Prefix.Len)
	return e
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestUpgradeAddsSetCounters loads a table written by the previous synban
// (the template text without the ban sets' counter flag) holding bans, one
// of which the new ruleset does not mention. One Apply recreates the ban
// sets with per-element counters and every ban survives, with its timeout.
func TestUpgradeAddsSetCounters(t *testing.T) {
	ns, b := setup(t, "upgrade")
	bans := backendtest.SampleBans(time.Hour)
	old := fullRuleset(bans...)
	script, err := templates.NFTString(old, "previous synban")
	if err != nil {
		t.Fatal(err)
	}
	oldScript := strings.ReplaceAll(script, "\t\tcounter\n", "")
	if oldScript == script {
		t.Fatal("the template declares no set counter: nothing to upgrade from")
	}
	loadFile(t, ns, oldScript)
	if counter, _ := listSetJSON(t, ns.MustRun, "inet", "synban", rules.SetBan4); counter {
		t.Fatal("the old structure already has the counter flag")
	}

	// The new run knows every ban but 2001:db8::7 (say it was unbanned from
	// the store only): the kernel's element must survive all the same.
	var known []rules.Ban
	for _, bn := range bans {
		if bn.Prefix.String() != "2001:db8::7/128" {
			known = append(known, bn)
		}
	}
	res := apply(t, b, fullRuleset(known...))
	if len(res.Changed) == 0 {
		t.Fatalf("Apply over the old structure = %+v, want the ban sets changed", res)
	}
	for _, set := range []string{rules.SetBan4, rules.SetBanNet4, rules.SetBan6, rules.SetBanNet6} {
		counter, els := listSetJSON(t, ns.MustRun, "inet", "synban", set)
		if !counter {
			t.Errorf("set %s has no counter flag after the upgrade", set)
		}
		want := 0
		for _, bn := range bans {
			if rs := fullRuleset(bn); len(rs.BansIn(set)) == 1 {
				want++
			}
		}
		if len(els) != want {
			t.Errorf("set %s holds %+v after the upgrade, want %d bans", set, els, want)
		}
		for _, e := range els {
			if e.Counter == nil || e.Timeout < 3000 || e.Timeout > 3600 {
				t.Errorf("set %s element %+v: want a counter and about 1h of timeout", set, e)
			}
		}
	}
	// A second Apply finds the structure right: nothing changes.
	if res := apply(t, b, fullRuleset(known...)); res.Created || len(res.Changed) > 0 || res.Added+res.Refreshed > 0 {
		t.Errorf("second Apply after the upgrade = %+v, want no change", res)
	}
	drops, err := b.BanDrops(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(drops) != len(bans) {
		t.Errorf("BanDrops = %v, want a zero count for each of the %d bans", drops, len(bans))
	}
	for p, n := range drops {
		if n != 0 {
			t.Errorf("ban %s counted %d packets, none were sent", p, n)
		}
	}
}
