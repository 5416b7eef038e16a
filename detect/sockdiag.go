package detect

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/policy"
)

// sock_diag constants (linux/sock_diag.h, linux/inet_diag.h).
const (
	netlinkSockDiag  = 4  // NETLINK_SOCK_DIAG
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagReqV2Len = 56 // sizeof(struct inet_diag_req_v2)
	inetDiagMsgLen   = 72 // sizeof(struct inet_diag_msg)
	sockDiagReadBuf  = 4 << 20
	// sockDiagRecvBuf holds the largest datagram a dump sends: the kernel
	// fills at most 32 KiB per datagram (netlink_dump caps its
	// allocation at SKB_WITH_OVERHEAD(32768)); twice that for margin.
	sockDiagRecvBuf = 64 << 10
)

// SockDiag samples the TCP tables over NETLINK_SOCK_DIAG, asking the kernel
// for the wanted states only (the state filter runs in the kernel, so a
// table of 100,000 half-open entries costs nothing when only ESTABLISHED is
// wanted). It reads IPv4 and IPv6 sockets; IPv4-mapped addresses are stored
// as IPv4.
type SockDiag struct {
	// NetNS is the network namespace to read: "" for the caller's own, a
	// name under /run/netns, or a path such as /proc/PID/ns/net.
	NetNS string
	// States are the TCP states wanted; empty means every state but LISTEN.
	// SynRecv includes the kernel's request sockets (NEW_SYN_RECV), which
	// are reported as SynRecv.
	States []TCPState
}

var _ Sampler = SockDiag{}

// Name returns "sockdiag".
func (s SockDiag) Name() string { return "sockdiag" }

// StateMask is the idiag_states bitmask (1<<state) for states; empty means
// every state but LISTEN. SynRecv adds NewSynRecv, the state of request
// sockets, which the kernel reports as SYN_RECV.
func StateMask(states []TCPState) uint32 {
	if len(states) == 0 {
		var m uint32
		for st := Established; st <= NewSynRecv; st++ {
			if st != Listen {
				m |= 1 << st
			}
		}
		return m
	}
	var m uint32
	for _, st := range states {
		if st >= 32 {
			continue
		}
		m |= 1 << st
		if st == SynRecv || st == NewSynRecv {
			m |= 1<<SynRecv | 1<<NewSynRecv
		}
	}
	return m
}

// StatesFor returns the TCP states the policy's rules count, for a
// sampler's state filter: syn_recv is SynRecv, established is Established,
// any is every state but LISTEN (returned as nil, which samplers read as
// "all"). A policy without rules yields nil as well.
func StatesFor(p *policy.Policy) []TCPState {
	var out []TCPState
	for _, r := range p.Rules {
		switch r.State {
		case policy.StateSynRecv:
			out = append(out, SynRecv)
		case policy.StateEstablished:
			out = append(out, Established)
		case policy.StateSynRate:
			// Counts the firewall's sensor, no socket.
		default:
			return nil
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Sample dumps the TCP sockets in the wanted states, IPv4 then IPv6, into
// the sample's compact Table. A kernel without IPv6 is not an error.
// Messages too short or of an unknown family are counted as malformed.
func (s SockDiag) Sample(ctx context.Context) (Sample, error) {
	out := Sample{Source: s.Name(), Time: time.Now()}
	c, err := dialSockDiag(s.NetNS)
	if err != nil {
		return Sample{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	mask := StateMask(s.States)
	buf := make([]byte, sockDiagRecvBuf)
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := dumpSockDiag(ctx, c, fam, mask, &out, buf); err != nil {
			if fam == unix.AF_INET6 && noFamily(err) {
				continue
			}
			if ctx.Err() != nil {
				return Sample{}, fmt.Errorf("sockdiag sample: %w", ctx.Err())
			}
			return Sample{}, fmt.Errorf("sockdiag sample: %w", err)
		}
	}
	return out, nil
}

// Probe checks that sock_diag works in the namespace: it dumps IPv4 TCP
// sockets with an empty state filter, which the kernel answers at once.
func (s SockDiag) Probe(ctx context.Context) error {
	c, err := dialSockDiag(s.NetNS)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var discard Sample
	if err := dumpSockDiag(ctx, c, unix.AF_INET, 1<<Close, &discard, make([]byte, sockDiagRecvBuf)); err != nil {
		return fmt.Errorf("sockdiag probe: %w", err)
	}
	return nil
}

// noFamily reports whether err says the kernel has no such address family.
func noFamily(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EINVAL)
}

func dialSockDiag(ns string) (*netlink.Conn, error) {
	f, err := openNetNS(ns)
	if err != nil {
		return nil, fmt.Errorf("sockdiag: %w", err)
	}
	cfg := &netlink.Config{}
	if f != nil {
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	c, err := netlink.Dial(netlinkSockDiag, cfg)
	if err != nil {
		return nil, fmt.Errorf("sockdiag: dial NETLINK_SOCK_DIAG: %w", err)
	}
	// A large buffer lets the kernel fill whole datagrams; a failure only
	// costs speed.
	_ = c.SetReadBuffer(sockDiagReadBuf)
	return c, nil
}

// sockDiagRequest builds an inet_diag_req_v2 for TCP sockets of family in
// the states of mask.
func sockDiagRequest(family uint8, mask uint32) []byte {
	b := make([]byte, inetDiagReqV2Len)
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	// b[2] idiag_ext = 0: no extensions, b[3] pad.
	binary.NativeEndian.PutUint32(b[4:], mask)
	// The socket id stays zero: no address filter.
	return b
}

// dumpSockDiag sends one dump request and decodes the answer into out's
// Table. The datagrams are read straight from the socket into buf, which
// is reused for every datagram (the netlink library's reader peeks at each
// one first and allocates a buffer for it: twice the system calls, and
// garbage the size of the table); buf must hold the kernel's largest dump
// datagram (sockDiagRecvBuf).
func dumpSockDiag(ctx context.Context, c *netlink.Conn, family uint8, mask uint32, out *Sample, buf []byte) error {
	req := netlink.Message{
		Header: netlink.Header{
			Type:  sockDiagByFamily,
			Flags: netlink.Request | netlink.Dump,
		},
		Data: sockDiagRequest(family, mask),
	}
	if _, err := c.Send(req); err != nil {
		return fmt.Errorf("send inet_diag request (family %d): %w", family, err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("receive inet_diag dump (family %d): %w", family, err)
	}
	n := 0 // messages read
	for {
		var got int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			// MSG_TRUNC: the datagram's real length, to tell a
			// truncated one.
			got, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_TRUNC)
			return rerr != unix.EAGAIN && rerr != unix.EINTR
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("receive inet_diag dump (family %d): %w", family, err)
		}
		if got > len(buf) {
			return fmt.Errorf("receive inet_diag dump (family %d): datagram of %d bytes truncated to %d", family, got, len(buf))
		}
		done, err := decodeSockDiag(buf[:got], out, &n)
		if err != nil {
			return fmt.Errorf("receive inet_diag dump (family %d): %w", family, err)
		}
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// decodeSockDiag decodes one datagram of a sock_diag dump into out's Table,
// numbering the messages from *n on. It reports done at NLMSG_DONE or
// NLMSG_ERROR (after which the kernel sends nothing more), with the error
// either carries.
func decodeSockDiag(b []byte, out *Sample, n *int) (done bool, err error) {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		typ := binary.NativeEndian.Uint16(b[4:6])
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return false, fmt.Errorf("netlink message of length %d in a datagram of %d bytes", l, len(b))
		}
		data := b[unix.NLMSG_HDRLEN:l]
		b = b[min(nlmsgAlign(l), len(b)):]
		switch typ {
		case unix.NLMSG_DONE:
			if len(data) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(data)); e != 0 {
					return true, unix.Errno(-e)
				}
			}
			return true, nil
		case unix.NLMSG_ERROR:
			if len(data) < 4 {
				return true, fmt.Errorf("netlink error message of %d bytes", len(data))
			}
			if e := int32(binary.NativeEndian.Uint32(data)); e != 0 {
				return true, unix.Errno(-e)
			}
			// An acknowledgement: nothing follows it.
			return true, nil
		case unix.NLMSG_NOOP:
			continue
		}
		*n++
		if typ != sockDiagByFamily {
			out.malformed(fmt.Sprintf("sockdiag message %d: type %d, want %d", *n, typ, sockDiagByFamily))
			continue
		}
		if err := appendInetDiagMsg(&out.Table, data); err != nil {
			out.malformed(fmt.Sprintf("sockdiag message %d: %v", *n, err))
		}
	}
	return false, nil
}

// nlmsgAlign rounds l up to the netlink message alignment (4 bytes).
func nlmsgAlign(l int) int { return (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// malformed counts one bad entry and keeps its message if there is room.
func (s *Sample) malformed(why string) {
	s.Malformed++
	if len(s.Errors) < 10 {
		s.Errors = append(s.Errors, why)
	}
}

// parseInetDiagMsg decodes a struct inet_diag_msg: family, state, then the
// socket id with big-endian ports and 16-byte address fields (IPv4 uses the
// first 4 bytes). NEW_SYN_RECV is reported as SynRecv.
func parseInetDiagMsg(b []byte) (Conn, error) {
	if len(b) < inetDiagMsgLen {
		return Conn{}, fmt.Errorf("inet_diag_msg of %d bytes, want at least %d", len(b), inetDiagMsgLen)
	}
	st := TCPState(b[1])
	if st < Established || st > NewSynRecv {
		return Conn{}, fmt.Errorf("unknown TCP state %d", b[1])
	}
	if st == NewSynRecv {
		st = SynRecv
	}
	sport := binary.BigEndian.Uint16(b[4:6])
	dport := binary.BigEndian.Uint16(b[6:8])
	var src, dst netip.Addr
	switch b[0] {
	case unix.AF_INET:
		src = netip.AddrFrom4([4]byte(b[8:12]))
		dst = netip.AddrFrom4([4]byte(b[24:28]))
	case unix.AF_INET6:
		src = netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		dst = netip.AddrFrom16([16]byte(b[24:40])).Unmap()
	default:
		return Conn{}, fmt.Errorf("address family %d", b[0])
	}
	return Conn{
		Local:  netip.AddrPortFrom(src, sport),
		Remote: netip.AddrPortFrom(dst, dport),
		State:  st,
	}, nil
}

// appendInetDiagMsg decodes a struct inet_diag_msg as parseInetDiagMsg does
// and appends it to t without building a Conn; a LISTEN socket is skipped.
// IPv4-mapped addresses are stored as IPv4.
func appendInetDiagMsg(t *Table, b []byte) error {
	if len(b) < inetDiagMsgLen {
		return fmt.Errorf("inet_diag_msg of %d bytes, want at least %d", len(b), inetDiagMsgLen)
	}
	st := TCPState(b[1])
	if st < Established || st > NewSynRecv {
		return fmt.Errorf("unknown TCP state %d", b[1])
	}
	if b[0] != unix.AF_INET && b[0] != unix.AF_INET6 {
		return fmt.Errorf("address family %d", b[0])
	}
	if st == Listen {
		return nil
	}
	if st == NewSynRecv {
		st = SynRecv
	}
	sport := binary.BigEndian.Uint16(b[4:6])
	dport := binary.BigEndian.Uint16(b[6:8])
	switch b[0] {
	case unix.AF_INET:
		t.append4([4]byte(b[8:12]), [4]byte(b[24:28]), sport, dport, st)
	case unix.AF_INET6:
		src, dst := [16]byte(b[8:24]), [16]byte(b[24:40])
		src4, dst4 := isMapped(&src), isMapped(&dst)
		if src4 && dst4 {
			t.append4([4]byte(src[12:16]), [4]byte(dst[12:16]), sport, dport, st)
			return nil
		}
		t.appendSix(src, dst, src4, dst4, tableRec{lport: sport, rport: dport, state: st})
	}
	return nil
}

// isMapped reports whether a is an IPv4-mapped IPv6 address (::ffff:a.b.c.d).
func isMapped(a *[16]byte) bool {
	return [12]byte(a[:12]) == [12]byte{10: 0xff, 11: 0xff}
}

// NewSampler returns the sampler for source ("auto", "sockdiag", "procfs" or
// "conntrack") reading the network namespace netns ("" for the caller's
// own, a name under /run/netns, or a path), with the kernel state filter set
// to states (nil: every state but LISTEN), and says why it chose it. "auto"
// picks sockdiag when a probe dump succeeds and procfs otherwise. procfs in
// another namespace enters it on a locked OS thread for each reading and
// reads /proc/thread-self/net/tcp{,6}; procfs has no state filter, so it
// keeps only the wanted states after parsing.
func NewSampler(ctx context.Context, source, netns string, states []TCPState) (Sampler, string, error) {
	where := "this network namespace"
	if netns != "" {
		where = "network namespace " + NetNSPath(netns)
	}
	procfs := func() Sampler {
		return nsProcFS{netns: netns, mask: StateMask(states)}
	}
	switch source {
	case "", "auto":
		sd := SockDiag{NetNS: netns, States: states}
		if err := sd.Probe(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, "", fmt.Errorf("choose sampler: %w", ctx.Err())
			}
			return procfs(), fmt.Sprintf("procfs: sock_diag unavailable in %s (%v)", where, err), nil
		}
		return sd, fmt.Sprintf("sockdiag: NETLINK_SOCK_DIAG answers in %s, with the state filter done in the kernel", where), nil
	case "sockdiag":
		sd := SockDiag{NetNS: netns, States: states}
		if err := sd.Probe(ctx); err != nil {
			return nil, "", fmt.Errorf("sample source sockdiag: %w", err)
		}
		return sd, "sockdiag: chosen by the policy", nil
	case "procfs":
		p := procfs()
		if _, err := openProcNet(netns); err != nil {
			return nil, "", fmt.Errorf("sample source procfs: %w", err)
		}
		return p, "procfs: chosen by the policy", nil
	case "conntrack":
		return Conntrack{NetNS: netns}, "conntrack: chosen by the policy (sees flows the socket table does not keep, such as answered SYN cookies)", nil
	default:
		return nil, "", fmt.Errorf("unknown sample source %q (want auto, sockdiag, procfs or conntrack)", source)
	}
}

// nsProcFS is procfs read from inside a network namespace, keeping only the
// states of mask.
type nsProcFS struct {
	netns string
	mask  uint32
}

// Name returns "procfs".
func (p nsProcFS) Name() string { return "procfs" }

// Sample reads /proc/thread-self/net/tcp{,6} on a thread inside the namespace.
func (p nsProcFS) Sample(ctx context.Context) (Sample, error) {
	var s Sample
	err := inNetNS(p.netns, func() error {
		var err error
		s, err = ProcFS{Root: "/proc/thread-self"}.Sample(ctx)
		return err
	})
	if err != nil {
		return Sample{}, err
	}
	if p.mask != 0 {
		s.Conns = slices.DeleteFunc(s.Conns, func(c Conn) bool {
			return c.State >= 32 || p.mask&(1<<c.State) == 0
		})
	}
	return s, nil
}

// openProcNet checks that the namespace's /proc/thread-self/net/tcp is readable.
func openProcNet(netns string) (bool, error) {
	err := inNetNS(netns, func() error {
		f, err := os.Open("/proc/thread-self/net/tcp")
		if err != nil {
			return fmt.Errorf("open TCP table: %w", err)
		}
		return f.Close()
	})
	return err == nil, err
}
