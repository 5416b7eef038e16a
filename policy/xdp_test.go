package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestPolicyXDPDefault: the fast path is off by default, in native mode,
// with no interface.
func TestPolicyXDPDefault(t *testing.T) {
	x := Default().XDP
	if x.Enabled || x.Mode != XDPModeNative || len(x.Interfaces) != 0 {
		t.Errorf("default [xdp] = %+v, want off, native, no interface", x)
	}
}

// TestPolicyXDPValid: an enabled [xdp] decodes as written, and policy show
// (Marshal) writes it back so that Parse reads the same section.
func TestPolicyXDPValid(t *testing.T) {
	for _, src := range []string{
		"[xdp]\nenabled = true\ninterfaces = [\"eth0\", \"veth-1.2\"]\nmode = \"generic\"\n",
		"[xdp]\nenabled = true\ninterfaces = [\"eth0\"]\n",
		"[xdp]\ninterfaces = [\"eth0\"]\nmode = \"native\"\n",
	} {
		p, err := Parse("x.toml", []byte(src))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if !strings.Contains(src, "mode") && p.XDP.Mode != XDPModeNative {
			t.Errorf("%s: mode %q, want the default native", src, p.XDP.Mode)
		}
		out, err := Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "\n[xdp]\n") {
			t.Errorf("policy show lacks [xdp]:\n%s", out)
		}
		q, err := Parse("shown.toml", out)
		if err != nil {
			t.Fatalf("shown policy does not parse: %v\n%s", err, out)
		}
		if q.XDP.Enabled != p.XDP.Enabled || q.XDP.Mode != p.XDP.Mode || !slices.Equal(q.XDP.Interfaces, p.XDP.Interfaces) {
			t.Errorf("round trip: %+v, want %+v", q.XDP, p.XDP)
		}
	}
}

// TestPolicyXDPInvalid: each bad [xdp] key or value is refused with the
// file, the line and the key.
func TestPolicyXDPInvalid(t *testing.T) {
	for i, c := range []struct {
		policy string
		line   int
		key    string
		want   string
	}{
		{"[xdp]\nenabled = true\ninterfaces = []\n", 3, "xdp.interfaces", "required when xdp.enabled"},
		{"[xdp]\nenabled = true\n", 1, "xdp.interfaces", "required when xdp.enabled"},
		{"[xdp]\nenabled = \"yes\"\n", 2, "xdp.enabled", "true or false"},
		{"[xdp]\ninterfaces = [\"eth 0\"]\n", 2, "xdp.interfaces[0]", "interface name"},
		{"[xdp]\ninterfaces = [\"averyveryverylongname\"]\n", 2, "xdp.interfaces[0]", "interface name"},
		{"[xdp]\ninterfaces = [\"eth0\", \"eth0\"]\n", 2, "xdp.interfaces[1]", "duplicate"},
		{"[xdp]\ninterfaces = [1]\n", 2, "xdp.interfaces[0]", "must be a string"},
		{"[xdp]\ninterfaces = \"eth0\"\n", 2, "xdp.interfaces", "must be an array"},
		{"[xdp]\nmode = \"offload\"\n", 2, "xdp.mode", "must be one of \"native\", \"generic\""},
		{"[xdp]\nmode = \"\"\n", 2, "xdp.mode", "must be one of"},
		{"[xdp]\nmodes = \"native\"\n", 2, "xdp.modes", "did you mean \"mode\""},
		{"xdp = true\n", 1, "xdp", "must be a table"},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			wantParseError(t, "x.toml", c.policy, c.line, c.key, c.want)
		})
	}
}
