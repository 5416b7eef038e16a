package detect

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/synban/synban/internal/trust"
)

// MaxProcNetLine is the longest /proc/net/tcp line ParseProcNet accepts, in
// bytes, line ending included. Longer lines are counted as malformed and
// skipped without being buffered whole.
const MaxProcNetLine = 4096

// maxParseErrors is how many error messages ParseStats keeps.
const maxParseErrors = 10

// Field counts of a /proc/net/tcp data line. The kernel prints 17 fields for
// full sockets and 12 for request (SYN_RECV) and TIME_WAIT sockets; the first
// 10 (sl .. inode) are always present. The upper bound leaves room for fields
// later kernels may add while still rejecting two lines run together.
const (
	minProcNetFields = 10
	maxProcNetFields = 32
)

// ParseStats describes one ParseProcNet run. Every line after the header
// that is not blank is counted in Lines and in exactly one of Conns, Listen
// and Malformed.
type ParseStats struct {
	// Lines is the number of non-blank data lines read (the header excluded).
	Lines int
	// Conns is the number of entries appended to dst.
	Conns int
	// Listen is the number of LISTEN entries skipped.
	Listen int
	// Malformed is the number of lines that could not be parsed.
	Malformed int
	// Errors holds the first 10 malformed-line messages, each naming its
	// 1-based line number in the input.
	Errors []string
}

func (s *ParseStats) malformed(line int, why string) {
	s.Malformed++
	if len(s.Errors) < maxParseErrors {
		s.Errors = append(s.Errors, fmt.Sprintf("line %d: %s", line, why))
	}
}

// ParseProcNet parses /proc/net/tcp or /proc/net/tcp6 text from r and
// appends every entry that is not a LISTEN socket to dst, returning the
// extended slice. IPv4 and IPv6 lines may be mixed; IPv4-mapped IPv6
// addresses are stored as IPv4. A leading header line ("sl local_address
// ...") is skipped. Malformed lines (wrong field count, bad hex, wrong
// address length, unknown state, truncated, longer than MaxProcNetLine) are
// counted and described in the returned ParseStats and otherwise skipped;
// the returned error reports only a failure to read r.
//
// The parser does not allocate per line: a caller that reuses dst between
// calls parses without allocating at all once dst has grown.
func ParseProcNet(r io.Reader, dst []Conn) ([]Conn, ParseStats, error) {
	var st ParseStats
	br := bufio.NewReaderSize(r, 64<<10)
	lineNo := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			lineNo++
			st.Lines++
			st.malformed(lineNo, fmt.Sprintf("longer than %d bytes", MaxProcNetLine))
			if err = skipLine(br); err != nil {
				if errors.Is(err, io.EOF) {
					return dst, st, nil
				}
				return dst, st, fmt.Errorf("read line %d: %w", lineNo, err)
			}
			continue
		}
		if len(line) > 0 {
			lineNo++
			if len(line) > MaxProcNetLine {
				st.Lines++
				st.malformed(lineNo, fmt.Sprintf("longer than %d bytes", MaxProcNetLine))
			} else {
				dst = parseLine(trimSpace(line), lineNo, dst, &st)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return dst, st, nil
			}
			return dst, st, fmt.Errorf("read line %d: %w", lineNo+1, err)
		}
	}
}

// skipLine discards input up to and including the next newline.
func skipLine(br *bufio.Reader) error {
	for {
		_, err := br.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}

// parseLine parses one trimmed line and appends its entry to dst.
func parseLine(line []byte, lineNo int, dst []Conn, st *ParseStats) []Conn {
	if len(line) == 0 {
		return dst
	}
	if lineNo == 1 && len(line) >= 2 && line[0] == 's' && line[1] == 'l' {
		return dst // the header
	}
	st.Lines++

	// Split the first four fields, counting the rest without keeping them.
	var f [4][]byte
	n := 0
	for i := 0; i < len(line); {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			break
		}
		j := i
		for j < len(line) && !isSpace(line[j]) {
			j++
		}
		if n < len(f) {
			f[n] = line[i:j]
		}
		n++
		i = j
	}
	if n < minProcNetFields || n > maxProcNetFields {
		st.malformed(lineNo, fmt.Sprintf("%d fields, want %d to %d", n, minProcNetFields, maxProcNetFields))
		return dst
	}
	if !validSlot(f[0]) {
		st.malformed(lineNo, fmt.Sprintf("bad slot %q", f[0]))
		return dst
	}
	local, ok := parseAddrPort(f[1])
	if !ok {
		st.malformed(lineNo, fmt.Sprintf("bad local address %q", f[1]))
		return dst
	}
	remote, ok := parseAddrPort(f[2])
	if !ok {
		st.malformed(lineNo, fmt.Sprintf("bad remote address %q", f[2]))
		return dst
	}
	if len(f[1]) != len(f[2]) {
		st.malformed(lineNo, "local and remote addresses of different families")
		return dst
	}
	s, ok := parseHex(f[3], 2)
	if !ok || len(f[3]) != 2 || s < uint64(Established) || s > uint64(NewSynRecv) {
		st.malformed(lineNo, fmt.Sprintf("bad state %q", f[3]))
		return dst
	}
	state := TCPState(s)
	if state == Listen {
		st.Listen++
		return dst
	}
	st.Conns++
	return append(dst, Conn{Local: local, Remote: remote, State: state})
}

// validSlot reports whether b is a slot number followed by a colon ("12:").
func validSlot(b []byte) bool {
	if len(b) < 2 || b[len(b)-1] != ':' {
		return false
	}
	for _, c := range b[:len(b)-1] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseAddrPort parses "0100007F:0050" (IPv4) or 32 hex digits and a port
// (IPv6). Each 32-bit word of the address is printed by the kernel as a hex
// number holding the word as it sits in memory, so the number is converted
// back to bytes in native byte order. The port is a plain hex number.
func parseAddrPort(b []byte) (netip.AddrPort, bool) {
	var a netip.Addr
	switch len(b) {
	case 8 + 1 + 4:
		var ip [4]byte
		w, ok := parseHex(b[:8], 8)
		if !ok {
			return netip.AddrPort{}, false
		}
		binary.NativeEndian.PutUint32(ip[:], uint32(w))
		a = netip.AddrFrom4(ip)
	case 32 + 1 + 4:
		var ip [16]byte
		for i := 0; i < 4; i++ {
			w, ok := parseHex(b[i*8:i*8+8], 8)
			if !ok {
				return netip.AddrPort{}, false
			}
			binary.NativeEndian.PutUint32(ip[i*4:], uint32(w))
		}
		a = netip.AddrFrom16(ip).Unmap()
	default:
		return netip.AddrPort{}, false
	}
	if b[len(b)-5] != ':' {
		return netip.AddrPort{}, false
	}
	port, ok := parseHex(b[len(b)-4:], 4)
	if !ok {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, uint16(port)), true
}

// parseHex parses b, of 1 to max hex digits (either case), as a number.
func parseHex(b []byte, max int) (uint64, bool) {
	if len(b) == 0 || len(b) > max {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

// trimSpace drops leading and trailing white space, CR and LF included.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// ProcFS samples the TCP tables from procfs text files.
type ProcFS struct {
	// Root is the procfs mount to read; "" means "/proc". A test can point it
	// at a fake tree holding net/tcp and net/tcp6, and /proc/PID reads the
	// tables of the network namespace process PID lives in.
	Root string
}

// Name returns "procfs".
func (p ProcFS) Name() string { return "procfs" }

// Sample reads Root/net/tcp and Root/net/tcp6 (a missing tcp6, as when IPv6
// is disabled, is not an error) into one Sample. Either must be a regular
// file: anything else is refused at once with a *trust.Error. Malformed lines are counted
// in the Sample, their messages prefixed with the file they came from.
func (p ProcFS) Sample(ctx context.Context) (Sample, error) {
	root := p.Root
	if root == "" {
		root = "/proc"
	}
	s := Sample{Source: p.Name()}
	for _, name := range []string{"net/tcp", "net/tcp6"} {
		if err := ctx.Err(); err != nil {
			return Sample{}, fmt.Errorf("procfs sample: %w", err)
		}
		path := filepath.Join(root, name)
		// Only a regular file (procfs files are regular, of size 0): a FIFO
		// planted in a --from capture is refused at once, not waited on.
		f, err := trust.OpenRegular(path, true)
		if err != nil {
			if name == "net/tcp6" && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return Sample{}, fmt.Errorf("procfs sample: %w", err)
		}
		if s.Time.IsZero() {
			s.Time = time.Now()
		}
		var st ParseStats
		s.Conns, st, err = ParseProcNet(f, s.Conns)
		f.Close()
		if err != nil {
			return Sample{}, fmt.Errorf("procfs sample: parse %s: %w", path, err)
		}
		s.Malformed += st.Malformed
		for _, e := range st.Errors {
			if len(s.Errors) < maxParseErrors {
				s.Errors = append(s.Errors, path+" "+e)
			}
		}
	}
	return s, nil
}
