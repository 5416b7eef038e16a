package netnstest

import (
	"strings"
	"testing"
)

func TestLinkPings(t *testing.T) {
	a, b := New(t, "pa"), New(t, "pb")
	Link(t, a, b, []string{"10.250.0.1/24", "fd00:250::1/64"}, []string{"10.250.0.2/24", "fd00:250::2/64"})
	out := a.MustRun("ping", "-c", "1", "-W", "2", "10.250.0.2")
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping over veth failed: %s", out)
	}
	out = a.MustRun("ping", "-6", "-c", "1", "-W", "2", "fd00:250::2")
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping6 over veth failed: %s", out)
	}
}
