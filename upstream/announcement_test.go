package upstream

import (
	"strings"
	"testing"
)

func TestCLIText(t *testing.T) {
	got := fsExamples[0].CLI()
	want := "gobgp global rib -a ipv4-flowspec add match destination 203.0.113.10/32 source 198.51.100.7/32 protocol tcp tcp-flags S&!A destination-port ==80 then discard"
	if got != want {
		t.Fatalf("CLI:\n got %s\nwant %s", got, want)
	}
	if got := fsExamples[1].CLI(); !strings.HasSuffix(got, "destination-port ==80 ==443 then rate-limit 125000") {
		t.Fatalf("rate-limit CLI: %s", got)
	}
	r := Announcement{Kind: RTBH, Destination: pfx("203.0.113.10/32"), Communities: []Community{Blackhole, NoExport}, NextHop: addr("192.0.2.1")}
	if got, want := r.CLI(), "gobgp global rib -a ipv4-unicast add 203.0.113.10/32 nexthop 192.0.2.1 community 65535:666,65535:65281"; got != want {
		t.Fatalf("RTBH CLI:\n got %s\nwant %s", got, want)
	}
}

func TestKeyIsTheMatch(t *testing.T) {
	a := fsExamples[0]
	b := a
	b.Action, b.RateBytes = RateLimit, 1000
	if a.Key() != b.Key() {
		t.Fatalf("same match, other action: keys differ: %q %q", a.Key(), b.Key())
	}
	if a.Equal(b) {
		t.Fatal("other action compares equal")
	}
	c := a
	c.Ports = []uint16{81}
	if a.Key() == c.Key() {
		t.Fatal("other port, same key")
	}
	d := a
	d.Ports = []uint16{80, 80}
	if a.Key() != d.Key() || !a.Equal(d) {
		t.Fatal("a repeated port changes the key")
	}
}

func TestCommunityText(t *testing.T) {
	c, err := ParseCommunity("65535:666")
	if err != nil || c != Blackhole {
		t.Fatalf("ParseCommunity: %v %v", c, err)
	}
	for _, bad := range []string{"666", "65536:1", "1:65536", "a:b", ""} {
		if _, err := ParseCommunity(bad); err == nil {
			t.Errorf("ParseCommunity(%q) accepted", bad)
		}
	}
}
