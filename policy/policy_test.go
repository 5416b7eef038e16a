package policy

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

const testdata = "../testdata/policy"

func dur(t *testing.T, s string) Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return Duration{d}
}

// TestDefault pins the built-in policy to the values the design promises a
// real server.
func TestDefault(t *testing.T) {
	want := &Policy{
		Source:  DefaultSource,
		Backend: "auto",
		Sample:  Sample{Source: "auto", Count: 1, Interval: dur(t, "1s"), MinHits: 1},
		Rules: []Rule{
			{Name: "syn-flood", State: StateSynRecv, Threshold: 50},
			{Name: "conn-flood", State: StateEstablished, Threshold: 200},
			{Name: "syn-rate", State: StateSynRate, Threshold: 200},
		},
		Prefix: Prefix{Enabled: true, IPv4Length: 24, IPv6Length: 64, IPv4Threshold: 200, IPv6Threshold: 200},
		Allow:  Allow{Host: true},
		Ban: Ban{Duration: dur(t, "10m"), MaxEntries: 65536, EscalateFactor: 2,
			MaxDuration: dur(t, "24h"), EscalateWindow: dur(t, "24h"), MinIPv4Length: 16, MinIPv6Length: 32},
		Meter: Meter{Enabled: true, Rate: 20, Burst: 40, IdleTimeout: dur(t, "60s"),
			IPv6Length: 64, Size: 65536},
		ConnLimit: ConnLimit{Enabled: false, Max: 100},
		NFTables: NFTables{Mode: "table", SetsFamily: "inet", Table: "synban", Family: "inet", Hooks: []string{"prerouting"}, Priority: -10,
			PreroutingPriority: -300, IngressPriority: -300},
		Spoof:    Spoof{Enabled: true, MinSources: 256, MaxPerSource: 2, CookieRatio: 0.1},
		Route:    Route{Type: "prohibit", Protocol: 211},
		IPTables: IPTables{Chain: "SYNBAN"},
		CrowdSec: CrowdSec{Push: true, Pull: true, MaxPulled: 50000, Timeout: dur(t, "30s")},
		Upstream: Upstream{SaturationRatio: 0.8, RealAction: "discard", SpoofedAction: "rate-limit",
			FlowSpecRateBytes: 125000, MaxFlowSpecRules: 20, MaxChangesPerMinute: 60,
			RTBHNextHopV4: "192.0.2.1", RTBHNextHopV6: "100::1",
			MinHold: dur(t, "2m"), WithdrawAfterQuiet: dur(t, "10m"), MaxAge: dur(t, "5m")},
		XDP: XDP{Mode: "native"},
	}
	got := Default()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
	// Each call is a fresh copy.
	got.Rules[0].Threshold = 1
	got.NFTables.Hooks[0] = "forward"
	if again := Default(); again.Rules[0].Threshold != 50 || again.NFTables.Hooks[0] != "prerouting" {
		t.Errorf("Default() shares state between calls: %+v", again)
	}
}

// schemaKeys lists every TOML key of the policy schema from the struct tags,
// with "rule." for the keys of a [[rule]].
func schemaKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		key := join(prefix, tag)
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[Duration]():
			keys = append(keys, schemaKeys(f.Type, key)...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			keys = append(keys, schemaKeys(f.Type.Elem(), key)...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

// fileKeys lists the keys a TOML file defines, array indices dropped.
func fileKeys(t *testing.T, data []byte) map[string]bool {
	t.Helper()
	var v map[string]any
	md, err := toml.Decode(string(data), &v)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, k := range md.Keys() {
		out[k.String()] = true
	}
	return out
}

func TestDefaultAndExampleCoverSchema(t *testing.T) {
	example, err := os.ReadFile(filepath.Join(testdata, "example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	schema := schemaKeys(reflect.TypeFor[Policy](), "")
	if len(schema) < 40 {
		t.Fatalf("schema walk found only %d keys: %v", len(schema), schema)
	}
	def, ex := fileKeys(t, defaultTOML), fileKeys(t, example)
	for _, k := range schema {
		if !ex[k] {
			t.Errorf("example.toml does not show key %s", k)
		}
		// The default rules need no ports or ban_for; [sysctl] manages no
		// setting by default and [upstream] has no neighbor, so default.toml
		// shows them in comments.
		optional := k == "rule.ports" || k == "rule.ban_for" || strings.HasPrefix(k, "sysctl.") && k != "sysctl.apply" ||
			strings.HasPrefix(k, "upstream.neighbor.")
		if !def[k] && !optional {
			t.Errorf("default.toml does not document key %s", k)
		}
	}
}

func TestExampleLoads(t *testing.T) {
	path := filepath.Join(testdata, "example.toml")
	p, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s) = %v", path, err)
	}
	if p.Source != path {
		t.Errorf("Source = %q, want %q", p.Source, path)
	}
	if r, ok := p.RuleByName("web-conn-flood"); !ok || !slices.Equal(r.Ports, []uint16{80, 443}) || r.BanFor.Duration != 30*time.Minute {
		t.Errorf("RuleByName(web-conn-flood) = %+v, %v", r, ok)
	}
	if _, ok := p.RuleByName("conn-flood"); ok {
		t.Errorf("example's rules should replace the default conn-flood rule")
	}
	wantAllow := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.10/32"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	if !slices.Equal(p.Allow.Addresses, wantAllow) {
		t.Errorf("Allow.Addresses = %v, want %v", p.Allow.Addresses, wantAllow)
	}
	if !slices.Equal(p.NFTables.Hooks, []string{"prerouting", "input", "forward"}) || p.Sample.Count != 3 || p.Sample.MinHits != 2 {
		t.Errorf("example not decoded as written: %+v", p)
	}
}

// TestExampleDecodes pins every value of testdata/policy/example.toml as
// decoded, so that a change in how the schema is walked cannot move one.
func TestExampleDecodes(t *testing.T) {
	path := filepath.Join(testdata, "example.toml")
	n := func(v int) *int { return &v }
	want := &Policy{
		Source:  path,
		Backend: "auto",
		Sample:  Sample{Source: "auto", Count: 3, Interval: dur(t, "2s"), MinHits: 2},
		Rules: []Rule{
			{Name: "syn-flood", State: StateSynRecv, Threshold: 50},
			{Name: "web-conn-flood", State: StateEstablished, Threshold: 100, Ports: []uint16{80, 443}, BanFor: dur(t, "30m")},
		},
		Prefix: Prefix{Enabled: true, IPv4Length: 24, IPv6Length: 64, IPv4Threshold: 300, IPv6Threshold: 300},
		Allow: Allow{Host: true, Addresses: []netip.Prefix{
			netip.MustParsePrefix("192.0.2.10/32"),
			netip.MustParsePrefix("198.51.100.0/24"),
			netip.MustParsePrefix("2001:db8::/32"),
		}},
		Ban: Ban{Duration: dur(t, "15m"), MaxEntries: 100000, EscalateFactor: 2,
			MaxDuration: dur(t, "12h"), EscalateWindow: dur(t, "24h"), MinIPv4Length: 16, MinIPv6Length: 32},
		Meter: Meter{Enabled: true, Rate: 20, Burst: 40, IdleTimeout: dur(t, "60s"),
			Ports: []uint16{22, 80, 443}, IPv6Length: 64, Size: 65536},
		ConnLimit: ConnLimit{Enabled: true, Max: 150, Ports: []uint16{80, 443}},
		NFTables: NFTables{Mode: "table", SetsFamily: "inet", Table: "synban", Family: "inet",
			Hooks: []string{"prerouting", "input", "forward"}, Priority: -10, PreroutingPriority: -300, IngressPriority: -300},
		Spoof:    Spoof{Enabled: true, MinSources: 256, MaxPerSource: 2, CookieRatio: 0.1},
		Route:    Route{Type: "prohibit", Protocol: 211},
		IPTables: IPTables{Chain: "SYNBAN"},
		Sysctl:   Sysctl{TCPSyncookies: n(1), TCPMaxSynBacklog: n(4096), TCPSynackRetries: n(2), Somaxconn: n(4096)},
		Metrics:  Metrics{Textfile: "/var/lib/node_exporter/textfile_collector/synban.prom"},
		CrowdSec: CrowdSec{LAPIURL: "http://10.0.0.1:8080/", MachineID: "synban-web1",
			PasswordFile: "/etc/synban/crowdsec-password", BouncerKeyFile: "/etc/synban/crowdsec-bouncer-key",
			Push: true, Pull: true, PullOrigins: []string{"crowdsec", "cscli", "synban"},
			MaxPulled: 50000, Timeout: Duration{30 * time.Second}},
		Upstream: Upstream{LocalASN: 64512, RouterID: "203.0.113.10",
			OwnPrefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:10::/48")},
			Interfaces:  []string{"eth0"}, UplinkBps: 1000000000, SaturationRatio: 0.8,
			RealAction: "discard", SpoofedAction: "rate-limit", FlowSpecRateBytes: 125000,
			MaxFlowSpecRules: 20, MaxChangesPerMinute: 60, AllowRTBH: true, RTBHCommunities: []string{"64500:666"},
			RTBHNextHopV4: "192.0.2.1", RTBHNextHopV6: "100::1",
			MinHold: dur(t, "2m"), WithdrawAfterQuiet: dur(t, "10m"), MaxAge: dur(t, "5m"),
			Neighbors: []UpstreamNeighbor{{Address: "203.0.113.1", PeerASN: 64500,
				Families:     []string{"ipv4-flowspec", "ipv6-flowspec", "ipv4-unicast", "ipv6-unicast"},
				PasswordFile: "/etc/synban/bgp-password", Port: 179}}},
		XDP: XDP{Interfaces: []string{"eth0"}, Mode: "native"},
	}
	got, err := Parse(path, mustRead(t, path))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("example decoded as\n%+v\nwant\n%+v", got, want)
	}
}

func TestBadPolicies(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdata, "bad", "*.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("found %d bad policies, want at least 30", len(files))
	}
	errFiles, _ := filepath.Glob(filepath.Join(testdata, "bad", "*.err"))
	if len(errFiles) != len(files) {
		t.Errorf("%d .toml files but %d .err files", len(files), len(errFiles))
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".toml")
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(path, ".toml") + ".err")
			if err != nil {
				t.Fatal(err)
			}
			wantSub := strings.TrimSpace(string(want))
			p, err := Load(path)
			if err == nil {
				t.Fatalf("Load accepted a bad policy: %+v", p)
			}
			if p != nil {
				t.Errorf("Load returned a policy along with error %v", err)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *policy.Error", err, err)
			}
			if pe.File != path {
				t.Errorf("Error.File = %q, want %q", pe.File, path)
			}
			if !strings.Contains(err.Error(), wantSub) {
				t.Errorf("error\n%v\ndoes not contain\n%s", err, wantSub)
			}
		})
	}
}

func TestPartialFileTakesDefaults(t *testing.T) {
	p, err := Parse("partial.toml", []byte("[meter]\nrate = 5\n\n[ban]\nduration = \"1h\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Source = "partial.toml"
	want.Meter.Rate = 5
	want.Ban.Duration = dur(t, "1h")
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", p, want)
	}

	empty, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want = Default()
	want.Source = "empty.toml"
	if !reflect.DeepEqual(empty, want) {
		t.Errorf("empty file =\n%+v\nwant the default", empty)
	}
}

func TestRulesReplaceDefaults(t *testing.T) {
	p, err := Parse("one.toml", []byte(`
[[rule]]
name = "ssh"
state = "any"
threshold = 20
ports = [22]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{{Name: "ssh", State: StateAny, Threshold: 20, Ports: []uint16{22}}}
	if !reflect.DeepEqual(p.Rules, want) {
		t.Errorf("Rules = %+v, want %+v", p.Rules, want)
	}
	if _, ok := p.RuleByName("syn-flood"); ok {
		t.Error("default rule syn-flood survived a file that gives its own rules")
	}

	// The inline array form replaces the list the same way.
	p, err = Parse("inline.toml", []byte(`rule = [{ name = "a", state = "syn_recv", threshold = 3 }]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 1 || p.Rules[0].Name != "a" {
		t.Errorf("inline rules = %+v", p.Rules)
	}
}

func TestAllowEntries(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"::ffff:1.2.3.4", "1.2.3.4/32"},
		{"::ffff:10.1.0.0/112", "10.1.0.0/16"},
		{"::ffff:0.1.0.0/112", "0.1.0.0/16"},
	} {
		p, err := Parse("allow.toml", []byte("[allow]\naddresses = [\""+tc.in+"\"]\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if len(p.Allow.Addresses) != 1 || p.Allow.Addresses[0] != netip.MustParsePrefix(tc.want) {
			t.Errorf("%s: Addresses = %v, want [%s]", tc.in, p.Allow.Addresses, tc.want)
		}
		if got := p.Allow.Addresses[0]; !got.Addr().Is4() && strings.Contains(tc.want, ".") {
			t.Errorf("%s stored as %v, want IPv4", tc.in, got)
		}
	}
	if _, err := ParseAllow("::ffff:0:0/80"); err == nil {
		t.Error("ParseAllow accepted a mapped prefix wider than ::ffff:0:0/96")
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"10m", 10 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"90s", 90 * time.Second},
		{"250ms", 250 * time.Millisecond},
		{"-5s", -5 * time.Second},
	} {
		var d Duration
		if err := d.UnmarshalText([]byte(tc.in)); err != nil {
			t.Errorf("UnmarshalText(%q) = %v", tc.in, err)
			continue
		}
		if d.Duration != tc.want {
			t.Errorf("UnmarshalText(%q) = %v, want %v", tc.in, d.Duration, tc.want)
		}
		text, err := d.MarshalText()
		if err != nil || string(text) != tc.want.String() || d.String() != tc.want.String() {
			t.Errorf("MarshalText(%v) = %q, %v; String = %q", d, text, err, d.String())
		}
		var back Duration
		if err := back.UnmarshalText(text); err != nil || back != d {
			t.Errorf("round trip of %q gave %v, %v", text, back, err)
		}
	}
	for _, bad := range []string{"", "10", "ten minutes", "10 m", "1d"} {
		var d Duration
		if err := d.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) accepted: %v", bad, d)
		}
	}
}

func TestAllErrorsInFileOrder(t *testing.T) {
	src := `backend = "pf"

[meter]
rate = 0
colour = "red"

[[rule]]
name = "x"
state = "syn_recv"
threshold = -1
`
	_, err := Parse("multi.toml", []byte(src))
	if err == nil {
		t.Fatal("accepted")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("want several errors joined, got %v", err)
	}
	var keys []string
	lastLine := 0
	for _, e := range joined.Unwrap() {
		var pe *Error
		if !errors.As(e, &pe) {
			t.Fatalf("%v is not a *Error", e)
		}
		if pe.Line < lastLine {
			t.Errorf("errors out of file order: %v", err)
		}
		lastLine = pe.Line
		keys = append(keys, pe.Key)
	}
	want := []string{"backend", "meter.rate", "meter.colour", "rule[0].threshold"}
	if !slices.Equal(keys, want) {
		t.Errorf("error keys = %v, want %v\n%v", keys, want, err)
	}
}

func TestSyntaxErrorHasColumn(t *testing.T) {
	_, err := Parse("syntax.toml", []byte("backend = \"auto\"\nrate = = 3\n"))
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("want *Error, got %v", err)
	}
	if pe.Line != 2 || pe.Col == 0 {
		t.Errorf("syntax error at %d:%d, want line 2 with a column: %v", pe.Line, pe.Col, err)
	}
	if !strings.HasPrefix(err.Error(), "syntax.toml:2:") {
		t.Errorf("message %q does not start with the file:line", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(path)
	var pe *Error
	if !errors.As(err, &pe) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v; want a *Error wrapping fs.ErrNotExist", err)
	}
	if !strings.HasPrefix(err.Error(), path+": ") {
		t.Errorf("message %q does not name the file", err)
	}
}

func TestValidateProgrammatic(t *testing.T) {
	p := Default()
	p.Meter.Burst = 0
	p.Allow.Addresses = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/8")}
	err := p.Validate()
	for _, want := range []string{
		DefaultSource + ": meter.burst: must be > 0, got 0",
		DefaultSource + ": allow.addresses[0]: prefix 10.0.0.1/8 is not canonical; use 10.0.0.0/8",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
}

func TestGuard(t *testing.T) {
	p := Default()
	p.Allow.Addresses = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	host := []Protected{
		{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Why: ""},
		{Prefix: netip.MustParsePrefix("2001:db8::7/128"), Why: "default gateway"},
		{Prefix: netip.MustParsePrefix("203.0.113.22/32"), Why: "SSH client running synban"},
	}

	check := func(g *Guard, addr string, wantWhy string) {
		t.Helper()
		why, ok := g.Protects(netip.MustParsePrefix(addr))
		switch {
		case wantWhy == "" && ok:
			t.Errorf("%s protected (%s), want not", addr, why)
		case wantWhy != "" && (!ok || !strings.Contains(why, wantWhy)):
			t.Errorf("%s: Protects = %q, %v; want %q", addr, why, ok, wantWhy)
		}
	}
	g := p.Guard(host)
	check(g, "198.51.100.9/32", "allow list")
	check(g, "127.0.0.53/32", "loopback")
	check(g, "::1/128", "loopback")
	check(g, "::ffff:127.0.0.1/128", "loopback")
	check(g, "192.0.2.0/24", "host address")
	check(g, "2001:db8::7/128", "2001:db8::7/128 is protected (default gateway)")
	check(g, "203.0.113.22/32", "203.0.113.22/32 is protected (SSH client running synban)")
	check(g, "203.0.113.5/32", "")

	p.Allow.Host = false
	g = p.Guard(host)
	check(g, "192.0.2.7/32", "")
	check(g, "127.0.0.1/32", "loopback")
	check(g, "198.51.100.9/32", "allow list")
}

func TestPositions(t *testing.T) {
	src := `# comment with key = "x"
top = 1
s = """
fake = 2
[fake]
"""
[a]
b.c = 2   # dotted
"quoted" = 'x'
list = [
  1,   # one
  [2, 3],
  { k = 4 },
]
[[arr]]
x = 1
[[arr]]
x = 2
[[arr.sub]]
y = 3
inline = { p = 1, q = { r = 2 } }
`
	ks, err := scan("f.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := ks.positions()
	for key, want := range map[string]position{
		"top":                      {2, 1},
		"s":                        {3, 1},
		"a":                        {7, 1},
		"a.b":                      {8, 1},
		"a.b.c":                    {8, 1},
		"a.quoted":                 {9, 1},
		"a.list":                   {10, 1},
		"a.list[0]":                {11, 3},
		"a.list[1]":                {12, 3},
		"a.list[1][1]":             {12, 7},
		"a.list[2].k":              {13, 5},
		"arr[0]":                   {15, 1},
		"arr[0].x":                 {16, 1},
		"arr[1].x":                 {18, 1},
		"arr[1].sub[0]":            {19, 1},
		"arr[1].sub[0].y":          {20, 1},
		"arr[1].sub[0].inline.q.r": {21, 25},
	} {
		if got[key] != want {
			t.Errorf("position of %s = %v, want %v", key, got[key], want)
		}
	}
	for _, key := range []string{"fake", "key"} {
		if got.has(key) {
			t.Errorf("scanner took %q from inside a string or comment", key)
		}
	}
	if p, exact := got.lookup("arr[1].sub[0].missing"); exact || p != (position{19, 1}) {
		t.Errorf("lookup of a missing key = %v, %v; want its table's header", p, exact)
	}
}
