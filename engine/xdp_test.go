package engine

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
)

// TestXDPBans: the backend's active bans become map entries with absolute
// expiries, canonical (IPv4-mapped as IPv4), once each; a ban the guard
// protects (the allow list here) never reaches the map and is logged as
// the error it is; beyond ban.max_entries per family the rest are left to
// the firewall table, with a warning.
func TestXDPBans(t *testing.T) {
	p, err := policy.Parse("x.toml", []byte("[allow]\nhost = false\naddresses = [\"192.0.2.0/24\"]\n[ban]\nmax_entries = 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	e := New(slog.New(slog.NewTextHandler(&logs, nil)), Options{})
	now := time.Unix(1_000_000, 0)
	ab := func(p string, left time.Duration) rules.ActiveBan {
		return rules.ActiveBan{Ban: rules.Ban{Prefix: netip.MustParsePrefix(p)}, Expires: left}
	}
	got, err := e.xdpBans(p, []rules.ActiveBan{
		ab("198.51.100.7/32", time.Minute),
		ab("::ffff:198.51.100.7/128", time.Minute), // the same, mapped
		ab("192.0.2.9/32", time.Minute),            // allowed: must not happen, asserted
		ab("2001:db8::/32", 0),                     // never expires
		ab("203.0.113.0/24", time.Hour),
		ab("203.0.114.0/24", time.Hour), // the third IPv4 entry: over max_entries
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.7/32 " + now.Add(time.Minute).String(), "2001:db8::/32 never", "203.0.113.0/24 " + now.Add(time.Hour).String()}
	var have []string
	for _, b := range got {
		exp := "never"
		if !b.Expires.IsZero() {
			exp = b.Expires.String()
		}
		have = append(have, b.Prefix.String()+" "+exp)
	}
	if strings.Join(have, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries\n%s\nwant\n%s", strings.Join(have, "\n"), strings.Join(want, "\n"))
	}
	for _, w := range []string{"level=ERROR msg=\"a ban in the firewall touches a protected address", "subject=192.0.2.9/32", "level=WARN msg=\"more bans than the XDP maps hold", "left_out=1"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("logs lack %q:\n%s", w, logs.String())
		}
	}
}
