package nft

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/nsenter"
)

// filledSet makes a namespace named name holding table inet t with set s
// of n IPv4 elements (timeout and counter, as synban's ban sets).
func filledSet(t testing.TB, name string, n int) *netnstest.NS {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, name)
	var b strings.Builder
	b.WriteString("table inet t {\n\tset s { type ipv4_addr; flags timeout; size 262144; counter; }\n}\n")
	for i := 0; i < n; i += 5000 {
		b.WriteString("add element inet t s { ")
		for j := i; j < min(i+5000, n); j++ {
			a := 10<<24 | (j + 1)
			if j > i {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%d.%d.%d.%d timeout 1h", a>>24&255, a>>16&255, a>>8&255, a&255)
		}
		b.WriteString(" }\n")
	}
	file := filepath.Join(t.TempDir(), "set.nft")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.MustRun("nft", "-f", file)
	return ns
}

// dumpDatagrams dumps set s of table inet t over a netlink socket of its
// own in ns (primed by primeDumpSize when primed) and returns the sizes of
// the datagrams the kernel sent, read with a buffer big enough for any.
func dumpDatagrams(t *testing.T, ns *netnstest.NS, primed bool) []int {
	t.Helper()
	var sizes []int
	err := nsenter.Do(ns.Path(), func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		// A dump that never ends fails the test instead of hanging it.
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10}); err != nil {
			return err
		}
		if primed {
			if err := primeDumpSize(fd); err != nil {
				return err
			}
		}
		ae := netlink.NewAttributeEncoder()
		ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, "t")
		ae.String(unix.NFTA_SET_ELEM_LIST_SET, "s")
		attrs, err := ae.Encode()
		if err != nil {
			return err
		}
		req := make([]byte, unix.NLMSG_HDRLEN+sizeofNfgenmsg, unix.NLMSG_HDRLEN+sizeofNfgenmsg+len(attrs))
		req = append(req, attrs...)
		binary.NativeEndian.PutUint32(req[0:4], uint32(len(req)))
		binary.NativeEndian.PutUint16(req[4:6], uint16(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETSETELEM))
		binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
		binary.NativeEndian.PutUint32(req[8:12], 1)
		req[unix.NLMSG_HDRLEN] = unix.NFPROTO_INET
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		// A 4 KiB receive length, as github.com/mdlayher/netlink's first peek.
		buf := make([]byte, 4096)
		for {
			n, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK|unix.MSG_TRUNC)
			if err != nil {
				return err
			}
			if n > len(buf) {
				buf = make([]byte, n)
			}
			if n, _, err = unix.Recvfrom(fd, buf, 0); err != nil {
				return err
			}
			sizes = append(sizes, n)
			for off := 0; off+unix.NLMSG_HDRLEN <= n; {
				l := int(binary.NativeEndian.Uint32(buf[off : off+4]))
				if t := binary.NativeEndian.Uint16(buf[off+4 : off+6]); t == unix.NLMSG_DONE || t == unix.NLMSG_ERROR {
					return nil
				}
				if l < unix.NLMSG_HDRLEN {
					return fmt.Errorf("malformed message of %d bytes", l)
				}
				off += (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
			}
			if len(sizes) > 100000 {
				return fmt.Errorf("no NLMSG_DONE after %d datagrams", len(sizes))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return sizes
}

// TestLargeDumps: a socket read the way mdlayher/netlink reads (a 4 KiB
// peek first) gets a set's elements in 4 KiB datagrams, and in datagrams of
// about 32 KiB once primeDumpSize ran on it; a library connection with
// largeDumps still reads every element and its next request.
func TestLargeDumps(t *testing.T) {
	const n = 20000
	ns := filledSet(t, "dump", n)

	largest := func(sizes []int) int { return max(0, sizes[0], sizes[len(sizes)/2]) }
	plain, primed := dumpDatagrams(t, ns, false), dumpDatagrams(t, ns, true)
	if m := largest(plain); m > 4096 {
		t.Fatalf("without priming the kernel sent a %d-byte datagram: this test's model of the library's reads is off", m)
	}
	if m := primed[len(primed)/2]; m < 16<<10 {
		t.Errorf("primed, the middle datagram of the dump is %d bytes, want about 32 KiB", m)
	}
	if len(primed)*4 > len(plain) {
		t.Errorf("primed, the dump took %d datagrams, against %d without: want at most a quarter", len(primed), len(plain))
	}
	t.Logf("dump of %d elements: %d datagrams without priming, %d with", n, len(plain), len(primed))

	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(f.Fd())), nftables.WithSockOptions(largeDumps))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	if got := setElements(t, c); got != n {
		t.Fatalf("GetSetElements over a primed socket: %d elements; want %d", got, n)
	}
	if _, err := c.ListTables(); err != nil {
		t.Errorf("the next request on the same socket: %v", err)
	}
}

// BenchmarkReadElements100k reads back 100,000 set elements with the
// nftables library, on a socket primed by largeDumps and on a plain one,
// beside `nft list set` (which receives with large buffers).
func BenchmarkReadElements100k(b *testing.B) {
	const n = 100000
	ns := filledSet(b, "dumpb", n)
	f, err := os.Open(ns.Path())
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	read := func(b *testing.B, opts ...nftables.SockOption) {
		for range b.N {
			c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())), nftables.WithSockOptions(opts...))
			if err != nil {
				b.Fatal(err)
			}
			if got := setElements(b, c); got != n {
				b.Fatalf("%d elements, want %d", got, n)
			}
		}
	}
	b.Run("library-plain", func(b *testing.B) { read(b) })
	b.Run("library-largeDumps", func(b *testing.B) { read(b, largeDumps) })
	b.Run("nft-list-set", func(b *testing.B) {
		for range b.N {
			ns.MustRun("nft", "list", "set", "inet", "t", "s")
		}
	})
}

// setElements reads back fillSet's set over c and returns how many
// elements it holds.
func setElements(tb testing.TB, c *nftables.Conn) int {
	tb.Helper()
	s, err := c.GetSetByName(&nftables.Table{Name: "t", Family: nftables.TableFamilyINet}, "s")
	if err != nil {
		tb.Fatal(err)
	}
	els, err := c.GetSetElements(s)
	if err != nil {
		tb.Fatalf("GetSetElements: %v", err)
	}
	return len(els)
}
