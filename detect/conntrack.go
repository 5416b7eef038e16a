package detect

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Conntrack TCP states (enum tcp_conntrack in linux/netfilter/nf_conntrack_tcp.h).
const (
	ctTCPSynSent     = 1 // SYN seen, no answer yet
	ctTCPSynRecv     = 2 // SYN-ACK (or a SYN cookie) sent back
	ctTCPEstablished = 3
	ctTCPSynSent2    = 9 // simultaneous open
)

// Conntrack samples TCP flows from the connection-tracking table with
// github.com/ti-mo/conntrack. It sees what the socket table does not keep:
// flows answered with a SYN cookie, flows a full SYN queue dropped, and
// flows forwarded by a router. Half-open flows (conntrack states SYN_SENT,
// SYN_SENT2 and SYN_RECV: a SYN seen, answered with a SYN-ACK or a cookie,
// or not answered) are reported as SynRecv, ESTABLISHED as Established; other
// states are skipped. Each flow becomes Conn{Local: original destination,
// Remote: original source}. Flows that this namespace started (original
// source is one of its addresses) are skipped: they are outgoing, not a
// flood. Conntrack only tracks when the namespace's ruleset uses it (any
// ct expression, such as synban's connection cap); an empty table or a
// kernel without conntrack gives an empty sample, not an error.
type Conntrack struct {
	// NetNS is the network namespace to read: "" for the caller's own, a
	// name under /run/netns, or a path such as /proc/PID/ns/net.
	NetNS string
}

var _ Sampler = Conntrack{}

// Name returns "conntrack".
func (c Conntrack) Name() string { return "conntrack" }

// Sample dumps the conntrack table and keeps the inbound TCP flows.
func (c Conntrack) Sample(ctx context.Context) (Sample, error) {
	out := Sample{Source: c.Name(), Time: time.Now()}
	if err := ctx.Err(); err != nil {
		return Sample{}, fmt.Errorf("conntrack sample: %w", err)
	}
	local, err := localAddrs(c.NetNS)
	if err != nil {
		return Sample{}, fmt.Errorf("conntrack sample: %w", err)
	}
	f, err := openNetNS(c.NetNS)
	if err != nil {
		return Sample{}, fmt.Errorf("conntrack sample: %w", err)
	}
	cfg := &netlink.Config{}
	if f != nil {
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	conn, err := conntrack.Dial(cfg)
	if err != nil {
		if noConntrack(err) {
			return out, nil
		}
		return Sample{}, fmt.Errorf("conntrack sample: dial: %w", err)
	}
	defer conn.Close()
	_ = conn.SetReadBuffer(sockDiagReadBuf)
	flows, err := conn.Dump(nil)
	if err != nil {
		if noConntrack(err) {
			return out, nil
		}
		if ctx.Err() != nil {
			return Sample{}, fmt.Errorf("conntrack sample: %w", ctx.Err())
		}
		return Sample{}, fmt.Errorf("conntrack sample: dump: %w", err)
	}
	for i := range flows {
		conn, ok, why := flowConn(&flows[i], local)
		if why != "" {
			out.malformed(fmt.Sprintf("conntrack flow %d: %s", i+1, why))
			continue
		}
		if ok {
			out.Conns = append(out.Conns, conn)
		}
	}
	return out, nil
}

// flowConn maps one flow to a Conn. ok is false for flows that are not
// inbound TCP in a counted state; why is set for flows that cannot be read.
func flowConn(f *conntrack.Flow, local map[netip.Addr]bool) (c Conn, ok bool, why string) {
	if f.TupleOrig.Proto.Protocol != unix.IPPROTO_TCP {
		return Conn{}, false, ""
	}
	if f.ProtoInfo.TCP == nil {
		return Conn{}, false, "TCP flow without TCP protocol info"
	}
	var st TCPState
	switch f.ProtoInfo.TCP.State {
	case ctTCPSynSent, ctTCPSynSent2, ctTCPSynRecv:
		st = SynRecv
	case ctTCPEstablished:
		st = Established
	default:
		return Conn{}, false, ""
	}
	src := f.TupleOrig.IP.SourceAddress.Unmap()
	dst := f.TupleOrig.IP.DestinationAddress.Unmap()
	if !src.IsValid() || !dst.IsValid() {
		return Conn{}, false, "flow without addresses"
	}
	if local[src] {
		return Conn{}, false, "" // outgoing
	}
	return Conn{
		Local:  netip.AddrPortFrom(dst, f.TupleOrig.Proto.DestinationPort),
		Remote: netip.AddrPortFrom(src, f.TupleOrig.Proto.SourcePort),
		State:  st,
	}, true, ""
}

// noConntrack reports whether err says the kernel has no conntrack.
func noConntrack(err error) bool {
	return errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EAFNOSUPPORT)
}

// localAddrs lists the addresses of the namespace's interfaces.
func localAddrs(ref string) (map[netip.Addr]bool, error) {
	h := &vnl.Handle{}
	if p := NetNSPath(ref); p != "" {
		ns, err := netns.GetFromPath(p)
		if err != nil {
			return nil, fmt.Errorf("open network namespace %s: %w", p, err)
		}
		defer ns.Close()
		h, err = vnl.NewHandleAt(ns)
		if err != nil {
			return nil, fmt.Errorf("netlink handle in %s: %w", p, err)
		}
		defer h.Close()
	}
	addrs, err := h.AddrList(nil, unix.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	out := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out[ip.Unmap()] = true
		}
	}
	return out, nil
}
