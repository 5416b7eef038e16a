package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/internal/nsenter"
)

// The xdp sender: the attacker runs a small XDP program with BPF_PROG_RUN
// in live-frame mode (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18). The kernel
// puts the template SYN into page-pool pages, runs the program on each, and
// the program rewrites the source address, source port and sequence number,
// recomputes both checksums and redirects the frame to the attacker's veth.
// veth's ndo_xdp_xmit hands it to the victim's veth as an xdp_frame, without
// an skb: the victim's XDP program (if any) runs on the frame in the veth's
// NAPI poll, and only a frame it passes becomes an skb there. That models a
// physical NIC, where XDP runs on the DMA'd page before any skb exists;
// trafgen (AF_PACKET) instead builds an skb on the sending side, which veth
// passes on, so on a veth XDP then runs on an skb that already exists.
//
// veth accepts ndo_xdp_xmit frames only when the receiving veth has NAPI:
// an XDP program attached or GRO on, so the victim's veth has GRO on with
// this sender (as a physical NIC has by default).
//
// CPU accounting: the sender runs the program in process context with
// bottom halves disabled (system time), flushes each batch of 64 frames into
// the victim veth's ring and schedules its NAPI on its own CPU; the
// local_bh_enable that ends the batch runs that NET_RX softirq (or
// ksoftirqd does, on the same CPU). So as with trafgen, floodCPU's softirq
// time is the victim's receive work and the sender's own work is system
// time; the "sender alone" row measures what is left when no frame reaches
// the victim.

// XDP actions (enum xdp_action).
const (
	xdpActDrop     = 1
	xdpActRedirect = 4
)

// Offsets in the template frame: Ethernet, IPv4 without options, TCP
// without options.
const (
	frameIP    = 14
	frameTCP   = frameIP + 20
	frameLen   = frameTCP + 20
	offIPCsum  = frameIP + 10
	offSaddr   = frameIP + 12
	offDaddr   = frameIP + 16
	offSport   = frameTCP
	offSeq     = frameTCP + 4
	offTCPCsum = frameTCP + 16
)

// synFrame is the template SYN of the xdp sender: from srcMAC to dstMAC,
// 10.100.0.1:1024 to the victim's port, window 64240, checksums filled in.
func synFrame(srcMAC, dstMAC net.HardwareAddr) []byte {
	f := make([]byte, frameLen)
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[frameIP:frameTCP]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	ip[8] = 64 // TTL
	ip[9] = unix.IPPROTO_TCP
	copy(ip[12:16], []byte{10, 100, 0, 1})
	v := dropVictimAddr.As4()
	copy(ip[16:20], v[:])
	binary.BigEndian.PutUint16(ip[10:], inetChecksum(ip, 0))
	tcp := f[frameTCP:]
	binary.BigEndian.PutUint16(tcp[0:], 1024)
	binary.BigEndian.PutUint16(tcp[2:], dropPort)
	binary.BigEndian.PutUint32(tcp[4:], 1)
	tcp[12] = 5 << 4 // data offset
	tcp[13] = 0x02   // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	binary.BigEndian.PutUint16(tcp[16:], inetChecksum(tcp, pseudoSum(ip)))
	return f
}

// pseudoSum is the one's complement sum of the TCP pseudo-header of a
// 20-byte TCP segment in the IPv4 header ip.
func pseudoSum(ip []byte) uint32 {
	var s uint32
	for i := 12; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	return s + unix.IPPROTO_TCP + 20
}

// inetChecksum is the Internet checksum (RFC 1071) of b, added to the
// partial sum seed.
func inetChecksum(b []byte, seed uint32) uint16 {
	s := seed
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// sourceInsns leave the case's next source address, host order, in R8,
// drawn from R0 (a random number): (a) 10.100.0.1; (b) half 10.100.0-38.x
// (inside the 10,000 banned /32s) and half 10.160-163.0-249.x (inside the
// banned /24s), as trafgenConf draws them; (c) 10.202.x.x.
func sourceInsns(c int) asm.Instructions {
	switch c {
	case caseOne:
		return asm.Instructions{asm.Mov.Imm32(asm.R8, 0x0a640001)}
	case caseMany:
		return asm.Instructions{
			asm.Mov.Reg(asm.R9, asm.R0),
			asm.Mov.Reg(asm.R1, asm.R9),
			asm.And.Imm(asm.R1, 1),
			asm.JEq.Imm(asm.R1, 1, "net24"),
			// 10.100.(r>>1 % 39).(r>>9 & 0xff)
			asm.Mov.Imm32(asm.R8, 0x0a640000),
			asm.Mov.Reg(asm.R1, asm.R9),
			asm.RSh.Imm(asm.R1, 1),
			asm.Mod.Imm(asm.R1, 39),
			asm.LSh.Imm(asm.R1, 8),
			asm.Or.Reg(asm.R8, asm.R1),
			asm.Mov.Reg(asm.R1, asm.R9),
			asm.RSh.Imm(asm.R1, 9),
			asm.And.Imm(asm.R1, 0xff),
			asm.Or.Reg(asm.R8, asm.R1),
			asm.Ja.Label("source"),
			// 10.(160 + r>>1 % 4).(r>>3 % 250).(r>>11 & 0xff)
			asm.Mov.Imm32(asm.R8, 0x0aa00000).WithSymbol("net24"),
			asm.Mov.Reg(asm.R1, asm.R9),
			asm.RSh.Imm(asm.R1, 1),
			asm.And.Imm(asm.R1, 3),
			asm.LSh.Imm(asm.R1, 16),
			asm.Add.Reg(asm.R8, asm.R1),
			asm.Mov.Reg(asm.R1, asm.R9),
			asm.RSh.Imm(asm.R1, 3),
			asm.Mod.Imm(asm.R1, 250),
			asm.LSh.Imm(asm.R1, 8),
			asm.Or.Reg(asm.R8, asm.R1),
			asm.Mov.Reg(asm.R1, asm.R9),
			asm.RSh.Imm(asm.R1, 11),
			asm.And.Imm(asm.R1, 0xff),
			asm.Or.Reg(asm.R8, asm.R1),
		}
	default:
		return asm.Instructions{
			asm.Mov.Imm32(asm.R8, 0x0aca0000),
			asm.And.Imm(asm.R0, 0xffff),
			asm.Or.Reg(asm.R8, asm.R0),
		}
	}
}

// foldInsns turn the 32-bit one's complement sum in R0 into the checksum
// to store (natively, as the sum was taken over native loads).
func foldInsns() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg32(asm.R0, asm.R0),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.RSh.Imm(asm.R1, 16),
		asm.And.Imm(asm.R0, 0xffff),
		asm.Add.Reg(asm.R0, asm.R1),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.RSh.Imm(asm.R1, 16),
		asm.Add.Reg(asm.R0, asm.R1),
		asm.Xor.Imm(asm.R0, 0xffff),
	}
}

// senderProgram is the xdp sender's program for case c: it rewrites the
// template frame (source address by the case, random source port and
// sequence number, both checksums) and redirects it to ifindex, or, with
// ifindex 0, drops it (the sender alone, for the accounting check).
//
// Register use: R6 data, R7 data_end, R8 the source address.
func senderProgram(c, ifindex int) asm.Instructions {
	insns := asm.Instructions{
		asm.LoadMem(asm.R6, asm.R1, 0, asm.Word),
		asm.LoadMem(asm.R7, asm.R1, 4, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R6),
		asm.Add.Imm(asm.R2, frameLen),
		asm.JGT.Reg(asm.R2, asm.R7, "short"),
		asm.FnGetPrandomU32.Call(),
	}
	insns = append(insns, sourceInsns(c)...)
	insns = append(insns,
		asm.HostTo(asm.BE, asm.R8, asm.Word).WithSymbol("source"),
		asm.StoreMem(asm.R6, offSaddr, asm.R8, asm.Word),
		asm.FnGetPrandomU32.Call(),
		asm.StoreMem(asm.R6, offSport, asm.R0, asm.Half),
		asm.FnGetPrandomU32.Call(),
		asm.StoreMem(asm.R6, offSeq, asm.R0, asm.Word),
		// IPv4 header checksum over the header with the field zeroed.
		asm.StoreImm(asm.R6, offIPCsum, 0, asm.Half),
		asm.Mov.Imm(asm.R1, 0),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.R6),
		asm.Add.Imm(asm.R3, frameIP),
		asm.Mov.Imm(asm.R4, 20),
		asm.Mov.Imm(asm.R5, 0),
		asm.FnCsumDiff.Call(),
	)
	insns = append(insns, foldInsns()...)
	insns = append(insns,
		asm.StoreMem(asm.R6, offIPCsum, asm.R0, asm.Half),
		// TCP checksum: the pseudo-header (source, destination, zero,
		// protocol, TCP length) on the stack, then the segment.
		asm.LoadMem(asm.R1, asm.R6, offSaddr, asm.Word),
		asm.StoreMem(asm.RFP, -16, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R6, offDaddr, asm.Word),
		asm.StoreMem(asm.RFP, -12, asm.R1, asm.Word),
		asm.StoreImm(asm.RFP, -8, 0, asm.Byte),
		asm.StoreImm(asm.RFP, -7, unix.IPPROTO_TCP, asm.Byte),
		asm.StoreImm(asm.RFP, -6, 0, asm.Byte),
		asm.StoreImm(asm.RFP, -5, 20, asm.Byte),
		asm.Mov.Imm(asm.R1, 0),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -16),
		asm.Mov.Imm(asm.R4, 12),
		asm.Mov.Imm(asm.R5, 0),
		asm.FnCsumDiff.Call(),
		asm.StoreImm(asm.R6, offTCPCsum, 0, asm.Half),
		asm.Mov.Reg32(asm.R5, asm.R0),
		asm.Mov.Imm(asm.R1, 0),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.R6),
		asm.Add.Imm(asm.R3, frameTCP),
		asm.Mov.Imm(asm.R4, 20),
		asm.FnCsumDiff.Call(),
	)
	insns = append(insns, foldInsns()...)
	insns = append(insns, asm.StoreMem(asm.R6, offTCPCsum, asm.R0, asm.Half))
	if ifindex == 0 {
		insns = append(insns, asm.Mov.Imm(asm.R0, xdpActDrop), asm.Return())
	} else {
		insns = append(insns,
			asm.Mov.Imm(asm.R1, int32(ifindex)),
			asm.Mov.Imm(asm.R2, 0),
			asm.FnRedirect.Call(),
			asm.Return(),
		)
	}
	insns = append(insns, asm.Mov.Imm(asm.R0, xdpActDrop).WithSymbol("short"), asm.Return())
	return insns
}

// loadSender loads the sender program of case c for ifindex (0: drop).
func loadSender(c, ifindex int) (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "synban_send",
		Type:         ebpf.XDP,
		License:      "GPL", // bpf_redirect and bpf_csum_diff are not GPL-only; any licence would do
		Instructions: senderProgram(c, ifindex),
	})
	if err != nil {
		return nil, fmt.Errorf("load the xdp sender program: %w", err)
	}
	return prog, nil
}

// xdpSend runs the sender program of case c in the attacker namespace ns
// (a namespace file), pinned to cpu, in live-frame mode until deadline or
// until budget frames have been run, and returns how many were run. With
// ifindex 0 the program drops every frame at the sender.
func xdpSend(ns string, cpu, c, ifindex int, frame []byte, deadline time.Time, budget uint64) (sent uint64, err error) {
	prog, err := loadSender(c, ifindex)
	if err != nil {
		return 0, err
	}
	defer prog.Close()
	err = nsenter.Do(ns, func() (err error) {
		// nsenter.Do locked this goroutine to its thread: pin the thread,
		// and give it back as it was.
		unpin, err := pinThread(cpu)
		if err != nil {
			return fmt.Errorf("the sender: %w", err)
		}
		defer func() {
			if e := unpin(); e != nil {
				err = errors.Join(err, fmt.Errorf("the sender: %w", e))
			}
		}()
		const chunk = 50000 // 25-100 ms at this lab's rates: the deadline is checked between chunks
		for sent < budget && time.Now().Before(deadline) {
			n := uint32(min(chunk, budget-sent))
			if _, err := prog.Run(&ebpf.RunOptions{Data: frame, Repeat: n, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES}); err != nil {
				return fmt.Errorf("BPF_PROG_RUN (live frames): %w", err)
			}
			sent += uint64(n)
		}
		return nil
	})
	return sent, err
}

// setGRO switches GRO on dev in the namespace ns (a namespace file) on or
// off with the ethtool ioctl (ETHTOOL_SGRO), as `ethtool -K dev gro on`
// does; on a veth it gives the receiving side NAPI, which it needs to
// accept ndo_xdp_xmit frames.
func setGRO(ns, dev string, on bool) error {
	const ethtoolSGRO = 0x2c
	return nsenter.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("GRO of %s: socket: %w", dev, err)
		}
		defer unix.Close(fd)
		val := struct{ cmd, data uint32 }{cmd: ethtoolSGRO}
		if on {
			val.data = 1
		}
		var ifr struct {
			name [unix.IFNAMSIZ]byte
			data unsafe.Pointer
			_    [24 - unsafe.Sizeof(uintptr(0))]byte
		}
		if len(dev) >= unix.IFNAMSIZ {
			return errors.New("GRO: device name too long: " + dev)
		}
		copy(ifr.name[:], dev)
		ifr.data = unsafe.Pointer(&val)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
			return fmt.Errorf("GRO of %s: SIOCETHTOOL: %w", dev, errno)
		}
		return nil
	})
}

// pinThread pins the calling OS thread (locked to its goroutine, as
// nsenter.Do's are) to cpu; unpin gives it back the CPUs it had.
func pinThread(cpu int) (unpin func() error, err error) {
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("thread's CPU affinity: %w", err)
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return nil, fmt.Errorf("pin the thread to CPU %d: %w", cpu, err)
	}
	return func() error {
		if err := unix.SchedSetaffinity(0, &old); err != nil {
			return fmt.Errorf("unpin the thread from CPU %d: %w", cpu, err)
		}
		return nil
	}, nil
}
