package crowdsec_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/crowdsec"
	"github.com/synban/synban/internal/lapitest"
	"github.com/synban/synban/internal/netnstest"
)

// env is a real LAPI, one host namespace attached to it, and a client that
// talks to it from that namespace.
type env struct {
	lapi *lapitest.LAPI
	host *netnstest.NS
	link lapitest.Link
	log  *netnstest.LogBuffer
	c    *crowdsec.Client
}

func setup(t *testing.T, overIPv6 bool) *env {
	t.Helper()
	l := lapitest.Start(t)
	host := netnstest.New(t, "cshost")
	e := &env{lapi: l, host: host, link: l.Attach(t, host), log: &netnstest.LogBuffer{}}
	url := e.link.URL4
	if overIPv6 {
		url = e.link.URL6
	}
	e.c = e.client(t, crowdsec.Config{URL: url})
	return e
}

// client makes a client from cfg, completed with the LAPI's credentials
// where cfg leaves them empty, reaching the LAPI from the host namespace.
func (e *env) client(t *testing.T, cfg crowdsec.Config) *crowdsec.Client {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = e.link.URL4
	}
	if cfg.MachineID == "" {
		cfg.MachineID, cfg.Password = e.lapi.MachineID, e.lapi.Password
	}
	if cfg.BouncerKey == "" {
		cfg.BouncerKey = e.lapi.BouncerKey
	}
	cfg.HTTPClient = lapitest.HTTPClient(e.host)
	cfg.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := crowdsec.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// noSecrets fails when a secret shows up in text (an error or the log).
func (e *env) noSecrets(t *testing.T, what, text string, extra ...string) {
	t.Helper()
	for _, s := range append([]string{e.lapi.Password, e.lapi.BouncerKey}, extra...) {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s contains a secret: %s", what, text)
		}
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

var (
	v4   = netip.MustParsePrefix("192.0.2.7/32")
	r4   = netip.MustParsePrefix("198.51.100.0/24")
	v6   = netip.MustParsePrefix("2001:db8::7/128")
	r6   = netip.MustParsePrefix("2001:db8:99::/48")
	bans = []crowdsec.Ban{
		{Prefix: v4, Duration: time.Hour, Scenario: "synban/syn-flood", Message: "812 half-open connections", Events: 812},
		{Prefix: r4, Duration: 30 * time.Minute, Scenario: "synban/syn-flood-prefix", Message: "9 sources in 198.51.100.0/24", Events: 9},
		{Prefix: v6, Duration: 2 * time.Hour, Scenario: "synban/syn-flood", Message: "400 half-open connections", Events: 400},
		{Prefix: r6, Duration: 45 * time.Minute, Scenario: "synban/conn-flood", Message: "30 sources", Events: 30},
	}
)

// cscliDecision finds value's decision in the LAPI's own listing.
func cscliDecision(t *testing.T, l *lapitest.LAPI, value string) (lapitest.CscliDecision, bool) {
	t.Helper()
	ds, err := l.Decisions()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Value == value {
			return d, true
		}
	}
	return lapitest.CscliDecision{}, false
}

// within reports whether got is in (want-slack, want].
func within(got, want, slack time.Duration) bool { return got <= want && got > want-slack }

// The whole machine and bouncer cycle against a real LAPI: push Ip and
// Range bans for IPv4 and IPv6, see them in cscli with origin synban, pull
// them as prefixes, delete one (and only synban's decision on it), and see
// the deletion in the next delta pull — once: the LAPI moves the bouncer's
// cursor when it answers, which is why cron runs pull startup=true.
func TestLAPIPushListStreamDelete(t *testing.T) {
	e := setup(t, false)
	if err := e.c.Health(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Login(ctx(t)); err != nil {
		t.Fatal(err)
	}
	ids, err := e.c.PushBans(ctx(t), bans)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(bans) {
		t.Fatalf("pushed %d alerts, LAPI created %v", len(bans), ids)
	}

	// The LAPI's own view, through cscli.
	for _, b := range bans {
		scope, value, _ := crowdsec.ScopeValue(b.Prefix)
		d, ok := cscliDecision(t, e.lapi, value)
		if !ok {
			t.Fatalf("cscli decisions list lacks %s", value)
		}
		dur, err := time.ParseDuration(d.Duration)
		if err != nil {
			t.Fatalf("cscli duration %q: %v", d.Duration, err)
		}
		if d.Origin != "synban" || d.Scope != scope || d.Type != "ban" || d.Scenario != b.Scenario || !within(dur, b.Duration, time.Minute) {
			t.Errorf("cscli shows %+v for %s, want origin synban, scope %s, scenario %s, about %s", d, value, scope, b.Scenario, b.Duration)
		}
	}

	// The bouncer's view: prefixes and remaining durations.
	s, err := e.c.Stream(ctx(t), crowdsec.StreamOptions{Startup: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Skipped != 0 || len(s.Deleted) != 0 {
		t.Fatalf("startup stream: %d skipped %v, %d deleted", s.Skipped, s.SkippedExamples, len(s.Deleted))
	}
	want, _ := crowdsec.Desired(s)
	if len(want) != len(bans) {
		t.Fatalf("desired %v, want %d bans", want, len(bans))
	}
	got := map[netip.Prefix]crowdsec.Want{}
	for _, w := range want {
		got[w.Prefix] = w
	}
	for _, b := range bans {
		w, ok := got[b.Prefix]
		if !ok || w.Origin != "synban" || w.Scenario != b.Scenario || !within(w.Remaining, b.Duration, time.Minute) {
			t.Errorf("stream has %+v for %s, want origin synban, scenario %s, about %s", w, b.Prefix, b.Scenario, b.Duration)
		}
	}

	// Someone else's decision on the same address survives synban's delete.
	if _, err := e.lapi.Cscli("decisions", "add", "-i", v4.Addr().String(), "-d", "3h"); err != nil {
		t.Fatal(err)
	}
	// Take the delta cursor past the additions so far.
	if _, err := e.c.Stream(ctx(t), crowdsec.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	n, err := e.c.DeleteDecisions(ctx(t), v4)
	if err != nil || n != 1 {
		t.Fatalf("delete %s: %d, %v; want 1 deleted", v4, n, err)
	}
	n, err = e.c.DeleteDecisions(ctx(t), r6)
	if err != nil || n != 1 {
		t.Fatalf("delete %s: %d, %v; want 1 deleted", r6, n, err)
	}
	if d, ok := cscliDecision(t, e.lapi, v4.Addr().String()); !ok || d.Origin != "cscli" {
		t.Fatalf("after deleting synban's decision, cscli shows %+v (present %v), want only the cscli one", d, ok)
	}
	if d, ok := cscliDecision(t, e.lapi, r6.String()); ok {
		t.Fatalf("deleted range still listed: %+v", d)
	}

	delta, err := e.c.Stream(ctx(t), crowdsec.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deleted := map[netip.Prefix]time.Duration{}
	for _, d := range delta.Deleted {
		deleted[d.Prefix] = d.Duration
	}
	if d, ok := deleted[r6]; !ok || d > 0 {
		t.Errorf("delta after delete: deleted %v lacks %s with a negative duration", delta.Deleted, r6)
	}
	// The address stays banned by cscli's decision, so it is not deleted
	// for the bouncer.
	if _, ok := deleted[v4]; ok {
		t.Errorf("delta after delete lists %s as deleted although cscli's decision remains: %v", v4, delta.Deleted)
	}

	// The delta cursor moves when the LAPI answers: a decision a delta
	// returned once is not returned again, applied or not. (1.4.6 does repeat
	// recent deletions for a short overlap, but never new decisions.)
	late := netip.MustParsePrefix("203.0.113.77/32")
	if _, err := e.c.PushBans(ctx(t), []crowdsec.Ban{{Prefix: late, Duration: time.Hour, Scenario: "synban/syn-flood"}}); err != nil {
		t.Fatal(err)
	}
	d1, err := e.c.Stream(ctx(t), crowdsec.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d1.New) != 1 || d1.New[0].Prefix != late {
		t.Fatalf("delta after a push: new %v, want only %s", d1.New, late)
	}
	d2, err := e.c.Stream(ctx(t), crowdsec.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d2.New) != 0 {
		t.Errorf("a second delta repeated new decisions: %v", d2.New)
	}
	if n, err := e.c.DeleteDecisions(ctx(t), late); err != nil || n != 1 {
		t.Fatalf("delete %s: %d, %v", late, n, err)
	}
	// The full stream is the truth: the deleted ones are simply absent.
	s, err = e.c.Stream(ctx(t), crowdsec.StreamOptions{Startup: true, Origins: []string{"synban"}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ = crowdsec.Desired(s)
	if fmt.Sprint(prefixes(want)) != fmt.Sprint([]netip.Prefix{r4, v6}) {
		t.Errorf("full stream after deletes: %v, want [%s %s]", prefixes(want), r4, v6)
	}
	e.noSecrets(t, "log", e.log.String(), crowdsec.TokenForTest(e.c))
}

func prefixes(ws []crowdsec.Want) []netip.Prefix {
	var ps []netip.Prefix
	for _, w := range ws {
		ps = append(ps, w.Prefix)
	}
	return ps
}

// The stream's filters are applied by the LAPI: origins, scopes and
// scenarios_containing; and delete by id works. Over IPv6 transport.
func TestLAPIStreamFilters(t *testing.T) {
	e := setup(t, true)
	if _, err := e.c.PushBans(ctx(t), bans); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lapi.Cscli("decisions", "add", "-i", "203.0.113.5", "-d", "1h"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lapi.Cscli("decisions", "add", "-r", "203.0.113.128/25", "-d", "1h"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    crowdsec.StreamOptions
		want []string
	}{
		{"all", crowdsec.StreamOptions{}, []string{"192.0.2.7/32", "198.51.100.0/24", "203.0.113.5/32", "203.0.113.128/25", "2001:db8::7/128", "2001:db8:99::/48"}},
		{"origins synban", crowdsec.StreamOptions{Origins: []string{"synban"}}, []string{"192.0.2.7/32", "198.51.100.0/24", "2001:db8::7/128", "2001:db8:99::/48"}},
		{"origins cscli", crowdsec.StreamOptions{Origins: []string{"cscli"}}, []string{"203.0.113.5/32", "203.0.113.128/25"}},
		{"origins both", crowdsec.StreamOptions{Origins: []string{"cscli", "synban"}}, []string{"192.0.2.7/32", "198.51.100.0/24", "203.0.113.5/32", "203.0.113.128/25", "2001:db8::7/128", "2001:db8:99::/48"}},
		{"scopes range", crowdsec.StreamOptions{Scopes: []string{"range"}}, []string{"198.51.100.0/24", "203.0.113.128/25", "2001:db8:99::/48"}},
		{"scenarios containing prefix", crowdsec.StreamOptions{ScenariosContaining: []string{"flood-prefix"}}, []string{"198.51.100.0/24"}},
		{"scenarios containing conn,prefix", crowdsec.StreamOptions{ScenariosContaining: []string{"conn-flood", "flood-prefix"}}, []string{"198.51.100.0/24", "2001:db8:99::/48"}},
	} {
		tc.o.Startup = true
		s, err := e.c.Stream(ctx(t), tc.o)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		w, _ := crowdsec.Desired(s)
		if got := fmt.Sprint(prefixes(w)); got != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %s, want %v", tc.name, got, tc.want)
		}
	}
	// Delete by id.
	s, err := e.c.Stream(ctx(t), crowdsec.StreamOptions{Startup: true, Origins: []string{"synban"}, Scopes: []string{"ip"}})
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	for _, d := range s.New {
		if d.Prefix == v6 {
			id = d.ID
		}
	}
	if id == 0 {
		t.Fatalf("no decision for %s in %+v", v6, s.New)
	}
	if n, err := e.c.DeleteDecision(ctx(t), id); err != nil || n != 1 {
		t.Fatalf("delete id %d: %d, %v", id, n, err)
	}
	if d, ok := cscliDecision(t, e.lapi, v6.Addr().String()); ok {
		t.Fatalf("decision %d deleted by id still listed: %+v", id, d)
	}
}

// A token the LAPI refuses is renewed once and the call retried: first a
// corrupted token, then a real one made stale by a LAPI restart (1.4.6 signs
// with a key made at start).
func TestLAPITokenRenewedOn401(t *testing.T) {
	e := setup(t, false)
	if err := e.c.Login(ctx(t)); err != nil {
		t.Fatal(err)
	}
	first := crowdsec.TokenForTest(e.c)
	crowdsec.SetTokenForTest(e.c, first[:len(first)-4]+"AAAA")
	if _, err := e.c.PushBans(ctx(t), bans[:1]); err != nil {
		t.Fatalf("push with a corrupted token: %v", err)
	}
	if got := strings.Count(e.log.String(), "logging in again"); got != 1 {
		t.Fatalf("%d renewals logged, want 1:\n%s", got, e.log.String())
	}
	if _, ok := cscliDecision(t, e.lapi, v4.Addr().String()); !ok {
		t.Fatal("the retried push did not reach the LAPI")
	}
	second := crowdsec.TokenForTest(e.c)
	if second == first[:len(first)-4]+"AAAA" || second == "" {
		t.Fatal("token not renewed")
	}

	e.lapi.Restart()
	if n, err := e.c.DeleteDecisions(ctx(t), v4); err != nil || n != 1 {
		t.Fatalf("delete after a LAPI restart: %d, %v", n, err)
	}
	if got := strings.Count(e.log.String(), "logging in again"); got != 2 {
		t.Fatalf("%d renewals logged, want 2:\n%s", got, e.log.String())
	}
	e.noSecrets(t, "log", e.log.String(), first, second, crowdsec.TokenForTest(e.c))
}

// Bad credentials give typed 401/403 errors naming the endpoint, with the
// server's message and no secret; a wrong machine password is not retried
// in a loop.
func TestLAPIBadCredentials(t *testing.T) {
	e := setup(t, false)
	bad := e.client(t, crowdsec.Config{MachineID: e.lapi.MachineID, Password: "wrong-password-1234", BouncerKey: "wrong-key-5678"})
	err := bad.Login(ctx(t))
	var ae *crowdsec.APIError
	if !errors.As(err, &ae) || !ae.Unauthorized() || ae.Endpoint != "/v1/watchers/login" || ae.Status != 401 {
		t.Fatalf("login with a wrong password: %v, want a 401 APIError on /v1/watchers/login", err)
	}
	if !strings.Contains(err.Error(), "incorrect Username or Password") {
		t.Errorf("error lacks the server's message: %v", err)
	}
	_, err = bad.PushBans(ctx(t), bans[:1])
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("push with a wrong password: %v, want 401", err)
	}
	_, err = bad.Stream(ctx(t), crowdsec.StreamOptions{Startup: true})
	if !errors.As(err, &ae) || !ae.Unauthorized() || ae.Endpoint != "/v1/decisions/stream" {
		t.Fatalf("stream with a wrong key: %v, want 401/403 on /v1/decisions/stream", err)
	}
	for _, s := range []string{"wrong-password-1234", "wrong-key-5678"} {
		if strings.Contains(err.Error(), s) || strings.Contains(e.log.String(), s) {
			t.Errorf("secret %q in error or log: %v\n%s", s, err, e.log.String())
		}
	}
	if strings.Contains(e.log.String(), "logging in again") {
		t.Errorf("a refused login was retried:\n%s", e.log.String())
	}
}

// A stopped LAPI gives a typed error at once (connection refused), a hung
// one (SIGSTOP: the kernel accepts, nothing answers) a typed deadline error
// when the client's timeout passes — never a hang.
func TestLAPIStoppedOrHung(t *testing.T) {
	e := setup(t, false)
	c := e.client(t, crowdsec.Config{Timeout: time.Second})
	if err := c.Health(ctx(t)); err != nil {
		t.Fatal(err)
	}

	e.lapi.Pause()
	start := time.Now()
	_, err := c.PushBans(ctx(t), bans[:1])
	took := time.Since(start)
	e.lapi.Resume()
	var re *crowdsec.RequestError
	if !errors.As(err, &re) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("push to a hung LAPI: %v (%T), want a RequestError with context.DeadlineExceeded", err, err)
	}
	if re.Endpoint != "/v1/watchers/login" && re.Endpoint != "/v1/alerts" {
		t.Errorf("error names endpoint %q", re.Endpoint)
	}
	if took > 10*time.Second {
		t.Errorf("push to a hung LAPI returned after %s with a 1s timeout", took)
	}

	e.lapi.Stop()
	for _, f := range []func() error{
		func() error { return c.Health(ctx(t)) },
		func() error { _, err := c.Stream(ctx(t), crowdsec.StreamOptions{Startup: true}); return err },
		func() error { _, err := c.DeleteDecisions(ctx(t), v4); return err },
	} {
		err := f()
		if !errors.As(err, &re) || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("call to a stopped LAPI: %v, want a RequestError with ECONNREFUSED", err)
		}
		e.noSecrets(t, "error", fmt.Sprint(err))
	}
}

// A response beyond MaxResponseBytes is refused with ErrResponseTooLarge.
func TestLAPIResponseLimit(t *testing.T) {
	e := setup(t, false)
	if _, err := e.c.PushBans(ctx(t), bans); err != nil {
		t.Fatal(err)
	}
	small := e.client(t, crowdsec.Config{MaxResponseBytes: 200})
	_, err := small.Stream(ctx(t), crowdsec.StreamOptions{Startup: true})
	var re *crowdsec.RequestError
	if !errors.As(err, &re) || !errors.Is(err, crowdsec.ErrResponseTooLarge) || re.Endpoint != "/v1/decisions/stream" {
		t.Fatalf("stream over the limit: %v, want a RequestError on /v1/decisions/stream with ErrResponseTooLarge", err)
	}
	// The same stream fits a normal limit.
	if s, err := e.c.Stream(ctx(t), crowdsec.StreamOptions{Startup: true}); err != nil || len(s.New) != len(bans) {
		t.Fatalf("stream: %v, %v", s, err)
	}
}
