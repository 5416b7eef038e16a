package detect

import (
	"iter"
	"net/netip"
)

// Table is a compact, append-only list of connections, in the order they
// were appended: 16 bytes per IPv4 flow and 48 per IPv6 flow, against the
// 72 bytes of a Conn. A table of 100,000 half-open and 100,000 established
// entries then holds 3.2 MB instead of 14.4 MB. The records are kept in
// chunks of fixed size, so growing the table never copies it (a slice
// grown by append allocates several times its final size on the way).
// Samplers that read large tables (sock_diag) decode into one; At and All
// give the entries back as Conns. The zero value is an empty table. A
// copy of a Table shares its records: append to one copy only.
type Table struct {
	recs chunked[tableRec]
	// six holds the endpoints of the IPv6 flows, indexed by their record.
	six []tableSix
}

// tableRec is one flow. An IPv4 flow keeps its addresses in local and
// remote; an IPv6 flow (flagSix) keeps, in local, the index of its
// addresses in Table.six.
type tableRec struct {
	local, remote [4]byte
	lport, rport  uint16
	state         TCPState
	flags         uint8
}

// tableSix is an IPv6 flow's two addresses.
type tableSix struct{ local, remote [16]byte }

// tableRec flags.
const (
	flagSix     = 1 << iota // addresses in Table.six
	flagLocal4              // IPv6 flow whose local address is IPv4
	flagRemote4             // IPv6 flow whose remote address is IPv4
)

// Len returns the number of connections in the table.
func (t *Table) Len() int { return int(t.recs.n) }

// Append adds c. Zones are not kept (connection tables have none).
func (t *Table) Append(c Conn) {
	l, r := c.Local.Addr(), c.Remote.Addr()
	rec := tableRec{lport: c.Local.Port(), rport: c.Remote.Port(), state: c.State}
	if l.Is4() && r.Is4() {
		rec.local, rec.remote = l.As4(), r.As4()
		t.recs.add(rec)
		return
	}
	t.appendSix(l.As16(), r.As16(), l.Is4(), r.Is4(), rec)
}

// append4 adds an IPv4 flow without building a Conn.
func (t *Table) append4(local, remote [4]byte, lport, rport uint16, st TCPState) {
	t.recs.add(tableRec{local: local, remote: remote, lport: lport, rport: rport, state: st})
}

// appendSix adds a flow kept as 16-byte addresses; local4 and remote4 say
// which ends are IPv4 (stored IPv4-mapped).
func (t *Table) appendSix(local, remote [16]byte, local4, remote4 bool, rec tableRec) {
	rec.flags = flagSix
	if local4 {
		rec.flags |= flagLocal4
	}
	if remote4 {
		rec.flags |= flagRemote4
	}
	i := uint32(len(t.six))
	rec.local = [4]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
	t.six = append(t.six, tableSix{local: local, remote: remote})
	t.recs.add(rec)
}

// At returns the connection at index i.
func (t *Table) At(i int) Conn {
	r := t.recs.at(int32(i))
	if r.flags&flagSix == 0 {
		return Conn{
			Local:  netip.AddrPortFrom(netip.AddrFrom4(r.local), r.lport),
			Remote: netip.AddrPortFrom(netip.AddrFrom4(r.remote), r.rport),
			State:  r.state,
		}
	}
	s := &t.six[uint32(r.local[0])<<24|uint32(r.local[1])<<16|uint32(r.local[2])<<8|uint32(r.local[3])]
	l, rm := netip.AddrFrom16(s.local), netip.AddrFrom16(s.remote)
	if r.flags&flagLocal4 != 0 {
		l = l.Unmap()
	}
	if r.flags&flagRemote4 != 0 {
		rm = rm.Unmap()
	}
	return Conn{Local: netip.AddrPortFrom(l, r.lport), Remote: netip.AddrPortFrom(rm, r.rport), State: r.state}
}

// Len returns the number of entries in the sample: Table's and Conns'.
func (s *Sample) Len() int { return s.Table.Len() + len(s.Conns) }

// At returns entry i of the sample: Table's entries come first, then
// Conns'.
func (s *Sample) At(i int) Conn {
	if n := s.Table.Len(); i < n {
		return s.Table.At(i)
	} else {
		return s.Conns[i-n]
	}
}

// conn returns entry i: in place from Conns, or decoded from Table into
// buf. The hot loops read entries through it, so a sample of Conns costs
// no copy.
func (s *Sample) conn(i int, buf *Conn) *Conn {
	if n := int(s.Table.recs.n); i >= n {
		return &s.Conns[i-n]
	}
	*buf = s.Table.At(i)
	return buf
}

// All iterates over the sample's entries in order: Table's, then Conns'.
func (s *Sample) All() iter.Seq[Conn] {
	return func(yield func(Conn) bool) {
		for i := range s.Table.Len() {
			if !yield(s.Table.At(i)) {
				return
			}
		}
		for _, c := range s.Conns {
			if !yield(c) {
				return
			}
		}
	}
}
