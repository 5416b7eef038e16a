package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/policy"
)

func restored(subject string, left time.Duration, reason string) Offence {
	return Offence{Subject: pfx(subject), BanFor: left, Reason: reason, Sources: 1,
		Forced: strings.HasPrefix(reason, ForcedBanReason)}
}

// TestCompileCapsEveryBan checks that every ban, whatever brought it, is
// capped at ban.max_duration, says so in its reason, and is a whole number
// of seconds no longer than policy.MaxTimeout.
func TestCompileCapsEveryBan(t *testing.T) {
	p := testPolicy()
	p.Ban.MaxDuration.Duration = 24 * time.Hour
	until2099 := time.Until(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))
	vs := []Offence{
		verdict("203.0.113.1", 30000*time.Hour),                                                    // a rule's (or escalation's) long ban
		restored("203.0.113.2", until2099, "manual ban"),                                           // a stored ban until 2099
		{Subject: pfx("203.0.113.3"), BanFor: 30000 * time.Hour, Reason: "manual ban", Sources: 1}, // ban --for 30000h
		verdict("203.0.113.4", time.Hour),                                                          // under the cap: untouched
		verdict("203.0.113.5", 1500*time.Millisecond),                                              // rounded up
		verdict("203.0.113.6", 24*time.Hour),                                                       // at the cap: not capped
		restored("203.0.113.7", 48*time.Hour, "manual ban"+CappedNote),                             // capped before: one note
	}
	rs, om, err := Compile(p, vs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(om) != 0 {
		t.Fatalf("omitted %v", om)
	}
	want := map[string]struct {
		d      time.Duration
		reason string
	}{
		"203.0.113.1/32": {24 * time.Hour, "syn-flood: 120 syn_recv >= 50 (capped by ban.max_duration)"},
		"203.0.113.2/32": {24 * time.Hour, "manual ban (capped by ban.max_duration)"},
		"203.0.113.3/32": {24 * time.Hour, "manual ban (capped by ban.max_duration)"},
		"203.0.113.4/32": {time.Hour, "syn-flood: 120 syn_recv >= 50"},
		"203.0.113.5/32": {2 * time.Second, "syn-flood: 120 syn_recv >= 50"},
		"203.0.113.6/32": {24 * time.Hour, "syn-flood: 120 syn_recv >= 50"},
		"203.0.113.7/32": {24 * time.Hour, "manual ban (capped by ban.max_duration)"},
	}
	if len(rs.Bans) != len(want) {
		t.Fatalf("bans = %v, want %d", rs.Bans, len(want))
	}
	for _, b := range rs.Bans {
		w := want[b.Prefix.String()]
		if b.Timeout != w.d || b.Reason != w.reason {
			t.Errorf("%s: %s %q, want %s %q", b.Prefix, b.Timeout, b.Reason, w.d, w.reason)
		}
	}

	// Without max_duration (a policy built in Go) the kernel's limit still holds.
	p.Ban.MaxDuration.Duration = 0
	rs, _, err = Compile(p, vs[:1], nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Bans[0].Timeout; got != policy.MaxTimeout {
		t.Errorf("uncapped policy: timeout %s, want policy.MaxTimeout %s", got, policy.MaxTimeout)
	}
	if strings.Contains(rs.Bans[0].Reason, CappedNote) {
		t.Errorf("reason %q names max_duration, which the policy does not set", rs.Bans[0].Reason)
	}
	// The meter's idle timeout is rounded up to a whole second too.
	p.Meter.IdleTimeout.Duration = 2500 * time.Millisecond
	if rs, _, _ = Compile(p, nil, nil); rs.Meter.Timeout != 3*time.Second {
		t.Errorf("meter timeout %s, want 3s", rs.Meter.Timeout)
	}
}

// TestCompileMergesRestoredSilently checks that a ban restored from the
// state store and the same ban decided again are one ban, with the longer
// timeout and the fresh verdict's reason, and no omission.
func TestCompileMergesRestoredSilently(t *testing.T) {
	for _, tc := range []struct {
		name          string
		fresh, stored time.Duration
		want          time.Duration
	}{
		{"stored longer", 10 * time.Minute, 19*time.Minute + 30*time.Second, 19*time.Minute + 30*time.Second},
		{"fresh longer", 20 * time.Minute, 5 * time.Minute, 20 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := []Offence{
				verdict("10.213.0.2", tc.fresh),
				restored("10.213.0.2", tc.stored, "syn-flood: 900 syn_recv >= 50"),
				verdict("2001:db8::2", tc.fresh),
				restored("2001:db8::2", tc.stored, "restored from state"),
			}
			rs, om, err := Compile(testPolicy(), vs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(om) != 0 {
				t.Errorf("omitted %+v, want nothing: merging is not an omission", om)
			}
			if len(rs.Bans) != 2 {
				t.Fatalf("bans = %v, want 2", rs.Bans)
			}
			for _, b := range rs.Bans {
				if b.Timeout != tc.want || b.Reason != "syn-flood: 120 syn_recv >= 50" {
					t.Errorf("%s: %s %q, want %s and the fresh reason", b.Prefix, b.Timeout, b.Reason, tc.want)
				}
			}
		})
	}
}

// TestCompileMinimumPrefixLength checks that bans broader than the
// policy's minimum prefix length are left out with a reason, automatic or
// restored, that a forced manual ban is kept (also when restored), and
// that a /0 is never banned.
func TestCompileMinimumPrefixLength(t *testing.T) {
	p := testPolicy()
	p.Ban.MinIPv4Length, p.Ban.MinIPv6Length = 16, 32
	p.Ban.MaxDuration.Duration = time.Hour
	vs := []Offence{
		verdict("1.0.0.0/8", time.Minute),
		restored("2000::/3", time.Minute, "manual ban"),
		verdict("10.1.0.0/16", time.Minute),
		verdict("2001:db8::/32", time.Minute),
		restored("5.0.0.0/8", time.Minute, ForcedBanReason),
		restored("6.0.0.0/8", 2*time.Hour, ForcedBanReason),            // forced and capped ...
		restored("7.0.0.0/8", time.Minute, ForcedBanReason+CappedNote), // ... and restored so
		verdict("8.0.0.0/8", time.Minute),                              // the forced reason without the flag: not forced
		restored("0.0.0.0/0", time.Minute, ForcedBanReason),
		restored("::/0", time.Minute, ForcedBanReason),
		restored("::ffff:0:0/96", time.Minute, ForcedBanReason),
	}
	vs[7].Reason = ForcedBanReason
	rs, om, err := Compile(p, vs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(banPrefixes(rs), " "), "5.0.0.0/8 6.0.0.0/8 7.0.0.0/8 10.1.0.0/16 2001:db8::/32"; got != want {
		t.Errorf("bans = %s, want %s", got, want)
	}
	for s, w := range map[string]string{
		"1.0.0.0/8":     "broader than ban.min_ipv4_length /16",
		"2000::/3":      "broader than ban.min_ipv6_length /32",
		"8.0.0.0/8":     "broader than ban.min_ipv4_length /16",
		"0.0.0.0/0":     "a /0 bans every address",
		"::/0":          "a /0 bans every address",
		"::ffff:0:0/96": "a /0 bans every address",
	} {
		if why := whyOf(om, s); why != w {
			t.Errorf("%s: omitted why = %q, want %q", s, why, w)
		}
	}
	if len(om) != 6 {
		t.Errorf("omitted %d verdicts, want 6: %+v", len(om), om)
	}
}
