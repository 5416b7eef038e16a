package synflood

import (
	"encoding/binary"
	"fmt"
	"io"
)

// SpoofedProcNet streams a /proc/net/tcp table of n SYN_RECV entries to
// 10.0.0.1:80, each from a distinct address of 100.64.0.0/10 and up, as a
// spoofed flood leaves it: addresses printed as host-endian words, as the
// kernel prints them. It holds one buffer, whatever n.
func SpoofedProcNet(n int) io.Reader { return &procTable{n: n} }

type procTable struct {
	n, i int
	buf  []byte
}

func (s *procTable) Read(p []byte) (int, error) {
	word := func(a [4]byte) uint32 { return binary.NativeEndian.Uint32(a[:]) }
	for len(s.buf) < len(p) && s.i < s.n {
		var src [4]byte
		binary.BigEndian.PutUint32(src[:], 0x64400000+uint32(s.i))
		s.buf = fmt.Appendf(s.buf, "%6d: %08X:0050 %08X:%04X 03 00000000:00000000 01:00000000 00000000     0        0 0 2 0000000000000000\n",
			s.i, word([4]byte{10, 0, 0, 1}), word(src), 1024+s.i%60000)
		s.i++
	}
	if len(s.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.buf)
	s.buf = s.buf[:copy(s.buf, s.buf[n:])]
	return n, nil
}
