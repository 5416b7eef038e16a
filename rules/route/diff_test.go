package route

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/state"
)

// These tests run Diff, the route backend's decision, on plain values: no
// root, no namespace, no kernel. The kernel tests (route_test.go and the
// contract suite) check that the executor carries the operations out.

const (
	prohibit  = unix.RTN_PROHIBIT
	blackhole = unix.RTN_BLACKHOLE
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// stored is a route ban in the store from t0-10m until until.
func stored(p string, until time.Time) state.Ban {
	return state.Ban{Prefix: pfx(p), Since: t0.Add(-10 * time.Minute), Until: until, Reason: "stored " + p, Backend: Name}
}

func ruleset(allow []string, bans ...rules.Ban) *rules.Ruleset {
	rs := &rules.Ruleset{Bans: bans}
	for _, a := range allow {
		rs.Allow = append(rs.Allow, pfx(a))
	}
	return rs
}

func ban(p string, d time.Duration) rules.Ban {
	return rules.Ban{Prefix: pfx(p), Timeout: d, Reason: "ban " + p}
}

// ops renders a plan's operations as "del|add PREFIX WHY", in order.
func ops(p Plan) []string {
	var out []string
	for _, o := range p.Ops {
		verb := "add"
		if o.Del {
			verb = "del"
		}
		out = append(out, verb+" "+o.Prefix.String()+" "+o.Why)
	}
	return out
}

func TestDiff(t *testing.T) {
	hour := t0.Add(time.Hour)
	for _, tc := range []struct {
		name      string
		in        Input
		want      []string
		refreshed int
		allowed   []string // "PREFIX ALLOW stored|rs"
	}{
		{
			name: "first run adds every ban, IPv4 first",
			in:   Input{Ruleset: ruleset(nil, ban("2001:db8::7/128", time.Hour), ban("203.0.113.7/32", time.Hour), ban("198.51.100.0/24", time.Hour))},
			want: []string{"add 198.51.100.0/24 ban", "add 203.0.113.7/32 ban", "add 2001:db8::7/128 ban"},
		},
		{
			name: "applying again changes nothing and counts refreshes",
			in: Input{
				Have:    map[netip.Prefix]int{pfx("203.0.113.7/32"): prohibit, pfx("2001:db8::7/128"): prohibit},
				Stored:  []state.Ban{stored("203.0.113.7/32", hour), stored("2001:db8::7/128", hour)},
				Ruleset: ruleset(nil, ban("203.0.113.7/32", time.Hour), ban("2001:db8::7/128", time.Hour)),
			},
			refreshed: 2,
		},
		{
			name: "restore after ip route flush proto 211: stored bans come back, the run's too",
			in: Input{
				Stored:  []state.Ban{stored("203.0.113.7/32", hour), stored("2001:db8:1::/64", hour)},
				Ruleset: ruleset(nil, ban("198.51.100.0/24", time.Hour)),
			},
			want: []string{"add 198.51.100.0/24 ban", "add 203.0.113.7/32 restore", "add 2001:db8:1::/64 restore"},
		},
		{
			name: "a route whose stored ban ended is removed on a run, the others kept",
			in: Input{
				Have:    map[netip.Prefix]int{pfx("203.0.113.7/32"): prohibit, pfx("203.0.113.8/32"): prohibit},
				Stored:  []state.Ban{stored("203.0.113.7/32", t0.Add(-time.Second)), stored("203.0.113.8/32", hour)},
				Ruleset: ruleset(nil),
			},
			want: []string{"del 203.0.113.7/32 ended"},
		},
		{
			name: "expiry pass (nil ruleset): ended and unknown routes go, nothing is added",
			in: Input{
				Have: map[netip.Prefix]int{pfx("203.0.113.7/32"): prohibit, pfx("192.0.2.200/32"): prohibit, pfx("2001:db8::7/128"): blackhole},
				Stored: []state.Ban{
					stored("203.0.113.7/32", t0), // ends exactly now
					stored("2001:db8::7/128", hour),
					stored("198.51.100.0/24", hour), // missing route: expiry does not restore
				},
			},
			want: []string{"del 192.0.2.200/32 ended", "del 203.0.113.7/32 ended"},
		},
		{
			name: "an unknown route with synban's protocol is removed on a run",
			in: Input{
				Have:    map[netip.Prefix]int{pfx("192.0.2.200/32"): prohibit, pfx("2001:db8:ff::/48"): unix.RTN_UNREACHABLE},
				Ruleset: ruleset(nil),
			},
			want: []string{"del 192.0.2.200/32 ended", "del 2001:db8:ff::/48 ended"},
		},
		{
			name: "a ban of another backend in the store does not keep a route",
			in: Input{
				Have:    map[netip.Prefix]int{pfx("203.0.113.7/32"): prohibit},
				Stored:  []state.Ban{{Prefix: pfx("203.0.113.7/32"), Since: t0, Until: hour, Backend: "nftables"}},
				Ruleset: ruleset(nil),
			},
			want: []string{"del 203.0.113.7/32 ended"},
		},
		{
			name: "a ban without end time in the store stays",
			in: Input{
				Have:    map[netip.Prefix]int{pfx("203.0.113.7/32"): prohibit},
				Stored:  []state.Ban{stored("203.0.113.7/32", time.Time{})},
				Ruleset: ruleset(nil),
			},
		},
		{
			name: "a ban of the run revives a route whose stored ban ended",
			in: Input{
				Have:    map[netip.Prefix]int{pfx("203.0.113.7/32"): prohibit},
				Stored:  []state.Ban{stored("203.0.113.7/32", t0.Add(-time.Minute))},
				Ruleset: ruleset(nil, ban("203.0.113.7/32", time.Hour)),
			},
			refreshed: 1,
		},
		{
			name: "another type is re-created with the configured one",
			in: Input{
				Have:    map[netip.Prefix]int{pfx("203.0.113.7/32"): blackhole, pfx("2001:db8::7/128"): blackhole},
				Stored:  []state.Ban{stored("2001:db8::7/128", hour)},
				Ruleset: ruleset(nil, ban("203.0.113.7/32", time.Hour)),
			},
			want: []string{"del 203.0.113.7/32 type", "add 203.0.113.7/32 type", "del 2001:db8::7/128 type", "add 2001:db8::7/128 type"},
		},
		{
			name: "a ban of the ruleset overlapping the allow list is not routed",
			in: Input{
				Ruleset: ruleset([]string{"127.0.0.0/8", "::1/128"}, ban("127.0.0.0/24", time.Hour), ban("::/0", time.Hour), ban("203.0.113.7/32", time.Hour)),
			},
			want:    []string{"add 203.0.113.7/32 ban"},
			allowed: []string{"127.0.0.0/24 127.0.0.0/8 rs", "::/0 ::1/128 rs"},
		},
		{
			name: "a stored ban the allow list now covers loses its route",
			in: Input{
				Have:    map[netip.Prefix]int{pfx("192.0.2.77/32"): prohibit, pfx("192.0.2.0/28"): prohibit},
				Stored:  []state.Ban{stored("192.0.2.77/32", hour), stored("192.0.2.0/28", hour)},
				Ruleset: ruleset([]string{"192.0.2.64/26"}),
			},
			want:    []string{"del 192.0.2.77/32 allowed"},
			allowed: []string{"192.0.2.77/32 192.0.2.64/26 stored"},
		},
		{
			name: "the allow list of one family does not cover the other",
			in: Input{
				Ruleset: ruleset([]string{"0.0.0.0/0"}, ban("2001:db8::7/128", time.Hour)),
			},
			want:    []string{"add 2001:db8::7/128 ban"},
			allowed: nil,
		},
		{
			name: "covered prefixes: routes match exactly, a covering ban neither stands for nor removes a covered route",
			in: Input{
				Have:    map[netip.Prefix]int{pfx("198.51.100.0/24"): prohibit, pfx("198.51.100.7/32"): prohibit, pfx("2001:db8:1::/48"): prohibit},
				Stored:  []state.Ban{stored("198.51.100.7/32", hour)},
				Ruleset: ruleset(nil, ban("198.51.100.0/24", time.Hour), ban("203.0.113.0/24", time.Hour), ban("203.0.113.7/32", time.Hour), ban("2001:db8:1::/64", time.Hour)),
			},
			// The /48 route does not stand for the /64 ban inside it, and
			// no ban stands for the /48.
			want:      []string{"del 2001:db8:1::/48 ended", "add 203.0.113.0/24 ban", "add 203.0.113.7/32 ban", "add 2001:db8:1::/64 ban"},
			refreshed: 1,
		},
		{
			name: "IPv4-mapped bans are routed as IPv4",
			in: Input{
				Have:    map[netip.Prefix]int{pfx("203.0.113.7/32"): prohibit},
				Ruleset: ruleset(nil, ban("::ffff:203.0.113.7/128", time.Hour), ban("::ffff:198.51.100.0/120", time.Hour)),
			},
			want:      []string{"add 198.51.100.0/24 ban"},
			refreshed: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Type, in.Now = prohibit, t0
			plan := Diff(in)
			if got := ops(plan); !slices.Equal(got, tc.want) {
				t.Errorf("ops:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			if plan.Refreshed != tc.refreshed {
				t.Errorf("Refreshed = %d, want %d", plan.Refreshed, tc.refreshed)
			}
			var allowed []string
			for _, l := range plan.Allowed {
				from := "rs"
				if l.Stored {
					from = "stored"
				}
				allowed = append(allowed, l.Prefix.String()+" "+l.Allow.String()+" "+from)
			}
			if !slices.Equal(allowed, tc.allowed) {
				t.Errorf("Allowed = %q, want %q", allowed, tc.allowed)
			}
			for _, o := range plan.Ops {
				if !o.Del && o.Type != prohibit {
					t.Errorf("%v adds type %d, want the configured %d", o, o.Type, prohibit)
				}
				if o.Del && o.Type != in.Have[o.Prefix] {
					t.Errorf("%v removes type %d, but the observed route has %d", o, o.Type, in.Have[o.Prefix])
				}
			}
		})
	}
}

// TestDiffUntil: an added route carries the end the run cycle will record
// (now plus the timeout, none without one) or the stored end of a restored
// ban, for the logs.
func TestDiffUntil(t *testing.T) {
	plan := Diff(Input{
		Stored:  []state.Ban{stored("203.0.113.8/32", t0.Add(time.Hour))},
		Ruleset: ruleset(nil, ban("203.0.113.7/32", 10*time.Minute), ban("203.0.113.9/32", 0)),
		Type:    prohibit, Now: t0,
	})
	want := map[string]time.Time{"203.0.113.7/32": t0.Add(10 * time.Minute), "203.0.113.8/32": t0.Add(time.Hour), "203.0.113.9/32": {}}
	if len(plan.Ops) != len(want) {
		t.Fatalf("ops = %v", ops(plan))
	}
	for _, o := range plan.Ops {
		if w := want[o.Prefix.String()]; !o.Until.Equal(w) {
			t.Errorf("%v: Until %v, want %v", o, o.Until, w)
		}
	}
}

// TestDiffLeavesInputs: Diff is a pure function; it does not change the
// observed routes, the stored bans or the ruleset it is given.
func TestDiffLeavesInputs(t *testing.T) {
	have := map[netip.Prefix]int{pfx("203.0.113.7/32"): blackhole, pfx("192.0.2.1/32"): prohibit}
	st := []state.Ban{stored("203.0.113.7/32", t0.Add(time.Hour)), stored("192.0.2.1/32", t0)}
	rs := ruleset([]string{"192.0.2.0/24"}, ban("::ffff:198.51.100.0/120", time.Hour))
	haveBefore, stBefore := len(have), slices.Clone(st)
	Diff(Input{Have: have, Stored: st, Ruleset: rs, Type: prohibit, Now: t0})
	if len(have) != haveBefore || have[pfx("203.0.113.7/32")] != blackhole || !slices.Equal(st, stBefore) || rs.Bans[0].Prefix != pfx("::ffff:198.51.100.0/120") {
		t.Errorf("Diff changed its inputs: %v %v %v", have, st, rs.Bans)
	}
}

// TestReadOnlyRefusesFirst: a read-only backend (synban status) refuses
// every change before it opens netlink or reads the store, so no unknown
// route is removed and nothing written on status; needs no root.
func TestReadOnlyRefusesFirst(t *testing.T) {
	b, err := New(Options{NetNS: "/nonexistent/netns", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := b.Apply(ctx, ruleset(nil)); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Apply: %v, want ErrReadOnly", err)
	}
	if _, err := b.Expire(ctx); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Expire: %v, want ErrReadOnly", err)
	}
	if _, err := b.Unban(ctx, []netip.Prefix{pfx("192.0.2.1/32")}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Unban: %v, want ErrReadOnly", err)
	}
	if err := b.Flush(ctx); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Flush: %v, want ErrReadOnly", err)
	}
}
