// Package synflood forges TCP SYNs from a raw socket for synban's kernel
// tests and benchmark lab. It is built to be hard to misuse: a Sender sends
// only to the one target it was opened for, and only from source addresses
// inside the prefixes it was given (the lab's own test prefixes). Callers
// bound the number of packets.
package synflood

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Sender sends forged IPv4 SYNs to one target.
type Sender struct {
	fd      int
	to      unix.SockaddrInet4
	target  netip.AddrPort
	allowed []netip.Prefix
	pkt     [40]byte
}

// Open opens a raw socket in the caller's network namespace (enter the
// attacker namespace first, e.g. with nsenter.Do) for SYNs to target, from
// sources inside allowed only.
func Open(target netip.AddrPort, allowed ...netip.Prefix) (*Sender, error) {
	if !target.Addr().Is4() {
		return nil, fmt.Errorf("synflood: target %s is not IPv4", target)
	}
	if len(allowed) == 0 {
		return nil, fmt.Errorf("synflood: no allowed source prefixes")
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("synflood: raw socket: %w", err)
	}
	return &Sender{fd: fd, to: unix.SockaddrInet4{Addr: target.Addr().As4()}, target: target, allowed: allowed}, nil
}

// SYN sends one SYN from src:sport with sequence number seq. A source
// outside the allowed prefixes is refused.
func (s *Sender) SYN(src netip.Addr, sport uint16, seq uint32) error {
	ok := false
	for _, p := range s.allowed {
		ok = ok || p.Contains(src)
	}
	if !ok {
		return fmt.Errorf("synflood: source %s is outside the lab's prefixes %v: refusing", src, s.allowed)
	}
	BuildSYN(s.pkt[:], src, s.target, sport, seq)
	if err := unix.Sendto(s.fd, s.pkt[:], 0, &s.to); err != nil {
		return fmt.Errorf("synflood: send SYN from %s: %w", src, err)
	}
	return nil
}

// Close closes the raw socket.
func (s *Sender) Close() error { return unix.Close(s.fd) }

// BuildSYN writes a 40-byte IPv4 TCP SYN from src:sport to dst into pkt,
// checksums included.
func BuildSYN(pkt []byte, src netip.Addr, dst netip.AddrPort, sport uint16, seq uint32) {
	clear(pkt[:40])
	s4, d4 := src.As4(), dst.Addr().As4()
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], 40)
	binary.BigEndian.PutUint16(pkt[6:], 0x4000) // don't fragment
	pkt[8] = 64
	pkt[9] = unix.IPPROTO_TCP
	copy(pkt[12:16], s4[:])
	copy(pkt[16:20], d4[:])
	binary.BigEndian.PutUint16(pkt[10:], checksum(pkt[:20], 0))
	tcp := pkt[20:40]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12] = 5 << 4
	tcp[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	var pseudo uint32
	for i := 0; i < 4; i += 2 {
		pseudo += uint32(s4[i])<<8 | uint32(s4[i+1])
		pseudo += uint32(d4[i])<<8 | uint32(d4[i+1])
	}
	pseudo += unix.IPPROTO_TCP + 20
	binary.BigEndian.PutUint16(tcp[16:], checksum(tcp, pseudo))
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
