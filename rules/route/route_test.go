package route

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backendtest"
	"github.com/synban/synban/state"
)

func newStore(t *testing.T) *state.Store {
	t.Helper()
	s, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	// Each sub-test's backend gets its own store; Record, playing the run
	// cycle, writes the bans of the sub-test's backend into it.
	stores := make(map[*testing.T]*state.Store)
	backendtest.Run(t, func(t *testing.T, ns *netnstest.NS) rules.Backend {
		stores[t] = newStore(t)
		b, err := New(Options{NetNS: ns.Path(), Store: stores[t]})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}, backendtest.Options{
		Record: func(t *testing.T, rs *rules.Ruleset, res rules.Result) {
			backendtest.StoreRecorder(stores[t], Name, nil)(t, rs, res)
		},
		Disrupt: func(t *testing.T, ns *netnstest.NS) {
			ns.MustRun("ip", "route", "flush", "proto", "211")
			ns.MustRun("ip", "-6", "route", "flush", "proto", "211")
			if out := ns.MustRun("ip", "route", "show", "proto", "211") + ns.MustRun("ip", "-6", "route", "show", "proto", "211"); strings.TrimSpace(out) != "" {
				t.Fatalf("disruption left routes: %s", out)
			}
		},
		Snapshot: func(t *testing.T, ns *netnstest.NS) string {
			// Someone else's routes, one of them a reject route with another protocol.
			if out, _ := ns.Run("ip", "route", "show", "192.0.2.99/32"); strings.TrimSpace(out) == "" {
				ns.MustRun("ip", "route", "add", "prohibit", "192.0.2.99/32", "proto", "99")
				ns.MustRun("ip", "route", "add", "blackhole", "192.0.2.0/28", "proto", "static")
				ns.MustRun("ip", "-6", "route", "add", "unreachable", "2001:db8:99::/48", "proto", "boot")
			}
			return ns.MustRun("ip", "route", "show", "table", "all") + ns.MustRun("ip", "-6", "route", "show", "table", "all")
		},
	})
}

// jsonRoute is one route of `ip -j route show`.
type jsonRoute struct {
	Type     string `json:"type"`
	Dst      string `json:"dst"`
	Protocol string `json:"protocol"`
}

// kernelRoutes lists routes with protocol proto via ip(8), as "type dst".
func kernelRoutes(t *testing.T, ns *netnstest.NS, proto string) []string {
	t.Helper()
	var out []string
	for _, fam := range []string{"-4", "-6"} {
		var rs []jsonRoute
		raw := ns.MustRun("ip", "-j", fam, "route", "show", "proto", proto)
		if err := json.Unmarshal([]byte(raw), &rs); err != nil {
			t.Fatalf("parse ip -j route output %q: %v", raw, err)
		}
		for _, r := range rs {
			dst := r.Dst
			if !strings.Contains(dst, "/") {
				if strings.Contains(dst, ":") {
					dst += "/128"
				} else {
					dst += "/32"
				}
			}
			out = append(out, r.Type+" "+dst)
		}
	}
	slices.Sort(out)
	return out
}

func TestApplyExpireForeignRoutes(t *testing.T) {
	ns := netnstest.New(t, "route")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Someone else's routes: one to a destination we will ban, one of our
	// type with another protocol.
	ns.MustRun("ip", "route", "add", "blackhole", "203.0.113.50/32")
	ns.MustRun("ip", "route", "add", "prohibit", "192.0.2.99/32", "proto", "99")
	foreign := kernelRoutes(t, ns, "99")

	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	var logs netnstest.LogBuffer
	store := newStore(t)
	b, err := New(Options{NetNS: ns.Path(), Store: store, Now: clock, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	bans := backendtest.SampleBans(time.Hour)
	bans[0].Timeout = 10 * time.Minute // 203.0.113.7/32 expires first
	rs := backendtest.BaseRuleset(append(slices.Clone(bans),
		rules.Ban{Prefix: netip.MustParsePrefix("203.0.113.50/32"), Timeout: time.Hour, Reason: "conflict"},
		rules.Ban{Prefix: netip.MustParsePrefix("127.0.0.0/24"), Timeout: time.Hour, Reason: "allowed"})...)
	rs.Meter = &rules.Meter{Rate: 20, Burst: 40}
	rs.ConnLimit = &rules.ConnLimit{Max: 100}

	record := backendtest.StoreRecorder(store, Name, clock) // the run cycle's part
	res, err := b.Apply(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	record(t, rs, res)
	if res.Added != 4 {
		t.Errorf("Apply: Added = %d, want 4 (the conflicting and the allowed ban skipped)", res.Added)
	}
	want := []string{"prohibit 198.51.100.0/24", "prohibit 2001:db8::7/128", "prohibit 2001:db8:1::/64", "prohibit 203.0.113.7/32"}
	slices.Sort(want)
	if got := kernelRoutes(t, ns, "211"); !slices.Equal(got, want) {
		t.Fatalf("routes with proto 211 = %v, want %v", got, want)
	}
	if out := ns.MustRun("ip", "route", "show", "203.0.113.50/32"); !strings.HasPrefix(out, "blackhole 203.0.113.50") || strings.Contains(out, "211") {
		t.Errorf("someone else's route to a banned destination was changed: %q", out)
	}
	for _, w := range []string{"SYN meter", "connection limit", "not synban", "allow list"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("no warning mentioning %q in the log:\n%s", w, logs.String())
		}
	}
	st, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Bans) != 4 {
		t.Errorf("store holds %d bans, want 4: %+v", len(st.Bans), st.Bans)
	}
	if sb, ok := st.Find(bans[0].Prefix); !ok || !sb.Until.Equal(now.Add(10*time.Minute)) || sb.Backend != Name || sb.Reason != bans[0].Reason {
		t.Errorf("stored ban for %s = %+v, %v", bans[0].Prefix, sb, ok)
	}

	// Times come from the store.
	list, err := b.Bans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 || list[0].Prefix != netip.MustParsePrefix("198.51.100.0/24") || list[0].Expires != time.Hour {
		t.Errorf("Bans = %+v", list)
	}

	// Another type on the next run re-creates our routes with it.
	b2, err := New(Options{NetNS: ns.Path(), Store: store, Now: clock, Type: "blackhole"})
	if err != nil {
		t.Fatal(err)
	}
	res, err = b2.Apply(ctx, backendtest.BaseRuleset())
	if err != nil {
		t.Fatal(err)
	}
	record(t, backendtest.BaseRuleset(), res)
	if len(res.Changed) != 4 || res.Added != 0 {
		t.Errorf("type change: %+v, want 4 changed", res)
	}
	if got := kernelRoutes(t, ns, "211"); len(got) != 4 || !strings.HasPrefix(got[0], "blackhole ") {
		t.Errorf("after type change, routes = %v", got)
	}

	// Time passes: the 10-minute ban ends, the others stay.
	now = now.Add(11 * time.Minute)
	n, err := b.Expire(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Expire = %d, %v; want 1", n, err)
	}
	if got := kernelRoutes(t, ns, "211"); len(got) != 3 || slices.ContainsFunc(got, func(s string) bool { return strings.HasSuffix(s, " 203.0.113.7/32") }) {
		t.Errorf("after Expire, routes = %v", got)
	}
	if list, _ := b.Bans(ctx); len(list) != 3 || list[0].Expires != 49*time.Minute {
		t.Errorf("after Expire, Bans = %+v", list)
	}

	// A route with our protocol that the store knows nothing of is removed.
	ns.MustRun("ip", "route", "add", "prohibit", "192.0.2.200/32", "proto", "211")
	if n, err := b.Expire(ctx); err != nil || n != 1 {
		t.Errorf("Expire of an unrecorded route = %d, %v; want 1", n, err)
	}

	stateBeforeFlush, err := os.ReadFile(store.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kernelRoutes(t, ns, "211"); len(got) != 0 {
		t.Errorf("after Flush, routes with proto 211 remain: %v", got)
	}
	if got := kernelRoutes(t, ns, "99"); !slices.Equal(got, foreign) {
		t.Errorf("Flush touched another protocol's routes: %v, want %v", got, foreign)
	}
	if out := ns.MustRun("ip", "route", "show", "203.0.113.50/32"); !strings.HasPrefix(out, "blackhole 203.0.113.50") {
		t.Errorf("Flush removed someone else's route: %q", out)
	}
	// The store is the run cycle's: Flush leaves it for synban flush to clear.
	if after, err := os.ReadFile(store.Path()); err != nil || string(after) != string(stateBeforeFlush) {
		t.Errorf("Flush wrote the state store (%v):\n%s\nwas:\n%s", err, after, stateBeforeFlush)
	}
}

func TestNewOptions(t *testing.T) {
	s := newStore(t)
	for _, o := range []Options{
		{},                        // no store
		{Store: s, Type: "drop"},  // unknown type
		{Store: s, Protocol: 3},   // the kernel's / boot's
		{Store: s, Protocol: 256}, // not a byte
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
	b, err := New(Options{Store: s, Type: "Unreachable", Protocol: 199})
	if err != nil || b.typName != TypeUnreachable || b.protocol != 199 {
		t.Errorf("New = %+v, %v", b, err)
	}
}

// TestBansOnlyReads: listing (what synban status does) neither expires a
// stored ban whose time has passed nor removes a proto-211 route the store
// does not know, and leaves the state file as it was; a read-only backend
// refuses every change, and works without a store.
func TestBansOnlyReads(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "rtro")
	ctx := context.Background()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	store := newStore(t)
	b, err := New(Options{NetNS: ns.Path(), Store: store, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	short := rules.Ban{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Timeout: time.Minute, Reason: "short"}
	res, err := b.Apply(ctx, backendtest.BaseRuleset(short))
	if err != nil {
		t.Fatal(err)
	}
	backendtest.StoreRecorder(store, Name, clock)(t, backendtest.BaseRuleset(short), res) // the run cycle's part
	ns.MustRun("ip", "route", "add", "prohibit", "192.0.2.200/32", "proto", "211")
	before := kernelRoutes(t, ns, "211")
	if len(before) != 2 {
		t.Fatalf("routes with proto 211 = %v, want the ban and the unknown route", before)
	}
	stateBefore, err := os.ReadFile(store.Path())
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour) // the stored ban has expired

	ro, err := New(Options{NetNS: ns.Path(), Store: store, Now: clock, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	noStore, err := New(Options{NetNS: ns.Path(), Now: clock, ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only backend without a store: %v", err)
	}
	for _, l := range []rules.Backend{b, ro, noStore} {
		list, err := l.Bans(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 {
			t.Errorf("Bans = %+v, want the expired ban and the unknown route", list)
		}
	}
	if got := kernelRoutes(t, ns, "211"); !slices.Equal(got, before) {
		t.Errorf("Bans changed the routes: %v, want %v", got, before)
	}
	if after, err := os.ReadFile(store.Path()); err != nil || string(after) != string(stateBefore) {
		t.Errorf("Bans rewrote the state file (%v):\n%s\nwas:\n%s", err, after, stateBefore)
	}

	// The read-only backend refuses every change and changes nothing.
	if _, err := ro.Apply(ctx, backendtest.BaseRuleset()); !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only Apply: %v, want ErrReadOnly", err)
	}
	if _, err := ro.Expire(ctx); !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only Expire: %v, want ErrReadOnly", err)
	}
	if _, err := ro.Unban(ctx, []netip.Prefix{short.Prefix}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only Unban: %v, want ErrReadOnly", err)
	}
	if err := ro.Flush(ctx); !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only Flush: %v, want ErrReadOnly", err)
	}
	if got := kernelRoutes(t, ns, "211"); !slices.Equal(got, before) {
		t.Errorf("the read-only backend changed the routes: %v, want %v", got, before)
	}

	// The writing path still expires both: the run's Expire.
	if n, err := b.Expire(ctx); err != nil || n != 2 {
		t.Errorf("Expire = %d, %v; want 2", n, err)
	}
}
