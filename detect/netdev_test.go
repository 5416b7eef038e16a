package detect

import (
	"strings"
	"testing"
)

const netDevSample = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  137031    1761    0    0    0     0          0         0   137031    1761    0    0    0     0       0          0
  eth0: 9000000 70000    2   15    0     0          0         0   137031    1761    0    0    0     0       0          0
`

func TestParseNetDev(t *testing.T) {
	m, err := ParseNetDev(strings.NewReader(netDevSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m["lo"] != (IfCounters{RxPackets: 1761}) || m["eth0"] != (IfCounters{RxPackets: 70000, RxDropped: 15}) {
		t.Errorf("ParseNetDev = %+v", m)
	}
	head := netDevSample[:strings.Index(netDevSample, "    lo")]
	for name, tc := range map[string]struct{ body, want string }{
		"no colon":   {"eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", "line 3: no \"NAME:\""},
		"short":      {"eth0: 1 2 3\n", "line 3: eth0: 3 counters, want 16"},
		"not number": {"eth0: 1 x 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", "line 3: eth0 rx packets"},
		"twice":      {"eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\neth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", "line 4: interface eth0 listed twice"},
	} {
		if _, err := ParseNetDev(strings.NewReader(head + tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
	// The live file parses.
	if live, err := ReadNetDev(""); err != nil || len(live) == 0 {
		t.Errorf("ReadNetDev: %v, %v", live, err)
	}
}

func FuzzParseNetDev(f *testing.F) {
	f.Add([]byte(netDevSample))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseNetDev(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		for name := range m {
			if name == "" || strings.ContainsAny(name, " \t:") {
				t.Fatalf("accepted interface name %q", name)
			}
		}
	})
}
