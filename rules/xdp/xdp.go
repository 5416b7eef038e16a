// Package xdp is synban's optional XDP fast path for bans: the ban sets
// mirrored into BPF maps and a small drop program attached to chosen
// interfaces, so that a banned source's packets are dropped in the driver,
// before the kernel builds a socket buffer, looks at conntrack or runs
// nftables. The firewall backend's table stays the source of truth and
// keeps enforcing whatever happens here.
//
// # Program and maps
//
// The program is written with cilium/ebpf's asm package (see program) and
// built into the binary: nothing is compiled at run time and no object
// file is shipped. It parses Ethernet (and one 802.1Q/802.1ad tag), IPv4
// and IPv6, and looks the source address up in one longest-prefix-match
// trie per family, keyed {prefixlen, address}, so a /24 ban stays one
// entry that matches every address inside it. An entry's value is
// {packets, expires}: the program adds one to packets with an atomic add
// on every drop, and passes the packet once expires (CLOCK_MONOTONIC
// nanoseconds, read at the tick) has passed, so an entry stops dropping at the ban's end
// even when no run comes to remove it, as the kernel set's element times
// out on its own. Each run removes expired and lifted entries.
//
// # Pins and crash safety
//
// The maps and one BPF link per interface are pinned under
// /sys/fs/bpf/synban/net-INODE (INODE: the network namespace's, so
// namespaces sharing a bpffs do not meet), and bpffs is mounted there if
// it is not. A later run opens the pinned maps and updates them key by
// key; the program is loaded and attached only where no pinned link is.
//
// Chosen over building a new map each run and swapping programs with a
// link update: per-key updates keep each entry's counter without a copy
// (a swap would lose the drops counted between copy and swap), write
// nothing when nothing changed (a run still reads both maps, two syscalls
// per entry), never leave the device without a program for a moment, and
// give the guarantees below by ordering alone. The price: the maps as a
// whole may be caught between the old and the new set, never an entry.
// A SIGKILL at any point leaves:
//
//   - every map entry either as it was or as the run wanted it (each
//     update and delete is one atomic syscall); entries are added and
//     refreshed before any is removed, so a ban that is in both the old and
//     the new set is never missing; what a kill can leave extra are
//     entries meant to go (an expired one passes already; a lifted one
//     drops until the next run or its own expiry);
//   - never a program attached without its maps: the kernel holds a
//     loaded program's maps for as long as the program lives, and a new
//     set of maps is created, filled and pinned before the program that
//     uses them is loaded and attached (see Sync); a link is pinned right
//     after its attach, and a link that was not pinned dies with the
//     killed process, so the next run attaches again;
//   - on flush, links detached before the maps' pins are removed.
//
// TestXDPSigkillMidSync kills a syncing process at a range of moments and
// checks each of these; TestApplyEntriesOrder replays every prefix of a
// sync's operations.
package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// DefaultRoot is where bpffs is expected (and mounted when absent).
const DefaultRoot = "/sys/fs/bpf"

// Attach modes, as policy's xdp.mode names them.
const (
	ModeNative  = "native"
	ModeGeneric = "generic"
)

// Config is what Sync needs from the policy.
type Config struct {
	// Interfaces are the devices the program attaches to.
	Interfaces []string
	// Mode is ModeNative or ModeGeneric.
	Mode string
	// MaxEntries caps each family's map (policy ban.max_entries).
	MaxEntries int
	// Root is the bpffs mount point; "" means DefaultRoot.
	Root string
}

// Ban is one entry the maps should hold: a masked prefix (IPv4 as IPv4,
// not IPv4-mapped) and when it ends (zero: never).
type Ban struct {
	Prefix  netip.Prefix
	Expires time.Time
}

// Entry is one map entry as read back.
type Entry struct {
	Prefix netip.Prefix
	// Packets is how many packets the program dropped for it.
	Packets uint64
	// Expires is when it stops dropping (zero: never).
	Expires time.Time
}

// Attachment is one pinned link: the program on an interface.
type Attachment struct {
	Interface string
	Ifindex   int
	Mode      string
}

// Result says what a Sync did.
type Result struct {
	Added, Updated, Removed int
	// Attached lists the interfaces the program is on after the run.
	Attached []Attachment
	// Mounted is set when Sync mounted bpffs itself: in a mount namespace
	// of the process's own (`ip netns exec` makes one, with a fresh /sys)
	// that mount, the pins and so the program end with the process.
	Mounted bool
}

// dir is the pin directory of the calling thread's network namespace
// under root.
func dir(root string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return "", fmt.Errorf("xdp: network namespace: %w", err)
	}
	return filepath.Join(root, "synban", "net-"+strconv.FormatUint(st.Ino, 10)), nil
}

// bpfFSMagic is bpffs's statfs type.
const bpfFSMagic = 0xcafe4a11

// isBPFFS reports whether path is on a bpffs.
func isBPFFS(path string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(path, &fs) == nil && uint32(fs.Type) == bpfFSMagic
}

// ensureBPFFS mounts bpffs at root if it is not there already, and
// reports whether it did.
func ensureBPFFS(root string) (bool, error) {
	if isBPFFS(root) {
		return false, nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return false, fmt.Errorf("xdp: make %s: %w", root, err)
	}
	if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
		return false, fmt.Errorf("xdp: mount bpffs at %s: %w", root, err)
	}
	return true, nil
}

func rootOf(root string) string {
	if root == "" {
		return DefaultRoot
	}
	return root
}

// value is a map entry's value, as the program reads it.
type value struct {
	Packets uint64
	Expires uint64 // CLOCK_MONOTONIC ns; 0 = never
}

// key4 and key6 are the LPM trie keys.
type key4 struct {
	Bits uint32
	Addr [4]byte
}

type key6 struct {
	Bits uint32
	Addr [16]byte
}

// mapSpec is a family's map.
func mapSpec(name string, keySize uint32, max int) *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name:       name,
		Type:       ebpf.LPMTrie,
		KeySize:    keySize,
		ValueSize:  16,
		MaxEntries: uint32(max),
		Flags:      unix.BPF_F_NO_PREALLOC,
	}
}

// clock converts between wall-clock time and CLOCK_MONOTONIC, which the
// program compares expiries with (coarse: at the tick). Monotonic time
// stands still while the machine is suspended, so a ban then lasts longer
// by the suspension, never shorter; the next run removes it by wall time.
type clock struct {
	wall time.Time
	mono int64
}

func now() (clock, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return clock{}, fmt.Errorf("xdp: CLOCK_MONOTONIC: %w", err)
	}
	return clock{wall: time.Now(), mono: ts.Nano()}, nil
}

func (c clock) toMono(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	b := c.mono + int64(t.Sub(c.wall))
	if b < 1 {
		b = 1 // already over: an expiry in the past, never "never"
	}
	return uint64(b)
}

func (c clock) toWall(b uint64) time.Time {
	if b == 0 {
		return time.Time{}
	}
	return c.wall.Add(time.Duration(int64(b) - c.mono)).Round(time.Second)
}

// maps are a namespace's two tries.
type maps struct {
	v4, v6 *ebpf.Map
}

func (m *maps) Close() {
	for _, x := range []*ebpf.Map{m.v4, m.v6} {
		if x != nil {
			x.Close()
		}
	}
}

// mapFor returns the map and key of p.
func (m *maps) mapFor(p netip.Prefix) (*ebpf.Map, any) {
	a := p.Addr()
	if a.Is4() {
		return m.v4, key4{Bits: uint32(p.Bits()), Addr: a.As4()}
	}
	return m.v6, key6{Bits: uint32(p.Bits()), Addr: a.As16()}
}

// entries reads both maps.
func (m *maps) entries(c clock) ([]Entry, error) {
	var out []Entry
	var k4 key4
	var v value
	it := m.v4.Iterate()
	for it.Next(&k4, &v) {
		out = append(out, Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4(k4.Addr), int(k4.Bits)), Packets: v.Packets, Expires: c.toWall(v.Expires)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("xdp: read IPv4 map: %w", err)
	}
	var k6 key6
	it = m.v6.Iterate()
	for it.Next(&k6, &v) {
		out = append(out, Entry{Prefix: netip.PrefixFrom(netip.AddrFrom16(k6.Addr), int(k6.Bits)), Packets: v.Packets, Expires: c.toWall(v.Expires)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("xdp: read IPv6 map: %w", err)
	}
	return out, nil
}

// Map pin names.
const (
	pin4 = "bans4"
	pin6 = "bans6"
)

// openMaps opens the pinned maps in d; ok is false when they are not both
// there.
func openMaps(d string) (*maps, bool, error) {
	m := &maps{}
	var err error
	if m.v4, err = ebpf.LoadPinnedMap(filepath.Join(d, pin4), nil); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("xdp: open pinned map: %w", err)
	}
	if m.v6, err = ebpf.LoadPinnedMap(filepath.Join(d, pin6), nil); err != nil {
		m.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("xdp: open pinned map: %w", err)
	}
	return m, true, nil
}

// compatible reports whether pinned maps fit what this run would create.
func (m *maps) compatible(max int) bool {
	ok := func(x *ebpf.Map, keySize uint32) bool {
		return x.Type() == ebpf.LPMTrie && x.KeySize() == keySize && x.ValueSize() == 16 && x.MaxEntries() == uint32(max)
	}
	return ok(m.v4, 8) && ok(m.v6, 20)
}

// parseLinkPin parses a link pin name "link-IFINDEX-MODE".
func parseLinkPin(name string) (ifindex int, mode string, ok bool) {
	rest, found := strings.CutPrefix(name, "link-")
	if !found {
		return 0, "", false
	}
	idx, mode, found := strings.Cut(rest, "-")
	n, err := strconv.Atoi(idx)
	if !found || err != nil || n <= 0 || !slices.Contains([]string{ModeNative, ModeGeneric}, mode) {
		return 0, "", false
	}
	return n, mode, true
}

func linkPin(ifindex int, mode string) string {
	return fmt.Sprintf("link-%d-%s", ifindex, mode)
}
