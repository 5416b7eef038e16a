package nft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// dumpRecvLen is the receive length that makes the kernel fill each netlink
// dump datagram up to its cap (32 KiB, less the skb overhead):
// netlink_recvmsg remembers the largest length a socket ever received with
// (max_recvmsg_len), and netlink_dump sizes every later batch to it.
const dumpRecvLen = 32 << 10

// primeSeq is the sequence number of largeDumps' request: far from the
// random start github.com/mdlayher/netlink picks for its own, and its
// reply is read here before the library reads anything.
const primeSeq = 0x5359_4e00

// sizeofNfgenmsg is struct nfgenmsg's size: family, version, resource id.
const sizeofNfgenmsg = 4

// largeDumps is a socket option that makes the kernel send the socket's
// dumps (set elements, rules) in 32 KiB batches instead of 4 KiB ones.
//
// Why by hand: github.com/mdlayher/netlink sizes each receive by peeking
// with a page-sized buffer first, so the kernel only ever sees 4 KiB
// receives and cuts dumps into batches that small; nf_tables restarts its
// walk of a hash set for every batch (the walk skips the elements sent
// before), so reading back N elements costs O(N²/batch): 100,000 bans took
// ~5 s instead of ~1.3 s (`nft list set`, which receives with large
// buffers, takes about that). The library offers no receive length, so
// this sends one NFT_MSG_GETGEN of its own on the fresh socket and reads
// the reply with a 32 KiB buffer, which raises the socket's
// max_recvmsg_len for good; the library then finds the socket as it left
// it (nothing queued). The upstream fix would be a first peek of 32 KiB in
// mdlayher/netlink's receive (what libmnl's MNL_SOCKET_BUFFER_SIZE does).
func largeDumps(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var perr error
	if err := rc.Control(func(fd uintptr) { perr = primeDumpSize(int(fd)) }); err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	if perr != nil {
		return fmt.Errorf("netlink socket: size its dumps: %w", perr)
	}
	return nil
}

// primeDumpSize sends NFT_MSG_GETGEN on fd and reads its one reply with a
// dumpRecvLen buffer (waiting at most a second for it: nfnetlink answers
// within the send, so it is there at once).
func primeDumpSize(fd int) error {
	req := make([]byte, unix.NLMSG_HDRLEN+sizeofNfgenmsg)
	binary.NativeEndian.PutUint32(req[0:4], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:6], uint16(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN))
	binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:12], primeSeq)
	req[unix.NLMSG_HDRLEN] = unix.AF_UNSPEC // nfgenmsg: family, version 0, resource id 0
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, 1000)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n == 0 {
			return errors.New("no reply to NFT_MSG_GETGEN within 1s")
		}
		break
	}
	buf := make([]byte, dumpRecvLen)
	n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if n < unix.NLMSG_HDRLEN || binary.NativeEndian.Uint32(buf[8:12]) != primeSeq {
		return fmt.Errorf("unexpected reply (%d bytes) to NFT_MSG_GETGEN", n)
	}
	return nil
}
