// Package backendtest is the contract test suite every rules.Backend must
// pass: each sub-test makes its own network namespace, builds a fresh backend
// in it with the caller's factory, and checks one promise of the interface
// (bans listed with their time left, expiry, unban, apply twice is a no-op,
// restore after an outside disruption, flush touches nothing else). A
// backend that touches no kernel (rules/memory) runs it without root or
// namespaces (Options.NoNamespace), on its own clock (Options.Advance).
//
// Use it from a backend's tests:
//
//	func TestContract(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T, ns *netnstest.NS) rules.Backend {
//			b, err := mybackend.New(mybackend.Options{NetNS: ns.Path()})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return b
//		}, backendtest.Options{Disrupt: func(t *testing.T, ns *netnstest.NS) {
//			ns.MustRun("nft", "flush", "ruleset")
//		}})
//	}
package backendtest

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/state"
)

// Factory builds the backend under test, working inside ns (nil for a
// backend run with Options.NoNamespace).
type Factory func(t *testing.T, ns *netnstest.NS) rules.Backend

// Expirer is rules.Expirer: the expiry sub-test calls Expire while it polls
// on backends that implement it.
type Expirer = rules.Expirer

// Options tunes the suite for one backend.
type Options struct {
	// Disrupt damages the backend's kernel state from outside, the way an
	// operator or another tool might (e.g. `nft flush ruleset`,
	// `iptables -F`, `ip route flush proto 211`). Required.
	Disrupt func(t *testing.T, ns *netnstest.NS)
	// Ruleset, when set, adjusts the suite's base Ruleset before each
	// sub-test uses it (e.g. to enable the meter for backends that have one).
	Ruleset func(rs *rules.Ruleset)
	// Snapshot, when set, returns a text picture of objects the backend must
	// never touch (the caller creates them in Snapshot's first call if it
	// likes). The flush sub-test takes it before Apply and after Flush and
	// requires both to be equal. The suite always checks an unrelated nft
	// table as well.
	Snapshot func(t *testing.T, ns *netnstest.NS) string
	// Record, when set, plays the run cycle's part after every successful
	// Apply of the suite: it records the ruleset's bans where the backend
	// reads them (the route backend keeps their end times in a state store
	// it never writes). See StoreRecorder.
	Record func(t *testing.T, rs *rules.Ruleset, res rules.Result)
	// NoNamespace is for a backend that touches no kernel (rules/memory):
	// the suite needs no root, makes no namespace (the Factory, Disrupt and
	// Snapshot get a nil one) and skips the check of an unrelated nft table.
	NoNamespace bool
	// Advance, when set, moves the backend's clock d forward: the expiry
	// sub-test then advances past a ban's timeout instead of waiting for it.
	Advance func(d time.Duration)
}

// StoreRecorder returns an Options.Record that does what synban's run cycle
// does with a route backend's store after Apply: it records each ban of the
// ruleset (Since now, Until now plus its timeout, none without one) for
// backend, except those in Result.Forget, which it drops. now nil means
// time.Now.
func StoreRecorder(store *state.Store, backend string, now func() time.Time) func(t *testing.T, rs *rules.Ruleset, res rules.Result) {
	if now == nil {
		now = time.Now
	}
	return func(t *testing.T, rs *rules.Ruleset, res rules.Result) {
		t.Helper()
		at := now()
		err := store.Update(func(st *state.State) error {
			for _, b := range rs.Bans {
				if slices.Contains(res.Forget, b.Prefix) {
					continue
				}
				sb := state.Ban{Prefix: b.Prefix, Since: at, Reason: b.Reason, Backend: backend}
				if b.Timeout > 0 {
					sb.Until = at.Add(b.Timeout)
				}
				st.Upsert(sb)
			}
			for _, p := range res.Forget {
				if sb, ok := st.Find(p); ok && sb.Backend == backend {
					st.Remove(p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("record bans: %v", err)
		}
	}
}

// BaseRuleset is the Ruleset the suite applies: synban's default table and
// input hook, the loopback allow list, no meter or connection cap, and the
// given bans.
func BaseRuleset(bans ...rules.Ban) *rules.Ruleset {
	rs := &rules.Ruleset{
		Table:      "synban",
		Family:     "inet",
		Hooks:      []string{"input"},
		Priority:   -10,
		Allow:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		MaxEntries: 4096,
		Bans:       bans,
	}
	slices.SortFunc(rs.Bans, func(a, b rules.Ban) int { return rules.ComparePrefixes(a.Prefix, b.Prefix) })
	return rs
}

// SampleBans are the bans most sub-tests apply: a single IPv4 and IPv6
// address and an IPv4 and IPv6 prefix, from documentation ranges.
func SampleBans(timeout time.Duration) []rules.Ban {
	return []rules.Ban{
		{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Timeout: timeout, Reason: "syn-flood: 120 syn_recv >= 50"},
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Timeout: timeout, Reason: "syn-flood: 4000 syn_recv from 200 sources >= 200"},
		{Prefix: netip.MustParsePrefix("2001:db8::7/128"), Timeout: timeout, Reason: "conn-flood: 300 established >= 100"},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/64"), Timeout: timeout, Reason: "syn-flood: 900 syn_recv from 30 sources >= 20"},
	}
}

type suite struct {
	factory Factory
	opts    Options
}

// Run runs every contract sub-test against backends made by factory. Each
// sub-test gets its own namespace (removed afterwards) and its own backend.
func Run(t *testing.T, factory Factory, opts Options) {
	if !opts.NoNamespace {
		netnstest.RequireRoot(t)
	}
	if opts.Disrupt == nil {
		t.Fatal("backendtest.Run: Options.Disrupt is required")
	}
	s := &suite{factory: factory, opts: opts}
	t.Run("Ban", s.testBan)
	t.Run("Expiry", s.testExpiry)
	t.Run("Unban", s.testUnban)
	t.Run("ApplyTwice", s.testApplyTwice)
	t.Run("Restore", s.testRestore)
	t.Run("Flush", s.testFlush)
}

func (s *suite) setup(t *testing.T, name string) (*netnstest.NS, rules.Backend) {
	t.Helper()
	if s.opts.NoNamespace {
		return nil, s.factory(t, nil)
	}
	ns := netnstest.New(t, "bt"+name)
	return ns, s.factory(t, ns)
}

func (s *suite) ruleset(bans ...rules.Ban) *rules.Ruleset {
	rs := BaseRuleset(bans...)
	if s.opts.Ruleset != nil {
		s.opts.Ruleset(rs)
	}
	return rs
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func (s *suite) apply(t *testing.T, b rules.Backend, rs *rules.Ruleset) rules.Result {
	t.Helper()
	res, err := b.Apply(ctx(t), rs)
	if err != nil {
		t.Fatalf("%s: Apply: %v", b.Name(), err)
	}
	if s.opts.Record != nil {
		s.opts.Record(t, rs, res)
	}
	return res
}

func listBans(t *testing.T, b rules.Backend) map[netip.Prefix]rules.ActiveBan {
	t.Helper()
	list, err := b.Bans(ctx(t))
	if err != nil {
		t.Fatalf("%s: Bans: %v", b.Name(), err)
	}
	m := make(map[netip.Prefix]rules.ActiveBan, len(list))
	for _, ab := range list {
		if _, dup := m[ab.Prefix]; dup {
			t.Errorf("%s: Bans lists %s twice", b.Name(), ab.Prefix)
		}
		m[ab.Prefix] = ab
	}
	return m
}

func prefixes(m map[netip.Prefix]rules.ActiveBan) []string {
	var out []string
	for _, p := range slices.SortedFunc(maps.Keys(m), rules.ComparePrefixes) {
		out = append(out, p.String())
	}
	return out
}

// checkListed requires every ban of want to be listed with its reason and
// 0 < Expires <= Timeout.
func checkListed(t *testing.T, name string, got map[netip.Prefix]rules.ActiveBan, want []rules.Ban) {
	t.Helper()
	for _, w := range want {
		ab, ok := got[w.Prefix]
		if !ok {
			t.Errorf("%s: ban %s not listed; listed: %v", name, w.Prefix, prefixes(got))
			continue
		}
		if ab.Expires <= 0 || ab.Expires > w.Timeout {
			t.Errorf("%s: ban %s: Expires %s, want in (0, %s]", name, w.Prefix, ab.Expires, w.Timeout)
		}
		if ab.Reason != w.Reason {
			t.Errorf("%s: ban %s: Reason %q, want %q", name, w.Prefix, ab.Reason, w.Reason)
		}
	}
}

func (s *suite) testBan(t *testing.T) {
	_, b := s.setup(t, "ban")
	bans := SampleBans(10 * time.Minute)
	res := s.apply(t, b, s.ruleset(bans...))
	if res.Added != len(bans) {
		t.Errorf("first Apply: Added = %d, want %d", res.Added, len(bans))
	}
	if res.Refreshed != 0 {
		t.Errorf("first Apply: Refreshed = %d, want 0", res.Refreshed)
	}
	got := listBans(t, b)
	if len(got) != len(bans) {
		t.Errorf("Bans lists %d bans %v, want %d", len(got), prefixes(got), len(bans))
	}
	checkListed(t, b.Name(), got, bans)
	if _, err := b.Counters(ctx(t)); err != nil {
		t.Errorf("Counters: %v", err)
	}
}

func (s *suite) testExpiry(t *testing.T) {
	_, b := s.setup(t, "expiry")
	short := rules.Ban{Prefix: netip.MustParsePrefix("203.0.113.9/32"), Timeout: 2 * time.Second, Reason: "short"}
	long := rules.Ban{Prefix: netip.MustParsePrefix("203.0.113.10/32"), Timeout: 10 * time.Minute, Reason: "long"}
	s.apply(t, b, s.ruleset(short, long))
	if got := listBans(t, b); len(got) != 2 {
		t.Fatalf("right after Apply, Bans lists %v, want both bans", prefixes(got))
	}
	if s.opts.Advance != nil {
		s.opts.Advance(time.Second)
		if got := listBans(t, b); len(got) != 2 {
			t.Fatalf("1s after Apply, Bans lists %v, want both bans", prefixes(got))
		}
		s.opts.Advance(time.Second)
		got := listBans(t, b)
		if _, present := got[short.Prefix]; present {
			t.Errorf("ban %s with a 2s timeout still listed 2s after Apply", short.Prefix)
		}
		if ab, ok := got[long.Prefix]; !ok || ab.Expires != long.Timeout-2*time.Second {
			t.Errorf("ban %s with 10m timeout: listed %v, Expires %s; want listed with %s left", long.Prefix, ok, ab.Expires, long.Timeout-2*time.Second)
		}
		return
	}
	exp, _ := b.(Expirer)
	start := time.Now()
	var got map[netip.Prefix]rules.ActiveBan
	netnstest.Eventually(t, 15*time.Second, func() bool {
		if exp != nil {
			if _, err := exp.Expire(ctx(t)); err != nil {
				t.Fatalf("Expire: %v", err)
			}
		}
		got = listBans(t, b)
		_, present := got[short.Prefix]
		return !present
	}, "ban %s with a 2s timeout still listed", short.Prefix)
	if el := time.Since(start); el < time.Second {
		t.Errorf("ban with 2s timeout vanished after only %s", el)
	}
	if _, ok := got[long.Prefix]; !ok {
		t.Errorf("ban %s with 10m timeout vanished too; listed: %v", long.Prefix, prefixes(got))
	}
}

func (s *suite) testUnban(t *testing.T) {
	_, b := s.setup(t, "unban")
	bans := SampleBans(10 * time.Minute)
	s.apply(t, b, s.ruleset(bans...))
	absent := netip.MustParsePrefix("192.0.2.99/32")
	n, err := b.Unban(ctx(t), []netip.Prefix{bans[0].Prefix, bans[3].Prefix, absent})
	if err != nil {
		t.Fatalf("Unban: %v", err)
	}
	if n != 2 {
		t.Errorf("Unban of 2 present and 1 absent prefix = %d, want 2", n)
	}
	got := listBans(t, b)
	for _, gone := range []netip.Prefix{bans[0].Prefix, bans[3].Prefix} {
		if _, ok := got[gone]; ok {
			t.Errorf("after Unban, %s still listed", gone)
		}
	}
	checkListed(t, b.Name(), got, []rules.Ban{bans[1], bans[2]})
	if n, err := b.Unban(ctx(t), []netip.Prefix{bans[0].Prefix}); err != nil || n != 0 {
		t.Errorf("second Unban of %s = %d, %v; want 0, nil", bans[0].Prefix, n, err)
	}
}

func (s *suite) testApplyTwice(t *testing.T) {
	_, b := s.setup(t, "twice")
	bans := SampleBans(10 * time.Minute)
	rs := s.ruleset(bans...)
	s.apply(t, b, rs)
	before := listBans(t, b)
	res := s.apply(t, b, rs)
	if res.Added != 0 {
		t.Errorf("second Apply: Added = %d, want 0", res.Added)
	}
	if res.Created {
		t.Errorf("second Apply: Created = true, want false")
	}
	if len(res.Changed) != 0 {
		t.Errorf("second Apply: Changed = %v, want none", res.Changed)
	}
	after := listBans(t, b)
	if a, b := prefixes(before), prefixes(after); !slices.Equal(a, b) {
		t.Errorf("bans changed by a second Apply: before %v, after %v", a, b)
	}
	for p, ab := range after {
		if ab.Reason != before[p].Reason {
			t.Errorf("ban %s: reason changed from %q to %q", p, before[p].Reason, ab.Reason)
		}
	}
	checkListed(t, b.Name(), after, bans)
}

func (s *suite) testRestore(t *testing.T) {
	ns, b := s.setup(t, "restore")
	bans := SampleBans(10 * time.Minute)
	rs := s.ruleset(bans...)
	s.apply(t, b, rs)
	s.opts.Disrupt(t, ns)
	s.apply(t, b, rs)
	got := listBans(t, b)
	checkListed(t, b.Name(), got, bans)
	// A second Apply after the restore is quiet again.
	if res := s.apply(t, b, rs); res.Added != 0 || res.Created {
		t.Errorf("Apply after restore: %+v, want Added 0 and Created false", res)
	}
}

const otherTable = `table inet someone_else {
	set keep {
		type ipv4_addr
		flags timeout
		elements = { 192.0.2.50 timeout 1h comment "not synban's" }
	}
	chain input {
		type filter hook input priority 0; policy accept;
		ip saddr @keep counter drop comment "theirs"
	}
}
`

func (s *suite) testFlush(t *testing.T) {
	listOther := func() string { return "" }
	if !s.opts.NoNamespace {
		netnstest.RequireCommand(t, "nft")
	}
	ns, b := s.setup(t, "flush")
	if ns != nil {
		cmd := ns.Command(ctx(t), "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(otherTable)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("create unrelated nft table: %v: %s", err, out)
		}
		listOther = func() string {
			return StripExpires(ns.MustRun("nft", "list", "table", "inet", "someone_else"))
		}
	}
	var snap string
	if s.opts.Snapshot != nil {
		snap = s.opts.Snapshot(t, ns)
	}
	otherBefore := listOther()

	s.apply(t, b, s.ruleset(SampleBans(10*time.Minute)...))
	if err := b.Flush(ctx(t)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := listBans(t, b); len(got) != 0 {
		t.Errorf("after Flush, Bans lists %v, want none", prefixes(got))
	}
	if after := listOther(); after != otherBefore {
		t.Errorf("Flush changed an unrelated nft table:\nbefore:\n%s\nafter:\n%s", otherBefore, after)
	}
	if s.opts.Snapshot != nil {
		if after := s.opts.Snapshot(t, ns); after != snap {
			t.Errorf("Flush changed objects it does not own:\nbefore:\n%s\nafter:\n%s", snap, after)
		}
	}
	// Flush when there is nothing to remove is not an error.
	if err := b.Flush(ctx(t)); err != nil {
		t.Errorf("second Flush: %v", err)
	}
}

// StripExpires removes `expires <duration>` tokens from nft output so two
// listings taken at different times compare equal; white space is
// normalised on the way (lines kept).
func StripExpires(s string) string {
	var lines []string
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		out := f[:0]
		for i := 0; i < len(f); i++ {
			if f[i] == "expires" && i+1 < len(f) {
				i++
				continue
			}
			out = append(out, f[i])
		}
		lines = append(lines, strings.Join(out, " "))
	}
	return strings.Join(lines, "\n")
}
