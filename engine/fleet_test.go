package engine

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/trust"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/state"
)

func secretFile(t *testing.T, text string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFleetReadSecret: a 0600 secret is read and trimmed; one readable by
// group or others, a missing, empty or multi-line one is bad input, the
// mode refusal naming the file, its mode and chmod 600.
func TestFleetReadSecret(t *testing.T) {
	got, err := ReadSecret("crowdsec.password_file", secretFile(t, "  s3cret\n", 0o600))
	if err != nil || got != "s3cret" {
		t.Fatalf("ReadSecret = %q, %v", got, err)
	}
	for _, perm := range []os.FileMode{0o640, 0o604, 0o644} {
		path := secretFile(t, "s3cret", perm)
		_, err := ReadSecret("crowdsec.password_file", path)
		var ie *InputError
		var te *trust.Error
		if !errors.As(err, &ie) || !errors.As(err, &te) {
			t.Fatalf("mode %04o: error %v is not bad input from trust", perm, err)
		}
		for _, want := range []string{"crowdsec.password_file", path, "chmod 600 " + path} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("mode %04o: %q does not name %q", perm, err, want)
			}
		}
	}
	for name, path := range map[string]string{
		"missing":   filepath.Join(t.TempDir(), "nope"),
		"empty":     secretFile(t, " \n", 0o600),
		"two lines": secretFile(t, "a\nb\n", 0o600),
	} {
		var ie *InputError
		if _, err := ReadSecret("crowdsec.bouncer_key_file", path); !errors.As(err, &ie) {
			t.Errorf("%s: error %v is not bad input", name, err)
		}
	}
}

// TestFleetPulledReconcile: after a successful pull, stored pulled bans are
// not restored (the pull says which hold); the pulled verdicts go through
// Compile's guard; a stored pulled ban the LAPI no longer lists is
// withdrawn; markPulled marks the enforced pulled bans with their origin
// but leaves synban's own bans of the same prefix local.
func TestFleetPulledReconcile(t *testing.T) {
	now := time.Now()
	p := quietPolicy()
	p.Allow.Addresses = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}
	g := p.Guard(nil)
	pfx := netip.MustParsePrefix
	st := &state.State{Version: state.Version, Bans: []state.Ban{
		{Prefix: pfx("198.51.100.7/32"), Since: now, Until: now.Add(time.Hour), Reason: "syn-flood", Rule: "syn-flood"},
		{Prefix: pfx("203.0.113.9/32"), Since: now, Until: now.Add(time.Hour), Reason: "crowdsec:cscli x", Origin: "crowdsec:cscli"},
		{Prefix: pfx("203.0.113.10/32"), Since: now, Until: now.Add(time.Hour), Reason: "crowdsec:cscli x", Origin: "crowdsec:cscli"},
	}}
	f := &fleet{log: slog.New(slog.DiscardHandler), pullOK: true, pulled: map[netip.Prefix]string{
		pfx("203.0.113.10/32"): "crowdsec:cscli",
		pfx("198.51.100.7/32"): "crowdsec:crowdsec",
		pfx("2001:db8:5::/48"): "crowdsec:CAPI",
		pfx("192.0.2.1/32"):    "crowdsec:cscli",
	}}
	ds := f.decideState(st)
	if len(ds.Bans) != 1 || ds.Bans[0].Origin != "" {
		t.Fatalf("decideState kept %+v, want only the local ban", ds.Bans)
	}
	if (&fleet{pullOK: false}).decideState(st) != st {
		t.Fatal("after a failed pull the stored pulled bans must stay")
	}
	restored := storedVerdicts(ds, now)
	rs, om, err := rules.Compile(p, Offences(restored), g)
	if err != nil {
		t.Fatal(err)
	}
	d := &Decision{Policy: p, Guard: g, Ruleset: rs, Omitted: om}
	var pulled []detect.Verdict
	for q, o := range f.pulled {
		pulled = append(pulled, detect.Verdict{Subject: q, BanFor: 30 * time.Minute, Sources: 1, Reason: o + " test"})
	}
	if err := f.join(d, st, now, pulled); err != nil {
		t.Fatal(err)
	}
	in := map[netip.Prefix]bool{}
	for _, b := range d.Ruleset.Bans {
		in[b.Prefix] = true
	}
	for _, want := range []string{"198.51.100.7/32", "203.0.113.10/32", "2001:db8:5::/48"} {
		if !in[pfx(want)] {
			t.Errorf("ruleset lacks %s: %+v", want, d.Ruleset.Bans)
		}
	}
	if in[pfx("192.0.2.1/32")] {
		t.Error("a pulled decision for an allowed address passed the guard")
	}
	if len(f.withdrawn) != 1 || f.withdrawn[0] != pfx("203.0.113.9/32") {
		t.Fatalf("withdrawn = %v, want [203.0.113.9/32]", f.withdrawn)
	}
	after := &state.State{Version: state.Version, Bans: append([]state.Ban(nil), st.Bans...)}
	recordBans(after, d, "nftables", now, nil)
	f.markPulled(after, f.localOf(st, now), d)
	origin := map[netip.Prefix]string{}
	for _, b := range after.Bans {
		origin[b.Prefix] = b.Origin
	}
	if _, ok := origin[pfx("203.0.113.9/32")]; ok {
		t.Error("the withdrawn ban stayed in the store")
	}
	for q, want := range map[string]string{"198.51.100.7/32": "", "203.0.113.10/32": "crowdsec:cscli", "2001:db8:5::/48": "crowdsec:CAPI"} {
		if got, ok := origin[pfx(q)]; !ok || got != want {
			t.Errorf("%s: origin %q (stored %v), want %q", q, got, ok, want)
		}
	}
	if f.rep.Pulled != 2 {
		t.Errorf("Pulled = %d, want 2", f.rep.Pulled)
	}
}
