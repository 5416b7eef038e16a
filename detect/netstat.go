package detect

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// TcpExt holds the TcpExt counters of /proc/net/netstat that tell a SYN
// flood's nature, plus every other TcpExt counter by its kernel name. The
// counters belong to one network namespace.
//
// The name mirrors the kernel's "TcpExt:" line.
type TcpExt struct {
	// SyncookiesSent counts SYN cookies sent: the SYN queue was full (or
	// tcp_syncookies=2) and the kernel answered without keeping state.
	SyncookiesSent int64
	// SyncookiesRecv counts valid cookies returned in an ACK: a real peer
	// finished the handshake.
	SyncookiesRecv int64
	// SyncookiesFailed counts ACKs carrying an invalid cookie.
	SyncookiesFailed int64
	// ListenOverflows counts handshakes completed while the accept queue was full.
	ListenOverflows int64
	// ListenDrops counts SYNs and ACKs dropped by a listener for any reason.
	ListenDrops int64
	// TCPReqQFullDrop counts SYNs dropped because the SYN queue was full and
	// cookies were off.
	TCPReqQFullDrop int64
	// TCPReqQFullDoCookies counts SYNs answered with a cookie because the SYN
	// queue was full.
	TCPReqQFullDoCookies int64
	// All holds every TcpExt counter by name, the ones above included.
	All map[string]int64
}

// NetstatPath is where the kernel publishes the TcpExt counters of the
// reading thread's network namespace.
const NetstatPath = "/proc/thread-self/net/netstat"

// ParseNetstat parses /proc/net/netstat text: pairs of lines, a header line
// "Prefix: Name1 Name2 ..." followed by a value line "Prefix: v1 v2 ...".
// It returns every TcpExt counter; other prefixes (IpExt, MPTcpExt) are
// checked for shape and skipped. A missing TcpExt pair, a header without
// its value line, mismatched prefixes or field counts, or a value that is
// not a number is an error naming the line.
func ParseNetstat(r io.Reader) (TcpExt, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 16<<10), 1<<20)
	var (
		out    TcpExt
		found  bool
		header []byte
		hdrNo  int
		lineNo int
	)
	for sc.Scan() {
		lineNo++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if header == nil {
			header = append([]byte(nil), line...)
			hdrNo = lineNo
			continue
		}
		hp, hf, err := splitNetstat(header)
		if err != nil {
			return TcpExt{}, fmt.Errorf("netstat line %d: %w", hdrNo, err)
		}
		vp, vf, err := splitNetstat(line)
		if err != nil {
			return TcpExt{}, fmt.Errorf("netstat line %d: %w", lineNo, err)
		}
		if !bytes.Equal(hp, vp) {
			return TcpExt{}, fmt.Errorf("netstat line %d: prefix %q follows header %q of line %d", lineNo, vp, hp, hdrNo)
		}
		if len(hf) != len(vf) {
			return TcpExt{}, fmt.Errorf("netstat line %d: %d values for %d names on line %d", lineNo, len(vf), len(hf), hdrNo)
		}
		if string(hp) == "TcpExt" {
			if found {
				return TcpExt{}, fmt.Errorf("netstat line %d: second TcpExt section", lineNo)
			}
			found = true
			out.All = make(map[string]int64, len(hf))
			for i, name := range hf {
				v, err := strconv.ParseUint(string(vf[i]), 10, 63)
				if err != nil {
					return TcpExt{}, fmt.Errorf("netstat line %d: TcpExt %s: %w", lineNo, name, err)
				}
				out.All[string(name)] = int64(v)
			}
		}
		header = nil
	}
	if err := sc.Err(); err != nil {
		return TcpExt{}, fmt.Errorf("read netstat: %w", err)
	}
	if header != nil {
		return TcpExt{}, fmt.Errorf("netstat line %d: header without a value line", hdrNo)
	}
	if !found {
		return TcpExt{}, errors.New("netstat: no TcpExt section")
	}
	out.fill()
	return out, nil
}

// splitNetstat splits "Prefix: a b c" into the prefix and the fields.
func splitNetstat(line []byte) ([]byte, [][]byte, error) {
	prefix, rest, ok := bytes.Cut(line, []byte(":"))
	if !ok || len(prefix) == 0 || bytes.ContainsAny(prefix, " \t") {
		return nil, nil, fmt.Errorf("no \"Prefix:\" at the start of %.40q", line)
	}
	return prefix, bytes.Fields(rest), nil
}

// fill copies the named counters out of All.
func (t *TcpExt) fill() {
	t.SyncookiesSent = t.All["SyncookiesSent"]
	t.SyncookiesRecv = t.All["SyncookiesRecv"]
	t.SyncookiesFailed = t.All["SyncookiesFailed"]
	t.ListenOverflows = t.All["ListenOverflows"]
	t.ListenDrops = t.All["ListenDrops"]
	t.TCPReqQFullDrop = t.All["TCPReqQFullDrop"]
	t.TCPReqQFullDoCookies = t.All["TCPReqQFullDoCookies"]
}

// Delta returns b - a counter by counter: what happened between reading a
// and reading b. A counter that went down (the namespace was recreated, or
// a 32-bit counter wrapped) is taken as restarted from zero, so its delta
// is its value in b. Counters missing from a count from zero.
func Delta(a, b TcpExt) TcpExt {
	d := TcpExt{All: make(map[string]int64, len(b.All))}
	for name, vb := range b.All {
		va := a.All[name]
		if vb >= va {
			d.All[name] = vb - va
		} else {
			d.All[name] = vb
		}
	}
	if b.All == nil {
		// Only the named fields are set (a hand-built value): subtract those.
		sub := func(x, y int64) int64 {
			if y >= x {
				return y - x
			}
			return y
		}
		d.SyncookiesSent = sub(a.SyncookiesSent, b.SyncookiesSent)
		d.SyncookiesRecv = sub(a.SyncookiesRecv, b.SyncookiesRecv)
		d.SyncookiesFailed = sub(a.SyncookiesFailed, b.SyncookiesFailed)
		d.ListenOverflows = sub(a.ListenOverflows, b.ListenOverflows)
		d.ListenDrops = sub(a.ListenDrops, b.ListenDrops)
		d.TCPReqQFullDrop = sub(a.TCPReqQFullDrop, b.TCPReqQFullDrop)
		d.TCPReqQFullDoCookies = sub(a.TCPReqQFullDoCookies, b.TCPReqQFullDoCookies)
		d.All = nil
		return d
	}
	d.fill()
	return d
}

// ReadNetstat reads the TcpExt counters of the network namespace netns
// ("" for the caller's own; otherwise a name under /run/netns or a path such
// as /proc/PID/ns/net). For another namespace it enters it on a locked OS
// thread and reads /proc/thread-self/net/netstat, which shows the thread's
// namespace.
func ReadNetstat(netns string) (TcpExt, error) {
	var out TcpExt
	err := inNetNS(netns, func() error {
		f, err := os.Open(NetstatPath)
		if err != nil {
			return fmt.Errorf("open netstat counters: %w", err)
		}
		defer f.Close()
		out, err = ParseNetstat(f)
		if err != nil {
			return fmt.Errorf("%s: %w", NetstatPath, err)
		}
		return nil
	})
	return out, err
}

// NetstatCounters returns a counters function for Window that reads the
// TcpExt counters of netns (see ReadNetstat).
func NetstatCounters(netns string) func() (TcpExt, error) {
	return func() (TcpExt, error) { return ReadNetstat(netns) }
}
