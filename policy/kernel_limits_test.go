package policy

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestKernelLimits checks that validation stops each value the kernel or
// nft would refuse (or silently misread) exactly at its limit, naming the
// key and the limit, and accepts the limit itself.
func TestKernelLimits(t *testing.T) {
	over := MaxTimeout + time.Second
	tests := []struct {
		name string
		set  func(p *Policy)
		want string // "" to accept
	}{
		{"ban.duration at the limit", func(p *Policy) {
			p.Ban.Duration.Duration, p.Ban.MaxDuration.Duration = MaxTimeout, MaxTimeout
		}, ""},
		{"ban.duration over", func(p *Policy) {
			p.Ban.Duration.Duration, p.Ban.MaxDuration.Duration = over, over
		}, "ban.duration: must be <= 27777h46m39s (99999999s, the longest timeout nft accepts), got 27777h46m40s"},
		{"ban.max_duration over", func(p *Policy) { p.Ban.MaxDuration.Duration = over },
			"ban.max_duration: must be <= 27777h46m39s"},
		{"rule ban_for over", func(p *Policy) {
			p.Ban.MaxDuration.Duration = MaxTimeout
			p.Rules[0].BanFor.Duration = over
		}, "rule[0].ban_for: must be <= 27777h46m39s"},
		{"meter.idle_timeout at the limit", func(p *Policy) { p.Meter.IdleTimeout.Duration = MaxTimeout }, ""},
		{"meter.idle_timeout over", func(p *Policy) { p.Meter.IdleTimeout.Duration = over },
			"meter.idle_timeout: must be <= 27777h46m39s"},
		{"meter.burst at the limit", func(p *Policy) { p.Meter.Burst = MaxMeterBurst }, ""},
		{"meter.burst over", func(p *Policy) { p.Meter.Burst = MaxMeterBurst + 1 },
			"meter.burst: must be <= 4294967295 (the kernel keeps the burst in 32 bits), got 4294967296"},
		{"connlimit.max at the limit", func(p *Policy) { p.ConnLimit.Max = MaxConnLimit }, ""},
		{"connlimit.max over", func(p *Policy) { p.ConnLimit.Max = MaxConnLimit + 1 },
			"connlimit.max: must be <= 4294967295 (the kernel keeps the count in 32 bits), got 4294967296"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Default()
			tt.set(p)
			err := p.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestMinBanLength checks the minimum ban prefix lengths: their range, that
// prefix aggregation may not be broader, and MinLength per family.
func TestMinBanLength(t *testing.T) {
	p := Default()
	if p.Ban.MinIPv4Length != 16 || p.Ban.MinIPv6Length != 32 {
		t.Fatalf("defaults = /%d, /%d, want /16, /32", p.Ban.MinIPv4Length, p.Ban.MinIPv6Length)
	}
	for _, tc := range []struct {
		addr, key string
		bits      int
	}{
		{"192.0.2.1", "ban.min_ipv4_length", 16},
		{"::ffff:192.0.2.1", "ban.min_ipv4_length", 16},
		{"2001:db8::1", "ban.min_ipv6_length", 32},
	} {
		bits, key := p.Ban.MinLength(mustAddr(t, tc.addr))
		if bits != tc.bits || key != tc.key {
			t.Errorf("MinLength(%s) = %d, %q, want %d, %q", tc.addr, bits, key, tc.bits, tc.key)
		}
	}
	for _, tc := range []struct {
		text, want string
	}{
		{"[ban]\nmin_ipv4_length = 32\n[prefix]\nipv4_length = 32\n", ""},
		{"[ban]\nmin_ipv4_length = 1\nmin_ipv6_length = 1\n[prefix]\nipv4_length = 8\nipv6_length = 16\n", ""},
		{"[ban]\nmin_ipv4_length = 33\n", "t.toml:2: ban.min_ipv4_length: must be in 1..32, got 33"},
		{"[ban]\nmin_ipv6_length = 0\n", "t.toml:2: ban.min_ipv6_length: must be in 1..128, got 0"},
		{"[ban]\nmin_ipv4_length = 25\n", "t.toml:2: ban.min_ipv4_length: must be <= prefix.ipv4_length (24, the default), got 25"},
		{"[prefix]\nipv4_length = 20\n[ban]\nmin_ipv4_length = 25\n", "t.toml:2: prefix.ipv4_length: must be >= ban.min_ipv4_length (25), got 20"},
		{"[prefix]\nipv6_length = 24\n", "t.toml:2: prefix.ipv6_length: must be >= ban.min_ipv6_length (32, the default), got 24"},
	} {
		_, err := Parse("t.toml", []byte(tc.text))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.text, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want it to contain %q", tc.text, err, tc.want)
		}
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
