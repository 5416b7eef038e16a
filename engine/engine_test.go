package engine

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/state"
)

// fakeSampler returns the same connections on every sample.
type fakeSampler struct{ conns []detect.Conn }

func (f fakeSampler) Name() string { return "fake" }
func (f fakeSampler) Sample(context.Context) (detect.Sample, error) {
	return detect.Sample{Source: "fake", Time: time.Now(), Conns: f.conns}, nil
}

// halfOpen returns n SYN_RECV entries from src to port 80.
func halfOpen(src string, n int) []detect.Conn {
	a := netip.MustParseAddr(src)
	out := make([]detect.Conn, n)
	for i := range out {
		out[i] = detect.Conn{Local: netip.MustParseAddrPort("192.0.2.10:80"), Remote: netip.AddrPortFrom(a, uint16(2000+i)), State: detect.SynRecv}
	}
	return out
}

// quietPolicy is the default policy without the host's own addresses in
// the guard, so a test does not depend on the machine it runs on.
func quietPolicy() *policy.Policy {
	p := policy.Default()
	p.Allow.Host = false
	return p
}

// window samples the fake sampler as the policy says, without waiting.
func window(t *testing.T, p *policy.Policy, conns []detect.Conn) *Window {
	t.Helper()
	res, err := detect.Window(context.Background(), []detect.Sampler{fakeSampler{conns}}, p.Sample.Count, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Window{Samplers: []string{"fake"}, Why: "test", Result: res}
}

func newState(t *testing.T) *state.State {
	t.Helper()
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func subjects(bans []rules.Ban) []string {
	var out []string
	for _, b := range bans {
		out = append(out, b.Prefix.String())
	}
	return out
}

// TestDecideFromCapture decides on the captured tables under
// testdata/proc, as `plan --from` does, without root and without a state
// store: the single flooder is banned, a quiet table bans nothing, and the
// decision carries no restored bans.
func TestDecideFromCapture(t *testing.T) {
	ctx := context.Background()
	p := quietPolicy()
	now := time.Now()
	cases := map[string][]string{
		"single-flood": {"203.0.113.7/32"},
		"quiet":        nil,
	}
	for dir, want := range cases {
		e := New(nil, Options{From: filepath.Join("..", "testdata", "proc", dir)})
		d, err := e.Decide(ctx, p, nil, now)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if got := subjects(d.Ruleset.Bans); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: bans %v, want %v", dir, got, want)
		}
		if d.StateLoaded || d.Restored != 0 || d.Sampler != "procfs" || len(d.Samples) != p.Sample.Count {
			t.Errorf("%s: state loaded %v, restored %d, sampler %q, %d samples", dir, d.StateLoaded, d.Restored, d.Sampler, len(d.Samples))
		}
	}
}

// TestReplayBadCapture: a capture that cannot be replayed is an InputError
// naming the file, not a quiet "flood: none".
func TestReplayBadCapture(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := New(nil, Options{From: dir})
	check := func(what, want string) {
		t.Helper()
		_, err := e.Sample(context.Background(), quietPolicy())
		var ie *InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want an InputError containing %q", what, err, want)
		}
	}
	check("no net/tcp", "want a directory holding net/tcp")
	if err := os.WriteFile(filepath.Join(dir, "net", "tcp"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	check("empty net/tcp", "net/tcp: empty file")
	if err := os.WriteFile(filepath.Join(dir, "net", "tcp"), []byte("  sl  local_address rem_address   st\n  0: garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check("nothing parsed", "no line parsed")
}

// TestDecideWithState: the state store's active bans are restored into the
// ruleset, a new offender is banned, and an offender whose ban still holds
// (no drop counters: nothing new shown) is not a new offence.
func TestDecideWithState(t *testing.T) {
	p := quietPolicy()
	now := time.Now()
	st := newState(t)
	stored := netip.MustParsePrefix("198.51.100.9/32")
	held := netip.MustParsePrefix("198.18.7.8/32")
	st.Upsert(state.Ban{Prefix: stored, Since: now.Add(-time.Minute), Until: now.Add(5 * time.Minute), Reason: "syn-flood: earlier"})
	st.Upsert(state.Ban{Prefix: held, Since: now.Add(-time.Minute), Until: now.Add(9 * time.Minute), Reason: "syn-flood: earlier", Rule: "syn-flood"})
	st.Record(held, now.Add(-time.Minute), 10*time.Minute)
	conns := append(halfOpen("203.0.113.7", 200), halfOpen("198.18.7.8", 200)...)
	e := New(nil, Options{})
	d, err := e.decideWindow(context.Background(), &cycle{p: p, g: p.Guard(nil), now: now, st: storedOf(st)}, window(t, p, conns))
	if err != nil {
		t.Fatal(err)
	}
	if !d.StateLoaded || d.Restored != 2 {
		t.Errorf("state loaded %v, restored %d, want true, 2", d.StateLoaded, d.Restored)
	}
	got := map[netip.Prefix]rules.Ban{}
	for _, b := range d.Ruleset.Bans {
		got[b.Prefix] = b
	}
	for _, want := range []string{"203.0.113.7/32", "198.18.7.8/32", "198.51.100.9/32"} {
		if _, ok := got[netip.MustParsePrefix(want)]; !ok {
			t.Errorf("ruleset lacks %s: %v", want, subjects(d.Ruleset.Bans))
		}
	}
	if b := got[stored]; b.Timeout != 5*time.Minute || b.Reason != "syn-flood: earlier" {
		t.Errorf("restored ban %+v, want 5m left and its stored reason", b)
	}
	for _, v := range d.Report.Verdicts {
		if v.Subject == held {
			t.Errorf("offender whose ban holds is a new verdict: %+v", v)
		}
	}
}

// TestRecordBans: a new offence goes into the history, a refresh does not;
// a stored ban longer than ban.max_duration (Compile cut it) is cut in the
// store too, keeping its start; a restored ban within the cap keeps its end
// (its time left was rounded down to whole seconds); drop baselines are
// stored.
func TestRecordBans(t *testing.T) {
	now := time.Now()
	fresh := netip.MustParsePrefix("203.0.113.7/32")
	refreshed := netip.MustParsePrefix("203.0.113.8/32")
	long := netip.MustParsePrefix("198.51.100.9/32")
	restored := netip.MustParsePrefix("198.51.100.10/32")
	end := now.Add(5*time.Minute + 700*time.Millisecond)
	st := newState(t)
	st.Upsert(state.Ban{Prefix: long, Since: now.Add(-time.Hour), Until: now.AddDate(50, 0, 0), Forced: true})
	st.Upsert(state.Ban{Prefix: restored, Since: now.Add(-time.Hour), Until: end})
	p := policy.Default()
	p.Ban.MaxDuration.Duration = 24 * time.Hour
	d := &Decision{
		Policy: p,
		Report: detect.Report{Verdicts: []detect.Verdict{{Subject: fresh, Rule: "syn-flood"}, {Subject: refreshed, Rule: "syn-flood"}}},
		Ruleset: &rules.Ruleset{Bans: []rules.Ban{{Prefix: fresh, Timeout: 10 * time.Minute, Reason: "r1"},
			{Prefix: refreshed, Timeout: 10 * time.Minute, Reason: "r2"}, {Prefix: long, Timeout: 24 * time.Hour, Reason: "r3"},
			{Prefix: restored, Timeout: 5 * time.Minute, Reason: "r4"}}},
		Refreshed: map[netip.Prefix]bool{refreshed: true},
	}
	recordBans(st, d, "nftables", now, map[netip.Prefix]uint64{fresh: 7})
	if _, ok := st.Last(fresh); !ok {
		t.Error("new offence not in the history")
	}
	if _, ok := st.Last(refreshed); ok {
		t.Error("refresh recorded as an offence")
	}
	b, _ := st.Find(fresh)
	if b.Rule != "syn-flood" || b.Backend != "nftables" || !b.Until.Equal(now.Add(10*time.Minute)) || b.Drops != 7 {
		t.Errorf("fresh ban stored as %+v", b)
	}
	l, _ := st.Find(long)
	if !l.Until.Equal(now.Add(24*time.Hour)) || !l.Since.Equal(now.Add(-time.Hour)) || !l.Forced {
		t.Errorf("capped ban stored as %+v, want until now+24h, its start and its forced flag kept", l)
	}
	if r, _ := st.Find(restored); !r.Until.Equal(end) {
		t.Errorf("restored ban ends %v, want its stored end %v", r.Until, end)
	}
}

// TestRecordBansPulledEnd: a ban the run did not decide (pulled again from
// the LAPI) whose end comes back less than storeSlack later keeps its
// stored end, so the store does not rewrite it every run; one that comes
// back a slack or more later, and a ban decided this run, get the new end.
func TestRecordBansPulledEnd(t *testing.T) {
	now := time.Now()
	jitter := netip.MustParsePrefix("198.51.100.20/32")
	extended := netip.MustParsePrefix("198.51.100.21/32")
	decided := netip.MustParsePrefix("198.51.100.22/32")
	end := now.Add(time.Hour)
	st := newState(t)
	for _, p := range []netip.Prefix{jitter, extended, decided} {
		st.Upsert(state.Ban{Prefix: p, Since: now.Add(-time.Hour), Until: end, Reason: "crowdsec:cscli x", Origin: "crowdsec:cscli"})
	}
	d := &Decision{
		Policy: policy.Default(),
		Report: detect.Report{Verdicts: []detect.Verdict{{Subject: decided, Rule: "syn-flood"}}},
		Ruleset: &rules.Ruleset{Bans: []rules.Ban{
			{Prefix: jitter, Timeout: time.Hour + storeSlack - time.Millisecond, Reason: "crowdsec:cscli x"},
			{Prefix: extended, Timeout: time.Hour + storeSlack, Reason: "crowdsec:cscli x"},
			{Prefix: decided, Timeout: time.Hour + 300*time.Millisecond, Reason: "crowdsec:cscli x"}}},
	}
	recordBans(st, d, "nftables", now, nil)
	for p, want := range map[netip.Prefix]time.Time{jitter: end, extended: now.Add(time.Hour + storeSlack),
		decided: now.Add(time.Hour + 300*time.Millisecond)} {
		if b, _ := st.Find(p); !b.Until.Equal(want) {
			t.Errorf("%s ends %v, want %v", p, b.Until, want)
		}
	}
}

// TestAppendStoredOffences: the stored bans reach Compile as the offences
// of storedVerdicts, in the same order, after the ones already there; ended
// bans, bans with under a second left and bans without an end are left out
// as storedVerdicts leaves them out.
func TestAppendStoredOffences(t *testing.T) {
	now := time.Now()
	st := &state.State{Version: state.Version}
	for i, left := range []time.Duration{time.Hour, -time.Minute, 500 * time.Millisecond, 90 * time.Second, 0, 10 * time.Minute} {
		b := state.Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(9 - i)}), 32), Since: now, Reason: "r", Forced: i == 3}
		if left != 0 {
			b.Until = now.Add(left)
		}
		if i == 5 {
			b.Reason = ""
		}
		st.Bans = append(st.Bans, b) // not in prefix order
	}
	first := Offences([]detect.Verdict{{Subject: netip.MustParsePrefix("192.0.2.1/32"), Rule: "syn-flood"}})
	got, n := appendStoredOffences(first, st, now)
	want := append(Offences([]detect.Verdict{{Subject: netip.MustParsePrefix("192.0.2.1/32"), Rule: "syn-flood"}}),
		Offences(storedVerdicts(st, now))...)
	if n != len(want)-1 || !reflect.DeepEqual(got, want) {
		t.Fatalf("appendStoredOffences = %+v (%d), want %+v", got, n, want)
	}
	if n != 3 {
		t.Errorf("%d stored bans restored, want 3", n)
	}
}

// countingDrops is a DropCounter that counts its reads.
type countingDrops struct {
	m     map[netip.Prefix]uint64
	reads int
}

func (c *countingDrops) BanDrops(context.Context) (map[netip.Prefix]uint64, error) {
	c.reads++
	return c.m, nil
}

// TestDropBaseline: the bans decided this run start at 0 (the apply added
// or re-added them), the others keep the counts read for the decision;
// nothing is read for it, and without a read or a verdict the stored counts
// stand.
func TestDropBaseline(t *testing.T) {
	ctx := context.Background()
	held, decided := netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32")
	none := &Decision{}
	withVerdict := &Decision{Report: detect.Report{Verdicts: []detect.Verdict{{Subject: decided}}}}
	if m := dropBaseline(nil, withVerdict); m != nil {
		t.Errorf("no counters: %v", m)
	}
	dc := &countingDrops{m: map[netip.Prefix]uint64{held: 3, decided: 7}}
	dr := &dropReader{dc: dc}
	if m := dropBaseline(dr, none); m != nil || dc.reads != 0 {
		t.Errorf("nothing read, nothing decided: %v after %d reads, want nil and no read", m, dc.reads)
	}
	if m := dropBaseline(dr, withVerdict); len(m) != 1 || m[decided] != 0 || dc.reads != 0 {
		t.Errorf("nothing read, one ban decided: %v after %d reads, want it at 0 and no read", m, dc.reads)
	}
	if _, err := dr.read(ctx); err != nil || dc.reads != 1 {
		t.Fatalf("read: %v, %d reads", err, dc.reads)
	}
	if _, err := dr.read(ctx); err != nil || dc.reads != 1 {
		t.Errorf("second read went to the kernel: %d reads", dc.reads)
	}
	m := dropBaseline(dr, withVerdict)
	if m[held] != 3 || m[decided] != 0 || dc.reads != 1 {
		t.Errorf("after a read: %v after %d reads, want held 3, decided 0, no new read", m, dc.reads)
	}
	if dc.m[decided] != 7 {
		t.Error("dropBaseline changed the counts it was given")
	}
}

// TestCompareStored: status names the stored bans the kernel lacks, counts
// routes the store does not know, and says what the next run does.
func TestCompareStored(t *testing.T) {
	now := time.Now()
	st := newState(t)
	for _, s := range []string{"203.0.113.7/32", "203.0.113.8/32", "2001:db8::1/128"} {
		st.Upsert(state.Ban{Prefix: netip.MustParsePrefix(s), Since: now, Until: now.Add(time.Hour)})
	}
	kernel := []rules.ActiveBan{{Ban: rules.Ban{Prefix: netip.MustParsePrefix("203.0.113.0/24")}}, {Ban: rules.Ban{Prefix: netip.MustParsePrefix("2001:db8::1/128")}}}
	g := compareStored(st, kernel, now)
	if g.stored != 3 || len(g.absent) != 0 || g.stale != 1 {
		t.Errorf("covered: %+v, want 3 stored, none absent, 1 stale", g)
	}
	g = compareStored(st, kernel[1:], now)
	if g.stored != 3 || len(g.absent) != 2 {
		t.Fatalf("uncovered: %+v", g)
	}
	notes := g.notes("route", nil, 0)
	if len(notes) != 1 || notes[0] != "2 of 3 stored bans missing from the kernel; the next run restores them" {
		t.Errorf("notes %q", notes)
	}
	if g := compareStored(nil, kernel, now); g.stale != 2 || g.stored != 0 {
		t.Errorf("no store: %+v", g)
	}
}

// TestPerSource counts each source's peak per state, most first.
func TestPerSource(t *testing.T) {
	s1 := detect.Sample{Conns: append(halfOpen("203.0.113.7", 3), halfOpen("2001:db8::1", 1)...)}
	s2 := detect.Sample{Conns: halfOpen("203.0.113.7", 5)}
	rows := PerSource([]detect.Sample{s1, s2})
	if len(rows) != 2 || rows[0] != (SourceRow{Source: "203.0.113.7", SynRecv: 5, Total: 5}) || rows[1].Source != "2001:db8::1" {
		t.Errorf("rows %+v", rows)
	}
}
