package policy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// marshalInputs are the policies the Marshal tests round-trip: the
// default, the annotated example, the golden policies, and one that sets
// what none of them does (sysctls, crowdsec lists, strings to escape).
func marshalInputs(t *testing.T) map[string]*Policy {
	t.Helper()
	out := map[string]*Policy{"default": Default()}
	files, err := filepath.Glob("../testdata/policy/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no policies under testdata/policy: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(f, data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = p
	}
	p, err := Parse("odd.toml", []byte(`
[[rule]]
name = "all"
state = "any"
threshold = 7
ban_for = "1h30m"
[allow]
addresses = ["192.0.2.1", "2001:db8::/32", "::ffff:198.51.100.0/120"]
[nftables]
hooks = ["input", "ingress"]
ingress_devices = ["eth0", "ens3"]
[metrics]
textfile = "/var/lib/a \"b\\c/ü.prom"
[sysctl]
tcp_syncookies = 1
tcp_synack_retries = 2
[crowdsec]
pull_origins = ["crowdsec", "cscli"]
pull_scenarios_containing = ["ssh"]
[ban]
escalate_factor = 3
[spoof]
cookie_ratio = 0.25
[upstream]
local_asn = 4200000000
[[upstream.neighbor]]
address = "2001:db8::1"
peer_asn = 4200000001
families = ["ipv6-flowspec"]
password_file = "/etc/synban/bgp \"pw\""
port = 1179
`))
	if err != nil {
		t.Fatalf("odd.toml: %v", err)
	}
	out["odd"] = p
	return out
}

// TestMarshalRoundTrip: what Marshal writes parses back to the same policy
// (a rule's unset ban_for written as ban.duration, its effective value),
// and marshalling that again gives the same bytes.
func TestMarshalRoundTrip(t *testing.T) {
	for name, p := range marshalInputs(t) {
		text, err := Marshal(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		back, err := Parse("shown.toml", text)
		if err != nil {
			t.Fatalf("%s: Marshal's output does not parse: %v\n%s", name, err, text)
		}
		want := *p
		want.Source = back.Source
		want.Rules = append([]Rule(nil), p.Rules...)
		for i := range want.Rules {
			if want.Rules[i].BanFor.Duration == 0 {
				want.Rules[i].BanFor = p.Ban.Duration
			}
		}
		if !reflect.DeepEqual(&want, back) {
			t.Errorf("%s: parsed back differently:\nwant %+v\ngot  %+v\n%s", name, want, *back, text)
		}
		again, err := Marshal(back)
		if err != nil || string(again) != string(text) {
			t.Errorf("%s: a second Marshal differs (%v):\n%s\n---\n%s", name, err, text, again)
		}
	}
}

// TestMarshalWritesEverySchemaKey: every key of the schema (the Policy
// struct's toml tags) is in Marshal's output, in its table: a key added
// to Policy is shown without a change to Marshal, and none is forgotten.
func TestMarshalWritesEverySchemaKey(t *testing.T) {
	p := marshalInputs(t)["odd"]
	one := 1
	p.Sysctl.TCPMaxSynBacklog, p.Sysctl.Somaxconn = &one, &one
	text, err := Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]string{} // table header -> its body
	cur := ""
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(line, "[") {
			cur = strings.Trim(line, "[]")
			continue
		}
		tables[cur] += line + "\n"
	}
	var walk func(table string, t reflect.Type)
	n := 0
	walk = func(table string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := tomlName(f)
			if name == "" {
				continue
			}
			if isTable(f.Type) {
				et := f.Type
				if et.Kind() == reflect.Slice {
					et = et.Elem()
				}
				walk(join(table, name), et)
				continue
			}
			n++
			if !strings.Contains(tables[table], "\n"+name+" = ") && !strings.HasPrefix(tables[table], name+" = ") {
				t.Errorf("key %s of table [%s] is missing from Marshal's output:\n%s", name, table, text)
			}
		}
	}
	walk("", reflect.TypeFor[Policy]())
	if n < 60 {
		t.Errorf("walked only %d keys: the schema walk is broken", n)
	}
}

// TestMarshalQuotes: strings are TOML basic strings, control characters
// escaped, and durations Go duration strings.
func TestMarshalQuotes(t *testing.T) {
	for in, want := range map[string]string{`a"b\c`: `"a\"b\\c"`, "tab\there": `"tab\there"`, "bell\a": `"bell\u0007"`, "ü": `"ü"`} {
		if got := tomlString(in); got != want {
			t.Errorf("tomlString(%q) = %s, want %s", in, got, want)
		}
	}
	p := Default()
	p.Ban.EscalateWindow = Duration{90 * time.Minute}
	text, err := Marshal(p)
	if err != nil || !strings.Contains(string(text), "\nescalate_window = \"1h30m0s\"\n") {
		t.Errorf("escalate_window not written as a duration string (%v):\n%s", err, text)
	}
}
