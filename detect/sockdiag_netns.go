package detect

import (
	"fmt"
	"os"
	"strings"

	"github.com/synban/synban/internal/nsenter"
)

// NetNSPath turns a namespace reference into a file path: "" stays "" (the
// caller's own namespace), a value holding a slash is a path already (such
// as /proc/PID/ns/net), anything else names a namespace under /run/netns
// as `ip netns` creates them.
func NetNSPath(ref string) string {
	if ref == "" || strings.Contains(ref, "/") {
		return ref
	}
	return "/run/netns/" + ref
}

// openNetNS opens the namespace file of ref for a netlink Config.NetNS. It
// returns nil for the caller's own namespace.
func openNetNS(ref string) (*os.File, error) {
	p := NetNSPath(ref)
	if p == "" {
		return nil, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	return f, nil
}

// inNetNS runs fn inside the network namespace ref ("" runs fn in place);
// see nsenter.Do.
func inNetNS(ref string, fn func() error) error {
	return nsenter.Do(NetNSPath(ref), fn)
}
