package upstream

import (
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestRate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := LinkSample{At: t0, Interface: "eth0", RxBytes: 1000, RxPackets: 10, TxBytes: 50, TxPackets: 1}
	b := LinkSample{At: t0.Add(2 * time.Second), Interface: "eth0", RxBytes: 251000, RxPackets: 2010, TxBytes: 50, TxPackets: 1}
	r, err := Rate(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if r.RxBps != 1e6 || r.RxPps != 1000 || r.TxBps != 0 || r.Over != 2*time.Second {
		t.Fatalf("rate %+v, want 1 Mbit/s, 1000 pps rx", r)
	}
	for name, c := range map[string]struct {
		a, b LinkSample
		want string
	}{
		"backwards": {b, LinkSample{At: t0.Add(3 * time.Second), Interface: "eth0"}, "backwards"},
		"same time": {a, a, "apart"},
		"two links": {a, LinkSample{At: t0.Add(time.Second), Interface: "eth1"}, "eth1"},
	} {
		if _, err := Rate(c.a, c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want it to say %q", name, err, c.want)
		}
	}
}

func TestUplinkRate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := []LinkSample{{At: t0, Interface: "eth0"}, {At: t0, Interface: "eth1", RxBytes: 100}}
	cur := []LinkSample{
		{At: t0.Add(time.Second), Interface: "eth1", RxBytes: 100 + 125000, RxPackets: 100},
		{At: t0.Add(time.Second), Interface: "eth0", RxBytes: 250000, RxPackets: 200},
	}
	r, err := UplinkRate(prev, cur)
	if err != nil {
		t.Fatal(err)
	}
	if r.RxBps != 3e6 || r.RxPps != 300 || r.Interface != "eth1+eth0" {
		t.Fatalf("combined rate %+v, want 3 Mbit/s, 300 pps", r)
	}
	if _, err := UplinkRate(prev[:1], cur); err == nil || !strings.Contains(err.Error(), "eth1") {
		t.Fatalf("missing earlier sample: %v", err)
	}
	if _, err := UplinkRate(prev, nil); err == nil {
		t.Fatal("no interfaces accepted")
	}
}

// TestSampleLinkVeth reads a veth's counters in a test namespace before
// and after sending a known number of pings through it: the receive
// counters grow by at least that many packets and bytes.
func TestSampleLinkVeth(t *testing.T) {
	netnstest.RequireRoot(t)
	a := netnstest.New(t, "ulnk-a")
	b := netnstest.New(t, "ulnk-b")
	_, ifB := netnstest.Link(t, a, b, []string{"10.77.0.1/24"}, []string{"10.77.0.2/24"})
	nsh, err := netns.GetFromPath(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	before, err := SampleLink(h, ifB, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 20, 1000
	a.MustRun("ping", "-q", "-c", "20", "-i", "0.01", "-s", "1000", "-W", "1", "10.77.0.2")
	after, err := SampleLink(h, ifB, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := Rate(before, after)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.RxPackets - before.RxPackets; got < n {
		t.Fatalf("rx packets grew by %d, want >= %d", got, n)
	}
	if got := after.RxBytes - before.RxBytes; got < n*size {
		t.Fatalf("rx bytes grew by %d, want >= %d", got, n*size)
	}
	if r.RxBps <= 0 || r.RxPps <= 0 {
		t.Fatalf("rate %+v", r)
	}
	if _, err := SampleLink(h, "nonexistent0", time.Now()); err == nil || !strings.Contains(err.Error(), "nonexistent0") {
		t.Fatalf("missing interface: %v", err)
	}
}
