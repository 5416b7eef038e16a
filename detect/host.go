package detect

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/synban/synban/policy"
	"golang.org/x/sys/unix"
)

// Protected is an address that must never be banned, and why; the guard
// keeps the reason (policy.Policy.Guard), so messages name it.
type Protected = policy.Protected

// HostProtected lists the addresses of the current network namespace that
// synban must never ban: every address on every interface, the default
// gateways, and the SSH client that started synban (from SSH_CONNECTION or
// SSH_CLIENT, passed in as sshEnv so the caller decides where it comes from).
func HostProtected(sshEnv string) ([]Protected, error) {
	var out []Protected
	addrs, err := netlink.AddrList(nil, unix.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("list host addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			ip = ip.Unmap()
			out = append(out, Protected{Prefix: netip.PrefixFrom(ip, ip.BitLen()), Why: "host address"})
		}
	}
	routes, err := netlink.RouteList(nil, unix.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("list routes for default gateways: %w", err)
	}
	for _, r := range routes {
		if r.Gw == nil || !isDefault(r.Dst) {
			continue
		}
		if ip, ok := netip.AddrFromSlice(r.Gw); ok {
			ip = ip.Unmap()
			out = append(out, Protected{Prefix: netip.PrefixFrom(ip, ip.BitLen()), Why: "default gateway"})
		}
	}
	if ip, ok := sshClient(sshEnv); ok {
		out = append(out, Protected{Prefix: netip.PrefixFrom(ip, ip.BitLen()), Why: "SSH client running synban"})
	}
	return out, nil
}

func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

// sshClient extracts the client address from SSH_CONNECTION ("client port
// server port") or SSH_CLIENT ("client port port").
func sshClient(env string) (netip.Addr, bool) {
	f := strings.Fields(env)
	if len(f) == 0 {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(f[0])
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}
