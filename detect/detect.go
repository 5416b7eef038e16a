// Package detect samples the kernel's connection tables and decides which
// sources and prefixes are flooding the host.
package detect

import (
	"net/netip"
	"time"
)

// TCPState is a TCP state as the kernel numbers it in /proc/net/tcp and
// sock_diag (1 ESTABLISHED, 3 SYN_RECV, 10 LISTEN, ...).
type TCPState uint8

// Kernel TCP states.
const (
	Established TCPState = 1
	SynSent     TCPState = 2
	SynRecv     TCPState = 3
	FinWait1    TCPState = 4
	FinWait2    TCPState = 5
	TimeWait    TCPState = 6
	Close       TCPState = 7
	CloseWait   TCPState = 8
	LastAck     TCPState = 9
	Listen      TCPState = 10
	Closing     TCPState = 11
	NewSynRecv  TCPState = 12
)

// Conn is one connection-table entry, seen from this host: Local is our
// address and port, Remote the peer's. IPv4-mapped IPv6 addresses are stored
// unmapped, as IPv4.
type Conn struct {
	Local  netip.AddrPort
	Remote netip.AddrPort
	State  TCPState
}

// Sample is one reading of the connection table.
type Sample struct {
	// Time is when the reading was taken.
	Time time.Time
	// Source names the sampler ("procfs", "sockdiag", "conntrack").
	Source string
	// Table and Conns hold the entries read (LISTEN sockets excluded):
	// samplers of large tables (sock_diag) decode into the compact Table,
	// the others append to Conns. A sample's entries are Table's followed
	// by Conns'; read them with Len, At and All, which see both.
	Table Table
	Conns []Conn
	// Malformed counts lines or messages that could not be parsed.
	Malformed int
	// Errors holds the first few parse errors, with line numbers, for reports.
	Errors []string
	// Counters are the namespace's TcpExt counters read right after this
	// sample, when the window read them (the last sample of a window); nil
	// otherwise.
	Counters *TcpExt
}
