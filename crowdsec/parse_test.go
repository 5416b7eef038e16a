package crowdsec

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseValue(t *testing.T) {
	for _, tc := range []struct {
		scope, value, want string // want "" means an error
	}{
		{"Ip", "192.0.2.7", "192.0.2.7/32"},
		{"ip", "192.0.2.7", "192.0.2.7/32"},
		{"Ip", "2001:db8::7", "2001:db8::7/128"},
		{"Ip", "::ffff:192.0.2.7", "192.0.2.7/32"},
		{"Range", "198.51.100.0/24", "198.51.100.0/24"},
		{"range", "198.51.100.77/24", "198.51.100.0/24"},
		{"Range", "2001:db8:1::/48", "2001:db8:1::/48"},
		{"Range", "::ffff:198.51.100.0/120", "198.51.100.0/24"},
		{"Range", "::ffff:0.0.0.0/95", ""},
		{"Ip", "fe80::1%eth0", ""},
		{"Ip", "192.0.2.300", ""},
		{"Ip", "192.0.2.0/24", ""},
		{"Range", "198.51.100.0", ""},
		{"Range", "198.51.100.0/33", ""},
		{"Country", "FR", ""},
		{"AS", "64496", ""},
		{"", "192.0.2.7", ""},
	} {
		p, err := ParseValue(tc.scope, tc.value)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseValue(%q, %q) = %v, want an error", tc.scope, tc.value, p)
			} else if !strings.Contains(err.Error(), tc.value) && !strings.Contains(err.Error(), tc.scope) {
				t.Errorf("ParseValue(%q, %q): error %q names neither scope nor value", tc.scope, tc.value, err)
			}
			continue
		}
		if err != nil || p != netip.MustParsePrefix(tc.want) {
			t.Errorf("ParseValue(%q, %q) = %v, %v; want %s", tc.scope, tc.value, p, err, tc.want)
		}
	}
}

func TestScopeValue(t *testing.T) {
	for _, tc := range []struct{ in, scope, value string }{
		{"192.0.2.7/32", "Ip", "192.0.2.7"},
		{"2001:db8::7/128", "Ip", "2001:db8::7"},
		{"::ffff:192.0.2.7/128", "Ip", "192.0.2.7"},
		{"198.51.100.9/24", "Range", "198.51.100.0/24"},
		{"2001:db8::/32", "Range", "2001:db8::/32"},
	} {
		s, v, err := ScopeValue(netip.MustParsePrefix(tc.in))
		if err != nil || s != tc.scope || v != tc.value {
			t.Errorf("ScopeValue(%s) = %q, %q, %v; want %q, %q", tc.in, s, v, err, tc.scope, tc.value)
		}
	}
	if _, _, err := ScopeValue(netip.Prefix{}); err == nil {
		t.Error("ScopeValue(zero prefix) gave no error")
	}
}

func TestDecodeStreamSkipsBadValues(t *testing.T) {
	body := `{"deleted":[{"duration":"-1.5s","id":9,"origin":"cscli","scenario":"x","scope":"Ip","type":"ban","value":"192.0.2.9"}],
	"new":[
	 {"duration":"59m59.5s","id":1,"origin":"synban","scenario":"synban/syn-flood","scope":"Ip","type":"ban","value":"192.0.2.7"},
	 {"duration":"29m","id":2,"origin":"crowdsec","scenario":"s","scope":"Range","type":"ban","value":"198.51.100.0/24"},
	 {"duration":"1h","id":3,"origin":"crowdsec","scenario":"s","scope":"Ip","type":"ban","value":"not-an-ip"},
	 {"duration":"forever","id":4,"origin":"crowdsec","scenario":"s","scope":"Ip","type":"ban","value":"192.0.2.8"},
	 {"duration":"1h","id":5,"origin":"crowdsec","scenario":"s","scope":"Country","type":"ban","value":"FR"},
	 {"duration":"2h","id":6,"origin":"lists","scenario":"s","scope":"Ip","type":"ban","value":"2001:db8::7"}]}`
	s, err := DecodeStream([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.New) != 3 || s.Skipped != 3 || len(s.SkippedExamples) != 3 || len(s.Deleted) != 1 {
		t.Fatalf("new %d skipped %d examples %d deleted %d; want 3, 3, 3, 1: %+v", len(s.New), s.Skipped, len(s.SkippedExamples), len(s.Deleted), s)
	}
	if d := s.New[0]; d.Prefix != netip.MustParsePrefix("192.0.2.7/32") || d.Duration != 59*time.Minute+59500*time.Millisecond || d.Origin != "synban" || d.Scenario != "synban/syn-flood" || d.ID != 1 {
		t.Errorf("first decision %+v", d)
	}
	if d := s.Deleted[0]; d.Duration != -1500*time.Millisecond || d.Prefix != netip.MustParsePrefix("192.0.2.9/32") {
		t.Errorf("deleted decision %+v", d)
	}
	for i, id := range []int64{3, 4, 5} {
		if e := s.SkippedExamples[i]; e.ID != id || e.Reason == "" {
			t.Errorf("skipped example %d = %+v, want id %d with a reason", i, e, id)
		}
	}
	// null lists, as the LAPI sends when nothing changed.
	s, err = DecodeStream([]byte(`{"deleted":null,"new":null}`))
	if err != nil || len(s.New) != 0 || len(s.Deleted) != 0 {
		t.Fatalf("empty stream: %+v, %v", s, err)
	}
	if _, err := DecodeStream([]byte(`{"new":[`)); err == nil {
		t.Fatal("truncated stream decoded without error")
	}
}

func TestSkippedExamplesBounded(t *testing.T) {
	var ds []string
	for i := range 50 {
		ds = append(ds, fmt.Sprintf(`{"duration":"1h","id":%d,"scope":"Ip","type":"ban","value":"bad%d"}`, i, i))
	}
	s, err := DecodeStream([]byte(`{"new":[` + strings.Join(ds, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Skipped != 50 || len(s.SkippedExamples) != maxSkippedExamples {
		t.Fatalf("skipped %d with %d examples, want 50 with %d", s.Skipped, len(s.SkippedExamples), maxSkippedExamples)
	}
}

func dec(id int64, typ, value string, d time.Duration) Decision {
	scope := "Ip"
	if strings.Contains(value, "/") {
		scope = "Range"
	}
	p, err := ParseValue(scope, value)
	if err != nil {
		panic(err)
	}
	return Decision{ID: id, Origin: fmt.Sprint("o", id), Type: typ, Scope: scope, Value: value, Scenario: fmt.Sprint("s", id), Prefix: p, Duration: d}
}

func TestDesiredKeepsLongestPerPrefix(t *testing.T) {
	s := &Stream{New: []Decision{
		dec(1, "ban", "192.0.2.7", time.Hour),
		dec(2, "ban", "192.0.2.7", 3*time.Hour), // longest for .7
		dec(3, "ban", "192.0.2.7", 2*time.Hour),
		dec(4, "captcha", "192.0.2.8", 5*time.Hour),
		dec(5, "ban", "198.51.100.0/24", 30*time.Minute),
		dec(6, "Ban", "2001:db8::7", 10*time.Minute),
		dec(7, "ban", "192.0.2.9", -time.Second),
		dec(9, "ban", "192.0.2.10", time.Hour),
		dec(8, "ban", "192.0.2.10", time.Hour), // equal: lower id wins
		dec(10, "ban", "192.0.2.0/24", time.Minute),
	}}
	got, st := Desired(s)
	want := []Want{
		{netip.MustParsePrefix("192.0.2.0/24"), time.Minute, "o10", "s10", 10},
		{netip.MustParsePrefix("192.0.2.7/32"), 3 * time.Hour, "o2", "s2", 2},
		{netip.MustParsePrefix("192.0.2.10/32"), time.Hour, "o8", "s8", 8},
		{netip.MustParsePrefix("198.51.100.0/24"), 30 * time.Minute, "o5", "s5", 5},
		{netip.MustParsePrefix("2001:db8::7/128"), 10 * time.Minute, "o6", "s6", 6},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Desired:\n got %v\nwant %v", got, want)
	}
	if st != (DesiredStats{NotBan: 1, Expired: 1, Shorter: 3}) {
		t.Errorf("stats %+v", st)
	}
	// The order of the stream does not matter.
	rev := &Stream{}
	for i := len(s.New) - 1; i >= 0; i-- {
		rev.New = append(rev.New, s.New[i])
	}
	if got2, _ := Desired(rev); fmt.Sprint(got2) != fmt.Sprint(want) {
		t.Errorf("Desired of the reversed stream:\n got %v\nwant %v", got2, want)
	}
}

func TestNewAlert(t *testing.T) {
	c, err := New(Config{URL: "http://192.0.2.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.NewAlert(Ban{Prefix: netip.MustParsePrefix("2001:db8::/64"), Duration: 90*time.Minute + 300*time.Millisecond, Scenario: "synban/syn-flood", Message: "812 half-open", Events: 812})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(a)
	for _, s := range []string{`"scenario":"synban/syn-flood"`, `"events":[]`, `"events_count":812`,
		`"source":{"scope":"Range","value":"2001:db8::/64"}`,
		`"decisions":[{"origin":"synban","type":"ban","scope":"Range","value":"2001:db8::/64","duration":"1h30m1s","scenario":"synban/syn-flood"}]`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("alert JSON lacks %s:\n%s", s, b)
		}
	}
	for _, bad := range []Ban{
		{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Duration: 0, Scenario: "s"},
		{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Duration: time.Hour},
		{Duration: time.Hour, Scenario: "s"},
	} {
		if _, err := c.NewAlert(bad); err == nil {
			t.Errorf("NewAlert(%+v) gave no error", bad)
		}
	}
}

func TestNewRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"", "192.0.2.1:8080", "ftp://192.0.2.1/", "http:///x", "http://user:secret@192.0.2.1/", "http://192.0.2.1/?k=v"} {
		_, err := New(Config{URL: u})
		if err == nil {
			t.Errorf("New(%q) gave no error", u)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("New(%q): error shows the password: %v", u, err)
		}
	}
	for _, ua := range []string{"synban", "/1", "synban/", "a/b/c"} {
		if _, err := New(Config{URL: "http://192.0.2.1:8080/", UserAgent: ua}); err == nil {
			t.Errorf("user agent %q accepted; crowdsec 1.4.6 refuses logins without NAME/VERSION", ua)
		}
	}
}
