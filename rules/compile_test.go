package rules

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/policy"
)

// testPolicy builds a policy by hand, with the documented defaults, so these
// tests do not depend on the policy loader.
func testPolicy() *policy.Policy {
	return &policy.Policy{
		Ban: policy.Ban{Duration: policy.Duration{Duration: 10 * time.Minute}, MaxEntries: 65536},
		Meter: policy.Meter{
			Enabled: true, Rate: 20, Burst: 40,
			IdleTimeout: policy.Duration{Duration: time.Minute},
			IPv6Length:  64, Size: 65536,
		},
		ConnLimit: policy.ConnLimit{Max: 100},
		NFTables:  policy.NFTables{Table: "synban", Family: "inet", Hooks: []string{"input"}, Priority: -10},
	}
}

func pfx(s string) netip.Prefix {
	if !strings.Contains(s, "/") {
		a := netip.MustParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen())
	}
	return netip.MustParsePrefix(s)
}

func verdict(subject string, banFor time.Duration) Offence {
	return Offence{
		Subject: pfx(subject), Rule: "syn-flood", State: policy.StateSynRecv,
		Count: 120, Threshold: 50, Sources: 1, BanFor: banFor,
		Reason: "120 syn_recv from " + subject + " >= 50 (rule syn-flood, 1/1 samples)",
	}
}

func banPrefixes(rs *Ruleset) []string {
	var out []string
	for _, b := range rs.Bans {
		out = append(out, b.Prefix.String())
	}
	return out
}

func whyOf(o Omitted, subject string) string {
	for _, m := range o {
		if m.Verdict.Subject == pfx(subject) {
			return m.Why
		}
	}
	return ""
}

func TestCompileNilPolicy(t *testing.T) {
	if _, _, err := Compile(nil, nil, nil); err == nil {
		t.Fatal("Compile(nil policy) returned no error")
	}
}

func TestCompileStructureFromPolicy(t *testing.T) {
	p := testPolicy()
	p.NFTables = policy.NFTables{Table: "guard", Family: "inet", Hooks: []string{"input", "forward"}, Priority: 5}
	p.Ban.MaxEntries = 1000
	p.Meter.Ports = []uint16{443, 80, 443}
	p.Meter.Size = 4096
	p.Meter.IPv6Length = 56
	p.Meter.IdleTimeout.Duration = 90 * time.Second
	p.ConnLimit = policy.ConnLimit{Enabled: true, Max: 30, Ports: []uint16{22}}
	rs, om, err := Compile(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(om) != 0 || len(rs.Bans) != 0 || len(rs.Allow) != 0 {
		t.Fatalf("empty input gave bans %v allow %v omitted %v", rs.Bans, rs.Allow, om)
	}
	if rs.Table != "guard" || rs.Family != "inet" || rs.Priority != 5 || !slices.Equal(rs.Hooks, []string{"input", "forward"}) {
		t.Errorf("table fields: %+v", rs)
	}
	if rs.MaxEntries != 1000 {
		t.Errorf("MaxEntries = %d, want 1000", rs.MaxEntries)
	}
	wantMeter := &Meter{Rate: 20, Burst: 40, Timeout: 90 * time.Second, Ports: []uint16{80, 443}, IPv6Length: 56, Size: 4096}
	if !reflect.DeepEqual(rs.Meter, wantMeter) {
		t.Errorf("Meter = %+v, want %+v", rs.Meter, wantMeter)
	}
	wantConn := &ConnLimit{Max: 30, Ports: []uint16{22}, Size: 4096}
	if !reflect.DeepEqual(rs.ConnLimit, wantConn) {
		t.Errorf("ConnLimit = %+v, want %+v", rs.ConnLimit, wantConn)
	}
	// The ruleset must not alias the policy's slices.
	rs.Hooks[0] = "changed"
	if p.NFTables.Hooks[0] != "input" {
		t.Error("Ruleset.Hooks aliases the policy's slice")
	}

	p.Meter.Enabled = false
	p.Meter.Size = 0
	rs, _, _ = Compile(p, nil, nil)
	if rs.Meter != nil {
		t.Errorf("meter disabled but Meter = %+v", rs.Meter)
	}
	if rs.ConnLimit == nil || rs.ConnLimit.Size != DefaultSetSize {
		t.Errorf("ConnLimit without meter size = %+v, want Size %d", rs.ConnLimit, DefaultSetSize)
	}
	p.ConnLimit.Enabled = false
	if rs, _, _ = Compile(p, nil, nil); rs.ConnLimit != nil {
		t.Errorf("connlimit disabled but ConnLimit = %+v", rs.ConnLimit)
	}
}

func TestCompileGuardEnforcedAgain(t *testing.T) {
	g := policy.NewGuard()
	g.Add(pfx("192.0.2.1/32"), "host address")
	g.Add(pfx("198.51.100.0/28"), "allow list")
	g.Add(pfx("2001:db8::1/128"), "host address")
	vs := []Offence{
		verdict("192.0.2.1", time.Minute),         // the host itself
		verdict("192.0.2.0/24", time.Minute),      // contains the host
		verdict("198.51.100.7", time.Minute),      // inside the allow list
		verdict("::ffff:192.0.2.1", time.Minute),  // the host, IPv4-mapped
		verdict("2001:db8::/64", time.Minute),     // contains the IPv6 host
		verdict("203.0.113.9", time.Minute),       // fine
		verdict("2001:db8:1::1", time.Minute),     // fine
		verdict("198.51.100.16/28", time.Minute),  // next to the allow list, fine
		verdict("198.51.100.0/24", 2*time.Minute), // contains the allow list
	}
	rs, om, err := Compile(testPolicy(), vs, g)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.16/28", "203.0.113.9/32", "2001:db8:1::1/128"}
	if got := banPrefixes(rs); !slices.Equal(got, want) {
		t.Errorf("bans = %v, want %v", got, want)
	}
	for _, s := range []string{"192.0.2.1", "192.0.2.0/24", "198.51.100.7", "::ffff:192.0.2.1", "2001:db8::/64", "198.51.100.0/24"} {
		why := whyOf(om, s)
		if !strings.HasPrefix(why, "protected: ") || !strings.Contains(why, "is protected (") {
			t.Errorf("%s: omitted why = %q, want a protected: reason naming the guard", s, why)
		}
	}
	if len(om) != 6 {
		t.Errorf("omitted %d verdicts, want 6: %+v", len(om), om)
	}
	if got := whyOf(om, "198.51.100.7"); !strings.Contains(got, "198.51.100.0/28") || !strings.Contains(got, "allow list") {
		t.Errorf("allow-list omission = %q, want the prefix and why", got)
	}
	// The allow list is the guard's prefixes.
	wantAllow := []netip.Prefix{pfx("192.0.2.1/32"), pfx("198.51.100.0/28"), pfx("2001:db8::1/128")}
	if !slices.Equal(rs.Allow, wantAllow) {
		t.Errorf("Allow = %v, want %v", rs.Allow, wantAllow)
	}
}

func TestCompileDedupeAndCovering(t *testing.T) {
	vs := []Offence{
		verdict("203.0.113.7", 5*time.Minute),
		verdict("198.51.100.9", 30*time.Minute),    // inside the /24 below; longer timeout
		verdict("198.51.100.0/24", 10*time.Minute), // covers the one above
		verdict("203.0.113.7", 20*time.Minute),     // duplicate with a longer timeout
		verdict("::ffff:203.0.113.7", time.Minute), // the same address, mapped
		verdict("2001:db8:5::/48", time.Minute),
		verdict("2001:db8:5:1::/64", time.Hour), // inside the /48
		verdict("2001:db8:5:1::9", time.Minute), // inside both: the outer cover wins
		verdict("10.0.0.0/8", time.Minute),
		verdict("10.1.0.0/16", time.Minute),
		verdict("10.1.2.3", time.Minute),
		verdict("198.51.101.1", 0), // timeout 0: the policy's ban duration
	}
	rs, om, err := Compile(testPolicy(), vs, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		"10.0.0.0/8":      time.Minute,
		"198.51.100.0/24": 30 * time.Minute,
		"198.51.101.1/32": 10 * time.Minute,
		"203.0.113.7/32":  20 * time.Minute,
		"2001:db8:5::/48": time.Hour,
	}
	got := map[string]time.Duration{}
	for _, b := range rs.Bans {
		got[b.Prefix.String()] = b.Timeout
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("bans = %v, want %v", got, want)
	}
	checks := map[string]string{
		"198.51.100.9":      "covered by 198.51.100.0/24",
		"2001:db8:5:1::/64": "covered by 2001:db8:5::/48",
		"2001:db8:5:1::9":   "covered by 2001:db8:5::/48",
		"10.1.0.0/16":       "covered by 10.0.0.0/8",
		"10.1.2.3":          "covered by 10.0.0.0/8",
	}
	for s, w := range checks {
		if why := whyOf(om, s); !strings.HasPrefix(why, w) {
			t.Errorf("%s: omitted why = %q, want prefix %q", s, why, w)
		}
	}
	// The duplicates of 203.0.113.7 (index 3 and 4) are merged silently
	// into one ban; the real omissions are listed in input order.
	var idx []int
	for _, o := range om {
		idx = append(idx, o.Index)
		if o.Verdict.Subject != vs[o.Index].Subject {
			t.Errorf("omission index %d names %s, want %s", o.Index, o.Verdict.Subject, vs[o.Index].Subject)
		}
	}
	if wantIdx := []int{1, 6, 7, 9, 10}; !slices.Equal(idx, wantIdx) {
		t.Errorf("omitted indices = %v, want %v", idx, wantIdx)
	}
	// Nothing left overlaps, so nft interval sets accept it.
	for i, a := range rs.Bans {
		for _, b := range rs.Bans[i+1:] {
			if a.Prefix.Overlaps(b.Prefix) {
				t.Errorf("bans %s and %s overlap", a.Prefix, b.Prefix)
			}
		}
	}
}

func TestCompileMaxEntriesKeepsWorstFirst(t *testing.T) {
	p := testPolicy()
	p.Ban.MaxEntries = 3
	vs := []Offence{
		verdict("203.0.113.50", time.Minute), // worst
		verdict("2001:db8::50", time.Minute),
		verdict("203.0.113.1", time.Minute),
		verdict("203.0.113.99", time.Minute),
		verdict("2001:db8::1", time.Minute),
		verdict("203.0.113.2", time.Minute), // fourth IPv4: over
		verdict("203.0.113.3", time.Minute), // over
	}
	// A prefix that covers the worst offender inherits its priority: with a
	// cap of 2 it is kept before the other offenders, although it came last.
	p.Ban.MaxEntries = 2
	covering := []Offence{
		verdict("203.0.113.50", time.Minute),
		verdict("198.51.100.1", time.Minute),
		verdict("198.51.100.2", time.Minute),
		verdict("203.0.113.0/24", time.Minute),
	}
	rs, om, err := Compile(p, covering, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.1/32", "203.0.113.0/24"}
	if got := banPrefixes(rs); !slices.Equal(got, want) {
		t.Errorf("bans = %v, want %v", got, want)
	}
	if got := whyOf(om, "198.51.100.2"); got != "over max_entries 2" {
		t.Errorf("198.51.100.2 omitted why = %q, want over max_entries 2", got)
	}
	if got := whyOf(om, "203.0.113.50"); got != "covered by 203.0.113.0/24" {
		t.Errorf("203.0.113.50 omitted why = %q", got)
	}

	// Without the covering prefix, the first three per family are kept.
	p.Ban.MaxEntries = 3
	rs, om, _ = Compile(p, vs, nil)
	want = []string{"203.0.113.1/32", "203.0.113.50/32", "203.0.113.99/32", "2001:db8::1/128", "2001:db8::50/128"}
	if got := banPrefixes(rs); !slices.Equal(got, want) {
		t.Errorf("bans = %v, want %v", got, want)
	}
	if len(om) != 2 {
		t.Fatalf("omitted = %+v, want 2", om)
	}
	for i, s := range []string{"203.0.113.2/32", "203.0.113.3/32"} {
		if om[i].Prefix.String() != s || om[i].Why != "over max_entries 3" {
			t.Errorf("omitted[%d] = %s %q, want %s %q", i, om[i].Prefix, om[i].Why, s, "over max_entries 3")
		}
	}
}

func TestCompileMappedCanonical(t *testing.T) {
	vs := []Offence{verdict("::ffff:203.0.113.7", time.Minute), verdict("::ffff:198.51.100.0/120", time.Minute)}
	g := policy.NewGuard()
	g.Add(pfx("::ffff:192.0.2.1/128"), "host address")
	rs, om, _ := Compile(testPolicy(), vs, g)
	if len(om) != 0 {
		t.Fatalf("omitted %+v", om)
	}
	want := []string{"198.51.100.0/24", "203.0.113.7/32"}
	if got := banPrefixes(rs); !slices.Equal(got, want) {
		t.Errorf("bans = %v, want %v", got, want)
	}
	if got := BanSet(rs.Bans[1].Prefix); got != SetBan4 {
		t.Errorf("BanSet(%s) = %s, want %s", rs.Bans[1].Prefix, got, SetBan4)
	}
	if !slices.Equal(rs.Allow, []netip.Prefix{pfx("192.0.2.1/32")}) {
		t.Errorf("Allow = %v, want 192.0.2.1/32", rs.Allow)
	}
}

func TestCompileInvalidSubjects(t *testing.T) {
	vs := []Offence{
		{Rule: "x", BanFor: time.Minute},
		verdict("::ffff:0:0/80", time.Minute),
		verdict("203.0.113.7", time.Minute),
	}
	rs, om, err := Compile(testPolicy(), vs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := banPrefixes(rs); !slices.Equal(got, []string{"203.0.113.7/32"}) {
		t.Errorf("bans = %v", got)
	}
	if len(om) != 2 || om[0].Index != 0 || om[1].Index != 1 || !strings.HasPrefix(om[0].Why, "invalid subject") || !strings.HasPrefix(om[1].Why, "invalid subject") {
		t.Errorf("omitted = %+v, want the first two as invalid subjects", om)
	}
}

func TestNormalizePrefixes(t *testing.T) {
	in := []netip.Prefix{
		pfx("::1/128"),
		pfx("10.1.0.0/16"),
		pfx("127.0.0.1/32"),
		pfx("10.0.0.0/8"),
		pfx("2001:db8::/32"),
		pfx("2001:db8:1::5/128"),
		pfx("::ffff:192.0.2.1/128"),
		pfx("192.0.2.1/32"),
		pfx("127.0.0.0/8"),
		pfx("10.0.0.0/8"),
		pfx("192.0.2.7/24"), // host bits set: masked, then covers 192.0.2.1
		{},
	}
	want := []netip.Prefix{pfx("10.0.0.0/8"), pfx("127.0.0.0/8"), pfx("192.0.2.0/24"), pfx("::1/128"), pfx("2001:db8::/32")}
	if got := NormalizePrefixes(in); !slices.Equal(got, want) {
		t.Errorf("NormalizePrefixes = %v, want %v", got, want)
	}
	if got := NormalizePrefixes(nil); got != nil {
		t.Errorf("NormalizePrefixes(nil) = %v", got)
	}
}

func TestBanReasonAndCommentSafe(t *testing.T) {
	v := verdict("203.0.113.7", time.Minute)
	if got, want := BanReason(v), "syn-flood: 120 syn_recv >= 50"; got != want {
		t.Errorf("BanReason = %q, want %q", got, want)
	}
	v = verdict("198.51.100.0/24", time.Minute)
	v.Count, v.Sources, v.Threshold = 4000, 200, 200
	if got, want := BanReason(v), "syn-flood: 4000 syn_recv from 200 sources >= 200"; got != want {
		t.Errorf("BanReason = %q, want %q", got, want)
	}
	v.Rule = `evil"rule\` + strings.Repeat("x", 200)
	assertCommentSafe(t, BanReason(v))
	v.Rule, v.Reason = "", "  manual\tban \"by\" admin\n"
	if got, want := BanReason(v), "manual ban 'by' admin"; got != want {
		t.Errorf("BanReason without rule = %q, want %q", got, want)
	}

	cases := map[string]string{
		`a "quoted" \path`:           `a 'quoted' /path`,
		"tab\tnew\nline\x00nul\x7f":  "tab new line?nul?",
		"  caf\u00e9  ":              "caf?",
		"":                           "",
		strings.Repeat("ab ", 60):    strings.Repeat("ab ", 32) + "a...",
		`;#${}'<>=|&*!?@%^()[]~:,./`: `;#${}'<>=|&*!?@%^()[]~:,./`,
	}
	for in, want := range cases {
		got := CommentSafe(in)
		if got != want {
			t.Errorf("CommentSafe(%q) = %q, want %q", in, got, want)
		}
		assertCommentSafe(t, got)
	}
}

func assertCommentSafe(t *testing.T, s string) {
	t.Helper()
	if len(s) > MaxCommentLen {
		t.Errorf("comment %q is %d bytes, over %d", s, len(s), MaxCommentLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			t.Errorf("comment %q has unsafe byte %q at %d", s, c, i)
		}
	}
}

func FuzzCommentSafe(f *testing.F) {
	for _, s := range []string{"", `a"b\c`, "x\x00y", strings.Repeat("é", 80)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := CommentSafe(s)
		assertCommentSafe(t, out)
		if CommentSafe(out) != out {
			t.Errorf("CommentSafe not idempotent on %q: %q", out, CommentSafe(out))
		}
		if slow := safeText(s, MaxCommentLen); slow != out {
			t.Errorf("CommentSafe(%q) = %q, without the shortcut %q", s, out, slow)
		}
	})
}

// TestSafeTextShortcut: text returned as it is (already safe) is exactly
// what the full rewrite makes of it, at and around every boundary of the
// shortcut: spaces, unsafe bytes, the length limit.
func TestSafeTextShortcut(t *testing.T) {
	ins := []string{
		"", " ", "a", "syn-flood: 120 syn_recv >= 50", "a  b", " a", "a ", "a\tb", `a"b`, `a\b`,
		"a\x7fb", "caf\u00e9", "~", strings.Repeat("x", MaxCommentLen), strings.Repeat("x", MaxCommentLen+1),
		strings.Repeat("ab ", 33) + "a", strings.Repeat("x", MaxCommentLen-1) + " ",
	}
	shortcuts := 0
	for _, in := range ins {
		for _, max := range []int{MaxCommentLen, 5} {
			got, want := SafeText(in, max), safeText(in, max)
			if got != want {
				t.Errorf("SafeText(%q, %d) = %q, without the shortcut %q", in, max, got, want)
			}
			if alreadySafe(in, max) {
				shortcuts++
				if got != in {
					t.Errorf("SafeText(%q, %d) = %q: taken as safe, but changed", in, max, got)
				}
			}
		}
	}
	if shortcuts == 0 {
		t.Error("no input took the shortcut")
	}
}

func TestCompileDeterministicOrder(t *testing.T) {
	var vs []Offence
	for i := range 200 {
		var s string
		switch i % 4 {
		case 0:
			s = fmt.Sprintf("203.0.%d.%d", i%7, i)
		case 1:
			s = fmt.Sprintf("2001:db8:%x::%x", i%5, i)
		case 2:
			s = fmt.Sprintf("198.%d.%d.0/24", i%3, i)
		default:
			s = fmt.Sprintf("2001:db8:%x::/48", 100+i)
		}
		vs = append(vs, verdict(s, time.Duration(i)*time.Second+time.Minute))
	}
	p := testPolicy()
	first, _, _ := Compile(p, vs, nil)
	if len(first.Bans) != len(vs) {
		t.Fatalf("got %d bans from %d distinct verdicts", len(first.Bans), len(vs))
	}
	if !slices.IsSortedFunc(first.Bans, func(a, b Ban) int { return ComparePrefixes(a.Prefix, b.Prefix) }) {
		t.Error("bans are not sorted")
	}
	seen6 := false
	for _, b := range first.Bans {
		if b.Prefix.Addr().Is4() && seen6 {
			t.Fatalf("IPv4 ban %s comes after an IPv6 one", b.Prefix)
		}
		seen6 = seen6 || b.Prefix.Addr().Is6()
	}
	// The output order does not depend on the input order when there is no
	// cap to enforce.
	r := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		shuffled := slices.Clone(vs)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		again, _, _ := Compile(p, shuffled, nil)
		if !reflect.DeepEqual(first.Bans, again.Bans) {
			t.Fatal("bans differ after shuffling the verdicts")
		}
	}
}

func TestBanSetsAndAllowIn(t *testing.T) {
	rs := &Ruleset{
		Allow: []netip.Prefix{pfx("10.0.0.0/8"), pfx("::1/128"), pfx("192.0.2.1/32")},
		Bans: []Ban{
			{Prefix: pfx("198.51.100.0/24")}, {Prefix: pfx("203.0.113.7")},
			{Prefix: pfx("2001:db8::/64")}, {Prefix: pfx("2001:db8:1::1")},
			{Prefix: pfx("203.0.113.8")},
		},
	}
	want := map[string][]string{
		SetBan4:    {"203.0.113.7/32", "203.0.113.8/32"},
		SetBanNet4: {"198.51.100.0/24"},
		SetBan6:    {"2001:db8:1::1/128"},
		SetBanNet6: {"2001:db8::/64"},
		SetMeter4:  nil,
	}
	for set, w := range want {
		var got []string
		for _, b := range rs.BansIn(set) {
			got = append(got, b.Prefix.String())
		}
		if !slices.Equal(got, w) {
			t.Errorf("BansIn(%s) = %v, want %v", set, got, w)
		}
	}
	if got := rs.AllowIn(SetAllow4); !slices.Equal(got, []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.0.2.1/32")}) {
		t.Errorf("AllowIn(v4) = %v", got)
	}
	if got := rs.AllowIn(SetAllow6); !slices.Equal(got, []netip.Prefix{pfx("::1/128")}) {
		t.Errorf("AllowIn(v6) = %v", got)
	}
	if got := rs.AllowIn(SetBan4); got != nil {
		t.Errorf("AllowIn(ban set) = %v, want nil", got)
	}
}

func BenchmarkCompile100k(b *testing.B) {
	vs := make([]Offence, 0, 100000)
	for i := range 100000 {
		a := netip.AddrFrom4([4]byte{byte(10 + i%3), byte(i >> 16), byte(i >> 8), byte(i)})
		vs = append(vs, Offence{Subject: netip.PrefixFrom(a, 32), Rule: "syn-flood", State: policy.StateSynRecv, Count: 60, Threshold: 50, BanFor: time.Minute})
	}
	p := testPolicy()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Compile(p, vs, nil); err != nil {
			b.Fatal(err)
		}
	}
}
