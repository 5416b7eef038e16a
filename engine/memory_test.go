package engine

// The whole cycle against rules/memory: no root, no network namespace, the
// clock in the test's hands. Every test here is named TestMemory... so that
// `go test ./engine/ -run Memory` runs them, as an ordinary user too.

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synban/synban/crowdsec"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backends"
	"github.com/synban/synban/rules/memory"
	"github.com/synban/synban/state"
)

// Captures under testdata/proc (see its README).
var (
	capQuiet  = filepath.Join("..", "testdata", "proc", "quiet")
	capSingle = filepath.Join("..", "testdata", "proc", "single-flood") // 203.0.113.7: 120 SYN_RECV
	capPrefix = filepath.Join("..", "testdata", "proc", "prefix-flood") // 198.51.100.0/24: 400
	capMixed  = filepath.Join("..", "testdata", "proc", "mixed")
)

var flooder = netip.MustParsePrefix("203.0.113.7/32")

// logBuf is a log sink safe for the engine's goroutines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rig is one host: an in-memory kernel on a test clock, a state directory,
// a sysctl tree of its own, and the policy its engines use.
type rig struct {
	t     *testing.T
	k     *memory.Kernel
	clock *memory.Clock
	dir   string
	p     *policy.Policy
	log   logBuf
	// opened records each backend open: its name and whether read-only.
	opened []string
	lapi   *stubLAPI
}

func newRig(t *testing.T) *rig {
	t.Helper()
	clock := memory.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	return &rig{t: t, k: memory.New(clock), clock: clock, dir: t.TempDir(), p: quietPolicy()}
}

// open is the engine's Options.OpenBackend.
func (r *rig) open(_ context.Context, name string, o backends.Options) (rules.Backend, backends.Choice, error) {
	r.opened = append(r.opened, name+map[bool]string{true: " read-only", false: ""}[o.ReadOnly])
	return r.k.Open(), backends.Choice{Name: memory.Name, Why: "test"}, nil
}

// engine returns an engine on the rig replaying the capture from ("" for
// none).
func (r *rig) engine(from string) *Engine {
	o := Options{StateDir: r.dir, From: from, SysctlRoot: r.t.TempDir(), XDPRoot: r.t.TempDir(), OpenBackend: r.open, Now: r.clock.Now}
	if r.lapi != nil {
		o.NewLAPI = func(crowdsec.Config) (LAPI, error) { return r.lapi, nil }
	}
	return New(slog.New(slog.NewTextHandler(&r.log, &slog.HandlerOptions{Level: slog.LevelDebug})), o)
}

// run runs one cycle on the capture at the clock's time.
func (r *rig) run(from string) *Outcome {
	r.t.Helper()
	out, err := r.engine(from).Run(context.Background(), r.p, r.clock.Now())
	if err != nil {
		r.t.Fatalf("run on %s: %v", filepath.Base(from), err)
	}
	return out
}

// kernel returns the kernel's bans by prefix.
func (r *rig) kernel() map[netip.Prefix]rules.ActiveBan {
	r.t.Helper()
	bans, err := r.k.Open().Bans(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	m := map[netip.Prefix]rules.ActiveBan{}
	for _, b := range bans {
		m[b.Prefix] = b
	}
	return m
}

// state loads the store.
func (r *rig) state() *state.State {
	r.t.Helper()
	s, err := state.Open(r.dir)
	if err != nil {
		r.t.Fatal(err)
	}
	st, err := s.Load()
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

func (r *rig) stored(p netip.Prefix) (state.Ban, bool) {
	r.t.Helper()
	return r.state().Find(p)
}

func TestMemoryFirstRunCreatesAndBans(t *testing.T) {
	r := newRig(t)
	g0 := r.k.Generation()
	out := r.run(capSingle)
	if !out.Result.Created || out.Result.Added != 1 {
		t.Fatalf("first run: %+v, want created with 1 ban added", out.Result)
	}
	ab, ok := r.kernel()[flooder]
	if !ok || ab.Expires != r.p.Ban.Duration.Duration {
		t.Fatalf("kernel ban of %s: %+v %v, want one of %s", flooder, ab, ok, r.p.Ban.Duration)
	}
	sb, ok := r.stored(flooder)
	if !ok || sb.Backend != memory.Name || !sb.Until.Equal(r.clock.Now().Add(r.p.Ban.Duration.Duration)) || sb.Rule != "syn-flood" {
		t.Fatalf("stored ban %+v %v", sb, ok)
	}
	a := r.state().Applied
	if a == nil || a.Backend != memory.Name || a.Generation != g0+1 || a.Bans != 1 {
		t.Fatalf("applied record %+v, want memory at generation %d with 1 ban", a, g0+1)
	}
	if !strings.Contains(r.log.String(), "created synban's firewall state") {
		t.Errorf("no creation logged:\n%s", r.log.String())
	}
}

func TestMemoryQuietFirstRunBansNothing(t *testing.T) {
	r := newRig(t)
	out := r.run(capQuiet)
	if !out.Result.Created || out.Result.Added != 0 || len(r.kernel()) != 0 {
		t.Fatalf("quiet first run: %+v, kernel %v", out.Result, r.kernel())
	}
	if !r.k.Present() {
		t.Fatal("the structure was not created")
	}
}

func TestMemoryPrefixFloodBansTheAggregate(t *testing.T) {
	r := newRig(t)
	r.run(capPrefix)
	want := netip.MustParsePrefix("198.51.100.0/24")
	k := r.kernel()
	if _, ok := k[want]; !ok || len(k) != 1 {
		t.Fatalf("kernel %v, want only %s", k, want)
	}
}

// The generation shortcut: a second run that decides nothing new reads no
// ban back and changes nothing.
func TestMemoryGenerationShortcut(t *testing.T) {
	for _, second := range []string{capQuiet, capSingle} {
		t.Run(filepath.Base(second), func(t *testing.T) {
			r := newRig(t)
			r.run(capSingle)
			g := r.k.Generation()
			before := r.kernel()
			r.clock.Advance(time.Minute)
			out := r.run(second)
			if !out.Decision.Unchanged {
				t.Fatalf("second run on %s was not Unchanged: %+v", filepath.Base(second), out.Result)
			}
			if r.k.Generation() != g {
				t.Errorf("generation moved from %d to %d", g, r.k.Generation())
			}
			after := r.kernel()
			if len(after) != len(before) || after[flooder].Expires != before[flooder].Expires-time.Minute {
				t.Errorf("kernel before %v, after %v", before, after)
			}
		})
	}
}

// Any change the run did not make (an outside unban, a flush) moves the
// generation: the next run reconciles in full and puts the ban back.
func TestMemoryOutsideUnbanDefeatsShortcut(t *testing.T) {
	r := newRig(t)
	r.run(capSingle)
	if !r.k.OutsideUnban(flooder) {
		t.Fatal("no ban to unban")
	}
	out := r.run(capQuiet)
	if out.Decision.Unchanged || out.Result.Added != 1 || out.Decision.Restored != 1 {
		t.Fatalf("run after an outside unban: unchanged %v, %+v, restored %d", out.Decision.Unchanged, out.Result, out.Decision.Restored)
	}
	if _, ok := r.kernel()[flooder]; !ok {
		t.Fatal("ban not restored")
	}
}

func TestMemoryRestoreAfterOutsideFlush(t *testing.T) {
	r := newRig(t)
	r.run(capSingle)
	r.clock.Advance(3 * time.Minute)
	r.k.OutsideFlush()
	out := r.run(capQuiet)
	if !out.Result.Created || out.Decision.Restored != 1 || out.Result.Added != 1 {
		t.Fatalf("run after the flush: %+v restored %d", out.Result, out.Decision.Restored)
	}
	ab, ok := r.kernel()[flooder]
	if want := r.p.Ban.Duration.Duration - 3*time.Minute; !ok || ab.Expires != want {
		t.Fatalf("restored ban %+v %v, want %s left", ab, ok, want)
	}
	if !strings.Contains(r.log.String(), "was missing and has been restored") {
		t.Errorf("no warning of the restore:\n%s", r.log.String())
	}
	// Restored, the next quiet run takes the shortcut again.
	if out := r.run(capQuiet); !out.Decision.Unchanged {
		t.Errorf("run after the restore not Unchanged: %+v", out.Result)
	}
}

func TestMemoryExpiryOnTheClock(t *testing.T) {
	r := newRig(t)
	r.run(capSingle)
	r.clock.Advance(r.p.Ban.Duration.Duration + time.Second)
	if len(r.kernel()) != 0 {
		t.Fatalf("kernel still holds %v after the timeout", r.kernel())
	}
	out := r.run(capQuiet)
	if out.Expired != 1 {
		t.Fatalf("expired %d, want 1", out.Expired)
	}
	if _, ok := r.stored(flooder); ok {
		t.Fatal("the store still holds the expired ban")
	}
	if rec, ok := r.state().Last(flooder); !ok || rec.LastFor != r.p.Ban.Duration.Duration {
		t.Errorf("history of %s: %+v %v, want its last ban kept", flooder, rec, ok)
	}
}

// Escalation counts an offence once: the same source seen again while its
// ban holds and drops nothing new is stale; seen again after the ban ended
// its next ban is the previous one times the factor, once.
func TestMemoryEscalationOncePerOffence(t *testing.T) {
	r := newRig(t)
	base := r.p.Ban.Duration.Duration
	r.run(capSingle)
	for range 3 { // traces of the answered offence
		r.clock.Advance(time.Minute)
		if out := r.run(capSingle); len(out.Decision.Report.Verdicts) != 0 {
			t.Fatalf("a stale offence made verdicts %v", out.Decision.Report.Verdicts)
		}
	}
	if ab := r.kernel()[flooder]; ab.Expires != base-3*time.Minute {
		t.Fatalf("the ban moved while stale: %s left", ab.Expires)
	}
	r.clock.Advance(base) // the ban ends; the source comes back
	out := r.run(capSingle)
	if len(out.Decision.Report.Verdicts) != 1 || out.Decision.Report.Verdicts[0].BanFor != 2*base {
		t.Fatalf("second offence: %v, want one verdict for %s", out.Decision.Report.Verdicts, 2*base)
	}
	if ab := r.kernel()[flooder]; ab.Expires != 2*base {
		t.Fatalf("escalated ban has %s left, want %s", ab.Expires, 2*base)
	}
	r.clock.Advance(time.Minute)
	if out := r.run(capSingle); len(out.Decision.Report.Verdicts) != 0 {
		t.Fatalf("the escalated offence counted again: %v", out.Decision.Report.Verdicts)
	}
}

// A banned source whose packets keep being dropped gets its ban refreshed,
// never escalated while it holds.
func TestMemoryDropsRefreshWithoutEscalating(t *testing.T) {
	r := newRig(t)
	base := r.p.Ban.Duration.Duration
	r.run(capSingle)
	r.clock.Advance(4 * time.Minute)
	r.k.Drop(flooder, 500)
	out := r.run(capSingle)
	if !out.Decision.Refreshed[flooder] {
		t.Fatalf("not refreshed: %v", out.Decision.Refreshed)
	}
	if ab := r.kernel()[flooder]; ab.Expires != base {
		t.Fatalf("refreshed ban has %s left, want %s (not escalated)", ab.Expires, base)
	}
	sb, _ := r.stored(flooder)
	if sb.Drops != 0 {
		t.Errorf("stored drop baseline %d, want 0 (the refresh restarted the counter)", sb.Drops)
	}
	// No new drops: stale again.
	r.clock.Advance(time.Minute)
	if out := r.run(capSingle); len(out.Decision.Report.Verdicts) != 0 {
		t.Errorf("verdicts without new drops: %v", out.Decision.Report.Verdicts)
	}
}

func TestMemoryManualBanUnbanFlush(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	e := r.engine("")
	sub := netip.MustParsePrefix("192.0.2.77/32")
	b, err := e.Ban(ctx, r.p, sub, time.Hour, false)
	if err != nil || b.Backend != memory.Name || b.Ban.Timeout != time.Hour {
		t.Fatalf("Ban: %+v %v", b, err)
	}
	if ab, ok := r.kernel()[sub]; !ok || ab.Expires != time.Hour {
		t.Fatalf("kernel after ban: %v", r.kernel())
	}
	if sb, ok := r.stored(sub); !ok || !sb.Until.Equal(r.clock.Now().Add(time.Hour)) {
		t.Fatalf("stored %+v %v", sb, ok)
	}
	n, name, err := e.Unban(ctx, r.p, []netip.Prefix{sub, netip.MustParsePrefix("192.0.2.78/32")})
	if err != nil || n != 1 || name != memory.Name {
		t.Fatalf("Unban = %d %q %v, want 1", n, name, err)
	}
	if _, ok := r.kernel()[sub]; ok {
		t.Fatal("unbanned subject still in the kernel")
	}
	if _, ok := r.stored(sub); ok {
		t.Fatal("unbanned subject still stored")
	}
	if a := r.state().Applied; a != nil {
		t.Errorf("unban left the applied record %+v", a)
	}
	r.run(capSingle)
	if _, err := e.Flush(ctx, r.p); err != nil {
		t.Fatal(err)
	}
	if r.k.Present() || len(r.kernel()) != 0 || len(r.state().Bans) != 0 {
		t.Fatalf("after flush: present %v, kernel %v, stored %v", r.k.Present(), r.kernel(), r.state().Bans)
	}
	// Flushed bans are forgotten: the next quiet run restores nothing.
	if out := r.run(capQuiet); out.Decision.Restored != 0 || len(r.kernel()) != 0 {
		t.Fatalf("after flush a run restored %d: %v", out.Decision.Restored, r.kernel())
	}
}

func TestMemoryBanRefusals(t *testing.T) {
	r := newRig(t)
	r.p.Allow.Addresses = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28")}
	e := r.engine("")
	ctx := context.Background()
	cases := []struct {
		name, subject string
		force         bool
		want          string
	}{
		{"allowed", "192.0.2.5/32", false, "192.0.2.0/28"},
		{"broad", "10.0.0.0/8", false, "min_ipv4_length"},
		{"everything", "0.0.0.0/0", true, "/0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := r.k.Generation()
			_, err := e.Ban(ctx, r.p, netip.MustParsePrefix(c.subject), time.Hour, c.force)
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Ban(%s) = %v, want bad input naming %q", c.subject, err, c.want)
			}
			if r.k.Generation() != g || len(r.kernel()) != 0 {
				t.Fatalf("a refused ban changed the kernel: %v", r.kernel())
			}
		})
	}
	if _, err := e.Ban(ctx, r.p, netip.MustParsePrefix("10.0.0.0/8"), time.Hour, true); err != nil {
		t.Fatalf("forced broad ban: %v", err)
	}
	if sb, ok := r.stored(netip.MustParsePrefix("10.0.0.0/8")); !ok || !sb.Forced {
		t.Fatalf("forced ban stored as %+v %v", sb, ok)
	}
}

func TestMemoryBanCappedByMaxDuration(t *testing.T) {
	r := newRig(t)
	b, err := r.engine("").Ban(context.Background(), r.p, flooder, 1000*time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	if b.Ban.Timeout != r.p.Ban.MaxDuration.Duration || !strings.HasSuffix(b.Ban.Reason, rules.CappedNote) {
		t.Fatalf("ban %+v, want capped at %s", b.Ban, r.p.Ban.MaxDuration)
	}
}

func TestMemoryStatus(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.run(capSingle)
	st, err := r.engine("").Status(ctx, r.p)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Bans) != 1 || st.Bans[0].Prefix != flooder || len(st.Missing) != 0 || st.Stored != 1 || len(st.Absent) != 0 {
		t.Fatalf("status %+v", st)
	}
	r.k.OutsideFlush()
	st, err = r.engine("").Status(ctx, r.p)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Bans) != 0 || len(st.Missing) == 0 || len(st.Absent) != 1 || st.Absent[0] != flooder || len(st.Notes) == 0 {
		t.Fatalf("status after a flush %+v", st)
	}
	if !strings.HasSuffix(r.opened[len(r.opened)-1], "read-only") {
		t.Errorf("status opened %v, want read-only", r.opened)
	}
}

// Read-only commands change nothing: plan, status, explain on a host with
// no state directory write none and leave the kernel alone.
func TestMemoryReadOnlyCommandsWriteNothing(t *testing.T) {
	r := newRig(t)
	r.dir = filepath.Join(t.TempDir(), "state")
	ctx := context.Background()
	e := r.engine(capSingle)
	g := r.k.Generation()
	d, choice, err := e.Plan(ctx, r.p, r.clock.Now())
	if err != nil || choice.Name != memory.Name || len(d.Ruleset.Bans) != 1 {
		t.Fatalf("plan: %v %+v %v", d, choice, err)
	}
	if _, err := e.Status(ctx, r.p); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Explain(ctx, r.p, flooder, r.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a read-only command made the state directory: %v", err)
	}
	if r.k.Generation() != g || r.k.Present() {
		t.Fatal("a read-only command changed the kernel")
	}
	for _, o := range r.opened {
		if !strings.HasSuffix(o, "read-only") {
			t.Errorf("opened %q, want read-only", o)
		}
	}
}

// The read-only handle refuses changes as backends.Open's does.
func TestMemoryReadOnlyHandleRefuses(t *testing.T) {
	r := newRig(t)
	b, _, err := r.engine("").open(context.Background(), "auto", backends.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(context.Background(), &rules.Ruleset{}); !errors.Is(err, backends.ErrReadOnly) {
		t.Errorf("Apply: %v, want ErrReadOnly", err)
	}
	if err := b.Flush(context.Background()); !errors.Is(err, backends.ErrReadOnly) {
		t.Errorf("Flush: %v, want ErrReadOnly", err)
	}
	if _, ok := b.(rules.DropCounter); !ok {
		t.Error("the read-only handle hides the drop counters")
	}
}

// The backend name the engine asks for is the option's, else the policy's.
func TestMemoryBackendName(t *testing.T) {
	r := newRig(t)
	r.p.Backend = "nftables"
	r.run(capQuiet)
	if r.opened[0] != "nftables" {
		t.Fatalf("opened %v, want the policy's nftables", r.opened)
	}
}

// A structure change (the meter switched off) is applied in full and named.
func TestMemoryStructureChange(t *testing.T) {
	r := newRig(t)
	r.p.Meter.Enabled = true
	r.run(capSingle)
	r.p.Meter.Enabled = false
	out := r.run(capQuiet)
	if out.Decision.Unchanged || len(out.Result.Changed) == 0 || out.Result.Created {
		t.Fatalf("run after a policy change: unchanged %v, %+v", out.Decision.Unchanged, out.Result)
	}
	if _, ok := r.kernel()[flooder]; !ok {
		t.Fatal("ban lost on a structure change")
	}
}

// Bans left out of the ruleset (max_entries) must be retried: no applied
// record, so the next run reconciles in full.
func TestMemoryOmittedBansDefeatShortcut(t *testing.T) {
	r := newRig(t)
	r.p.Ban.MaxEntries = 1
	e := r.engine("")
	ctx := context.Background()
	for _, s := range []string{"192.0.2.81/32", "192.0.2.82/32"} {
		if _, err := e.Ban(ctx, r.p, netip.MustParsePrefix(s), time.Hour, false); err != nil && !strings.Contains(err.Error(), "max_entries") {
			t.Fatalf("ban %s: %v", s, err)
		}
	}
	out := r.run(capSingle)
	if len(out.Decision.Omitted) == 0 {
		t.Fatalf("nothing omitted with max_entries 1: %v", out.Decision.Ruleset.Bans)
	}
	if a := r.state().Applied; a != nil {
		t.Fatalf("applied record %+v with bans left out", a)
	}
	if out := r.run(capQuiet); out.Decision.Unchanged {
		t.Fatal("a run took the shortcut with bans left out")
	}
}

func TestMemoryLocked(t *testing.T) {
	r := newRig(t)
	s, err := state.Open(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	release, err := s.Lock(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := r.engine(capSingle).Run(context.Background(), r.p, r.clock.Now()); !errors.Is(err, ErrLocked) {
		t.Fatalf("run under another's lock: %v, want ErrLocked", err)
	}
	if r.k.Present() {
		t.Fatal("a locked-out run changed the kernel")
	}
}

func TestMemoryMetricsTextfile(t *testing.T) {
	r := newRig(t)
	r.p.Metrics.Textfile = filepath.Join(t.TempDir(), "synban.prom")
	r.run(capSingle)
	b, err := os.ReadFile(r.p.Metrics.Textfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"synban_", `backend="memory"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
}

// check reads kernel settings where the engine's option says they live,
// not the host's /proc/sys.
func TestMemorySysctlDriftReadsTheEnginesRoot(t *testing.T) {
	r := newRig(t)
	one := 1
	r.p.Sysctl.TCPSyncookies = &one
	settings := r.p.Sysctl.Settings()
	root := t.TempDir()
	s := settings[0]
	path := filepath.Join(root, filepath.FromSlash(strings.ReplaceAll(s.Key, ".", "/")))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("12345\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := New(nil, Options{SysctlRoot: root})
	got := e.SysctlDrift(r.p)
	if len(got) != len(settings) || got[0].Current != "12345" || !got[0].Drift {
		t.Fatalf("drift %+v, want %s read as 12345 from the test's root", got, s.Key)
	}
}

// A bulk ban is one transaction: one generation step, a subject inside
// another of the request banned through it.
func TestMemoryBanAll(t *testing.T) {
	r := newRig(t)
	r.run(capQuiet)
	g := r.k.Generation()
	reqs := []BanRequest{
		{Subject: netip.MustParsePrefix("192.0.2.0/24"), Where: "list:1"},
		{Subject: netip.MustParsePrefix("192.0.2.9/32"), Where: "list:2"},
		{Subject: netip.MustParsePrefix("2001:db8:9::/48"), Where: "list:3"},
	}
	out, err := r.engine("").BanAll(context.Background(), r.p, reqs, time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Bans) != 2 || out.Covered != 1 || r.k.Generation() != g+1 {
		t.Fatalf("bulk ban %+v, generation %d→%d; want 2 bans, 1 covered, one step", out, g, r.k.Generation())
	}
	if len(r.kernel()) != 2 || len(r.state().Bans) != 2 {
		t.Fatalf("kernel %v, stored %v", r.kernel(), r.state().Bans)
	}
}

// A manual ban is kept by the runs after it and restored after a flush
// with its forced flag.
func TestMemoryManualBanSurvivesRunsAndFlush(t *testing.T) {
	r := newRig(t)
	e := r.engine("")
	broad := netip.MustParsePrefix("10.16.0.0/12")
	if _, err := e.Ban(context.Background(), r.p, broad, time.Hour, true); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(time.Minute)
	if out := r.run(capQuiet); out.Result.Added != 0 {
		t.Fatalf("a quiet run after the ban re-added %d", out.Result.Added)
	}
	r.k.OutsideFlush()
	r.clock.Advance(time.Minute)
	r.run(capQuiet)
	ab, ok := r.kernel()[broad]
	if !ok || ab.Expires != time.Hour-2*time.Minute {
		t.Fatalf("forced ban after a flush: %+v %v, want restored with 58m left", ab, ok)
	}
}

// KernelBans reads what top shows of the kernel: bans, their time left and
// each element's drop counter.
func TestMemoryKernelBans(t *testing.T) {
	r := newRig(t)
	r.run(capSingle)
	r.k.Drop(flooder, 42)
	r.clock.Advance(time.Minute)
	kb, err := r.engine("").KernelBans(context.Background(), r.p)
	if err != nil {
		t.Fatal(err)
	}
	if len(kb.Bans) != 1 || kb.Bans[0].Expires != r.p.Ban.Duration.Duration-time.Minute || kb.Drops[flooder] != 42 || kb.Choice.Name != memory.Name {
		t.Fatalf("kernel bans %+v", kb)
	}
	if len(kb.Counters) == 0 || kb.Counters[0].Packets != 42 {
		t.Errorf("rule counters %+v, want ban_v4 at 42", kb.Counters)
	}
}

// After an unban, the next run does not put the ban back, but the source's
// history still counts: flooding again after the unban escalates.
func TestMemoryUnbanThenRunKeepsHistory(t *testing.T) {
	r := newRig(t)
	base := r.p.Ban.Duration.Duration
	r.run(capSingle)
	if _, _, err := r.engine("").Unban(context.Background(), r.p, []netip.Prefix{flooder}); err != nil {
		t.Fatal(err)
	}
	if out := r.run(capQuiet); out.Decision.Restored != 0 || len(r.kernel()) != 0 {
		t.Fatalf("a run after unban restored %d: %v", out.Decision.Restored, r.kernel())
	}
	r.clock.Advance(time.Minute)
	out := r.run(capSingle)
	if len(out.Decision.Report.Verdicts) != 1 || out.Decision.Report.Verdicts[0].BanFor != 2*base {
		t.Fatalf("flood after unban: %v, want one verdict escalated to %s", out.Decision.Report.Verdicts, 2*base)
	}
}
