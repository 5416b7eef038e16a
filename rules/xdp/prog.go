package xdp

import (
	"encoding/binary"

	"github.com/cilium/ebpf/asm"
)

// XDP return codes (enum xdp_action).
const (
	xdpDrop = 1
	xdpPass = 2
)

// etherType returns the EtherType t as a 16-bit load from the packet reads
// it on this machine (packets are big-endian, loads native).
func etherType(t uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], t)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// program returns the drop program: parse Ethernet (and one 802.1Q or
// 802.1ad tag), IPv4 or IPv6, look the source address up in the family's
// LPM trie (fd4, fd6), and on a hit whose expiry (CLOCK_MONOTONIC ns, 0 =
// none) has not passed add one to the entry's packet counter atomically and
// drop; pass everything else, short and unknown packets included.
//
// The expiry is read against bpf_ktime_get_coarse_ns (the tick's
// CLOCK_MONOTONIC_COARSE: a ban ends up to one tick late), not
// bpf_ktime_get_boot_ns: reading the clock source on every dropped packet
// cost about 20 ns of the 50 per packet under kvm-clock (BENCHMARKS.md).
//
// Register use: R2 data, R3 data_end, R7 the L3 header, R6 the map value
// across the helper call.
func program(fd4, fd6 int) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R7, asm.R2),
		asm.Add.Imm(asm.R7, 14),
		asm.JGT.Reg(asm.R7, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half), // EtherType
		asm.JEq.Imm(asm.R5, etherType(0x8100), "vlan"),
		asm.JEq.Imm(asm.R5, etherType(0x88a8), "vlan"),
		asm.Ja.Label("l3"),

		asm.Mov.Reg(asm.R7, asm.R2).WithSymbol("vlan"),
		asm.Add.Imm(asm.R7, 18),
		asm.JGT.Reg(asm.R7, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 16, asm.Half), // inner EtherType

		asm.JEq.Imm(asm.R5, etherType(0x0800), "ipv4").WithSymbol("l3"),
		asm.JEq.Imm(asm.R5, etherType(0x86dd), "ipv6"),
		asm.Ja.Label("pass"),

		// IPv4: key {prefixlen 32, saddr} at fp-8.
		asm.Mov.Reg(asm.R4, asm.R7).WithSymbol("ipv4"),
		asm.Add.Imm(asm.R4, 20),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.StoreImm(asm.RFP, -8, 32, asm.Word),
		asm.LoadMem(asm.R5, asm.R7, 12, asm.Word),
		asm.StoreMem(asm.RFP, -4, asm.R5, asm.Word),
		asm.LoadMapPtr(asm.R1, fd4),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.Ja.Label("hit"),

		// IPv6: key {prefixlen 128, saddr} at fp-24.
		asm.Mov.Reg(asm.R4, asm.R7).WithSymbol("ipv6"),
		asm.Add.Imm(asm.R4, 40),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.StoreImm(asm.RFP, -24, 128, asm.Word),
		asm.LoadMem(asm.R5, asm.R7, 8, asm.Word),
		asm.StoreMem(asm.RFP, -20, asm.R5, asm.Word),
		asm.LoadMem(asm.R5, asm.R7, 12, asm.Word),
		asm.StoreMem(asm.RFP, -16, asm.R5, asm.Word),
		asm.LoadMem(asm.R5, asm.R7, 16, asm.Word),
		asm.StoreMem(asm.RFP, -12, asm.R5, asm.Word),
		asm.LoadMem(asm.R5, asm.R7, 20, asm.Word),
		asm.StoreMem(asm.RFP, -8, asm.R5, asm.Word),
		asm.LoadMapPtr(asm.R1, fd6),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -24),
		asm.FnMapLookupElem.Call(),

		// R0: the entry's value {packets u64, expires u64} or NULL.
		asm.JEq.Imm(asm.R0, 0, "pass").WithSymbol("hit"),
		asm.Mov.Reg(asm.R6, asm.R0),
		asm.LoadMem(asm.R8, asm.R6, 8, asm.DWord), // expires
		asm.JEq.Imm(asm.R8, 0, "drop"),
		asm.FnKtimeGetCoarseNs.Call(),
		asm.JGE.Reg(asm.R0, asm.R8, "pass"), // expired: the next run removes it

		asm.Mov.Imm(asm.R1, 1).WithSymbol("drop"),
		asm.StoreXAdd(asm.R6, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, xdpDrop),
		asm.Return(),

		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	}
}
