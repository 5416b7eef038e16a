package policy

import (
	"fmt"
	"slices"
)

// XDP configures the optional XDP fast path for bans (off by default): the
// ban sets mirrored into BPF maps and a small drop program attached to
// Interfaces, so a banned source's packets die in the driver, before any
// socket buffer, conntrack or nftables work. The firewall backend's table
// stays the source of truth and keeps enforcing; when the program cannot be
// attached, a run warns and goes on without it.
type XDP struct {
	// Enabled turns the fast path on (default false).
	Enabled bool `toml:"enabled"`
	// Interfaces are the devices the program attaches to (required when
	// enabled).
	Interfaces []string `toml:"interfaces"`
	// Mode is "native" (default: in the driver, the fast one; the device
	// must support it) or "generic" (after the kernel made a socket
	// buffer: works on every device, cheaper than nftables but not by
	// much).
	Mode string `toml:"mode"`
}

// XDP attach modes.
const (
	XDPModeNative  = "native"
	XDPModeGeneric = "generic"
)

// xdpModes are the values xdp.mode may take.
var xdpModes = []string{XDPModeNative, XDPModeGeneric}

// maxXDPInterfaces bounds xdp.interfaces.
const maxXDPInterfaces = 256

// validateXDP checks [xdp]: the syntax of every value whether or not it is
// enabled, at least one interface when enabled.
func (d *decoder) validateXDP(p *Policy) {
	x := &p.XDP
	d.oneOf("xdp.mode", x.Mode, xdpModes)
	for i, ifc := range x.Interfaces {
		k := fmt.Sprintf("xdp.interfaces[%d]", i)
		if !deviceNames.MatchString(ifc) {
			d.errorf(k, "must be an interface name (1..15 letters, digits, '_', '-' or '.'), got %q", ifc)
		} else if slices.Contains(x.Interfaces[:i], ifc) {
			d.errorf(k, "duplicate interface %q", ifc)
		}
	}
	if x.Enabled && len(x.Interfaces) == 0 {
		d.errorf("xdp.interfaces", "required when xdp.enabled is true: name the devices the drop program attaches to, e.g. [\"eth0\"]")
	}
}
