package templates

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/detect"
)

func TestWriteSensorTable(t *testing.T) {
	ev := detect.SensorEvidence{Available: true, Counted: true, Table: "inet synban hot_v4, hot_v6",
		Window: 2 * time.Second, Since: 61 * time.Second, Rows: []detect.SensorRow{
			{Subject: netip.MustParsePrefix("198.51.100.7/32"), Packets: 70000, InWindow: 1800, SinceLast: 55000, Rate: 901.6},
			{Subject: netip.MustParsePrefix("2001:db8:5::/64"), Packets: 12, InWindow: 0, SinceLast: 12, Rate: 0.2},
			{Subject: netip.MustParsePrefix("192.0.2.1/32"), Packets: 3, Rate: 0},
		}}
	var b strings.Builder
	WriteSensorTable(&b, "# ", ev, 2)
	want := `# sensor inet synban hot_v4, hot_v6: 3 source(s) over the SYN meter; window 2s, previous run 1m1s ago
#     SENSOR SOURCE  OVER_METER  IN_WINDOW  SINCE_LAST  SYN/S
#   198.51.100.7/32       70000       1800       55000    902
#   2001:db8:5::/64          12          0          12      0
#    ... and 1 more
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	WriteSensorTable(&b, "", detect.SensorEvidence{}, 0)
	if b.Len() != 0 {
		t.Errorf("no sensor printed %q", b.String())
	}
	WriteSensorTable(&b, "# ", detect.SensorEvidence{Available: true, Err: "netlink: permission denied"}, 0)
	if b.String() != "# sensor: unreadable (netlink: permission denied)\n" {
		t.Errorf("unreadable sensor printed %q", b.String())
	}
}
