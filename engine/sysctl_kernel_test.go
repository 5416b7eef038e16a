package engine

import (
	"testing"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/sysctl"
	"github.com/synban/synban/policy"
)

// TestApplySpoofSysctls (moved from detect, which no longer writes
// sysctls) checks consent and the namespace: cookies are turned
// on inside a test namespace only when the policy allows it.
func TestApplySpoofSysctls(t *testing.T) {
	ns := netnstest.New(t, "sysctl")
	ns.Sysctl("net.ipv4.tcp_syncookies", "0")
	p := policy.Default()
	spoofed := detect.Classification{Kind: detect.KindSpoofed}
	read := func() string {
		m, err := sysctl.ReadNS(ns.Path(), []string{"net.ipv4.tcp_syncookies", "net.ipv4.no_such_key"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m["net.ipv4.no_such_key"]; ok {
			t.Error("a missing sysctl was reported")
		}
		return m["net.ipv4.tcp_syncookies"]
	}
	p.Spoof.ApplySysctl = false
	if ch, err := applySpoofSysctls(ns.Path(), p, spoofed); err != nil || ch != nil || read() != "0" {
		t.Fatalf("without consent: changed %v, err %v, value %s", ch, err, read())
	}
	p.Spoof.ApplySysctl = true
	if ch, err := applySpoofSysctls(ns.Path(), p, detect.Classification{Kind: detect.KindReal}); err != nil || ch != nil {
		t.Fatalf("real flood: changed %v, err %v", ch, err)
	}
	ch, err := applySpoofSysctls(ns.Path(), p, spoofed)
	if err != nil || len(ch) != 1 || ch[0] != "net.ipv4.tcp_syncookies: 0 -> 1" || read() != "1" {
		t.Fatalf("with consent: changed %v, err %v, value %s", ch, err, read())
	}
	if ch, err := applySpoofSysctls(ns.Path(), p, spoofed); err != nil || ch != nil {
		t.Errorf("second run changed %v, err %v", ch, err)
	}
}
