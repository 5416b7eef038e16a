package xdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// AttachError says why the program is not on an interface. The maps are
// synced all the same; the firewall backend keeps enforcing there.
type AttachError struct {
	Interface string
	Mode      string
	Err       error
}

func (e *AttachError) Error() string {
	return fmt.Sprintf("xdp: cannot attach to %s in %s mode: %v", e.Interface, e.Mode, e.Err)
}

func (e *AttachError) Unwrap() error { return e.Err }

// Sync makes the pinned maps of this network namespace hold exactly bans
// and the drop program sit on cfg.Interfaces in cfg.Mode (and nowhere
// else), creating, filling and pinning the maps before the program is
// loaded and attached. An interface it cannot attach to gives an
// *AttachError in the returned error (joined, one per interface) while the
// rest is done; other errors (no BPF, no bpffs) come before anything is
// attached. See the package doc for what a SIGKILL leaves.
func Sync(cfg Config, bans []Ban) (*Result, error) {
	for _, b := range bans {
		if !b.Prefix.IsValid() || b.Prefix != b.Prefix.Masked() || b.Prefix.Addr().Is4In6() || b.Prefix.Addr().Zone() != "" {
			return nil, fmt.Errorf("xdp: %v is not a masked IPv4 or IPv6 prefix", b.Prefix)
		}
	}
	if cfg.Mode != ModeNative && cfg.Mode != ModeGeneric {
		return nil, fmt.Errorf("xdp: unknown mode %q", cfg.Mode)
	}
	if cfg.MaxEntries < 1 {
		return nil, fmt.Errorf("xdp: max entries %d", cfg.MaxEntries)
	}
	root := rootOf(cfg.Root)
	mounted, err := ensureBPFFS(root)
	if err != nil {
		return nil, err
	}
	d, err := dir(root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, fmt.Errorf("xdp: make %s: %w", d, err)
	}
	c, err := now()
	if err != nil {
		return nil, err
	}
	res := &Result{Mounted: mounted}

	m, ok, err := openMaps(d)
	if err != nil {
		return nil, err
	}
	if ok && !m.compatible(cfg.MaxEntries) {
		// Another size (ban.max_entries changed): start over. The backend
		// enforces meanwhile.
		m.Close()
		if err := flushDir(d); err != nil {
			return nil, err
		}
		ok = false
	}
	if !ok {
		// Half-made pins (a run killed between the two) go with any link.
		if err := flushDir(d); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("xdp: make %s: %w", d, err)
		}
		if m, err = createMaps(cfg.MaxEntries); err != nil {
			return nil, err
		}
	}
	defer m.Close()
	if err := syncEntries(m, bans, c, res); err != nil {
		return nil, err
	}
	if !ok {
		// Filled: only now pinned, and only then used by a program.
		if err := m.v4.Pin(filepath.Join(d, pin4)); err != nil {
			return nil, fmt.Errorf("xdp: pin map: %w", err)
		}
		if err := m.v6.Pin(filepath.Join(d, pin6)); err != nil {
			return nil, fmt.Errorf("xdp: pin map: %w", err)
		}
	}
	attached, err := syncLinks(d, m, cfg)
	res.Attached = attached
	return res, err
}

// createMaps makes a fresh, empty, unpinned pair of maps.
func createMaps(max int) (*maps, error) {
	m := &maps{}
	var err error
	if m.v4, err = ebpf.NewMap(mapSpec("synban_bans4", 8, max)); err != nil {
		return nil, fmt.Errorf("xdp: create IPv4 map: %w", err)
	}
	if m.v6, err = ebpf.NewMap(mapSpec("synban_bans6", 20, max)); err != nil {
		m.Close()
		return nil, fmt.Errorf("xdp: create IPv6 map: %w", err)
	}
	return m, nil
}

// entryOps are the map operations syncEntries makes, one atomic syscall
// each; a seam so that their order is tested without a kernel.
type entryOps interface {
	// put writes p's value (a new entry, or a refreshed expiry).
	put(p netip.Prefix, v value) error
	// del removes p's entry.
	del(p netip.Prefix) error
	// packets reads p's counter now (0 when it cannot).
	packets(p netip.Prefix) uint64
}

func (m *maps) put(p netip.Prefix, v value) error {
	mp, k := m.mapFor(p)
	return mp.Update(k, v, ebpf.UpdateAny)
}

func (m *maps) del(p netip.Prefix) error {
	mp, k := m.mapFor(p)
	if err := mp.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

func (m *maps) packets(p netip.Prefix) uint64 {
	mp, k := m.mapFor(p)
	var v value
	if mp.Lookup(k, &v) != nil {
		return 0
	}
	return v.Packets
}

// syncEntries makes the maps hold bans: it adds and refreshes entries
// first, then removes those not in bans, so a ban in both the old and the
// new set is never missing, even when the process dies half-way.
func syncEntries(m *maps, bans []Ban, c clock, res *Result) error {
	have, err := m.entries(c)
	if err != nil {
		return err
	}
	return applyEntries(m, have, bans, c, res)
}

// applyEntries changes the entries have into bans through ops.
func applyEntries(ops entryOps, have []Entry, bans []Ban, c clock, res *Result) error {
	cur := make(map[netip.Prefix]Entry, len(have))
	for _, e := range have {
		cur[e.Prefix] = e
	}
	want := make(map[netip.Prefix]bool, len(bans))
	for _, b := range bans {
		want[b.Prefix] = true
		exp := c.toMono(b.Expires)
		old, found := cur[b.Prefix]
		if found && abs(int64(c.toMono(old.Expires))-int64(exp)) < int64(time.Second) {
			continue // unchanged (Entry.Expires is rounded to the second)
		}
		v := value{Expires: exp}
		if found {
			// Keep the counter; a drop counted between this read and the
			// write below is lost, which a counter can bear.
			v.Packets = ops.packets(b.Prefix)
		}
		if err := ops.put(b.Prefix, v); err != nil {
			return fmt.Errorf("xdp: add %s: %w", b.Prefix, err)
		}
		if found {
			res.Updated++
		} else {
			res.Added++
		}
	}
	for _, e := range have {
		if want[e.Prefix] {
			continue
		}
		if err := ops.del(e.Prefix); err != nil {
			return fmt.Errorf("xdp: remove %s: %w", e.Prefix, err)
		}
		res.Removed++
	}
	return nil
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// ifName is the configured name of the interface with ifindex.
func ifName(wants []want, ifindex int) string {
	for _, w := range wants {
		if w.ifindex == ifindex {
			return w.name
		}
	}
	return fmt.Sprint(ifindex)
}

// linkFlags maps a mode to the attach flag.
func linkFlags(mode string) link.XDPAttachFlags {
	if mode == ModeGeneric {
		return link.XDPGenericMode
	}
	return link.XDPDriverMode
}

// want is an interface the program should be on.
type want struct {
	name    string
	ifindex int
}

// syncLinks keeps the pinned links that match cfg (replacing, in place, a
// program another synban version left on them), detaches the rest, and
// attaches the program where it is missing.
func syncLinks(d string, m *maps, cfg Config) ([]Attachment, error) {
	var wants []want
	var errs []error
	for _, name := range cfg.Interfaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			errs = append(errs, &AttachError{Interface: name, Mode: cfg.Mode, Err: fmt.Errorf("no such interface")})
			continue
		}
		wants = append(wants, want{name, ifc.Index})
	}
	have, err := pinnedLinks(d)
	if err != nil {
		return nil, err
	}
	insns := program(m.v4.FD(), m.v6.FD())
	var prog *ebpf.Program
	defer func() {
		if prog != nil {
			prog.Close()
		}
	}()
	load := func() (*ebpf.Program, error) {
		if prog == nil {
			p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "synban_xdp", Type: ebpf.XDP, License: "GPL", Instructions: insns})
			if err != nil {
				return nil, fmt.Errorf("xdp: load the drop program: %w", err)
			}
			prog = p
		}
		return prog, nil
	}
	var out []Attachment
	kept := map[int]bool{}
	for _, l := range have {
		keep := l.mode == cfg.Mode && slices.ContainsFunc(wants, func(w want) bool { return w.ifindex == l.ifindex }) && l.live()
		if !keep {
			if err := l.detach(); err != nil {
				return nil, err
			}
			continue
		}
		kept[l.ifindex] = true
		// A link made by another version of synban runs that version's
		// program: replace it in place (the link stays attached, so no
		// packet goes unfiltered), or the maps' values would be read
		// by a program that understands them otherwise. The tags compared
		// are the kernel's, this version's program loaded for it
		// (cilium/ebpf's Instructions.Tag hashes jumps before their offsets
		// are resolved, so it would never match).
		p, err := load()
		if err == nil && progTag(p) != l.programTag() {
			err = l.link.Update(p)
		}
		if err != nil {
			errs = append(errs, &AttachError{Interface: ifName(wants, l.ifindex), Mode: cfg.Mode, Err: fmt.Errorf("replace the program of another synban version: %w", err)})
		}
		l.link.Close() // pinned: stays attached
	}
	for _, w := range wants {
		if kept[w.ifindex] {
			out = append(out, Attachment{Interface: w.name, Ifindex: w.ifindex, Mode: cfg.Mode})
			continue
		}
		prog, err := load()
		if err != nil {
			return out, err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: w.ifindex, Flags: linkFlags(cfg.Mode)})
		if err != nil {
			errs = append(errs, &AttachError{Interface: w.name, Mode: cfg.Mode, Err: err})
			continue
		}
		if err := l.Pin(filepath.Join(d, linkPin(w.ifindex, cfg.Mode))); err != nil {
			l.Close() // detaches: unpinned, it would die with the process anyway
			errs = append(errs, &AttachError{Interface: w.name, Mode: cfg.Mode, Err: fmt.Errorf("pin link: %w", err)})
			continue
		}
		l.Close()
		out = append(out, Attachment{Interface: w.name, Ifindex: w.ifindex, Mode: cfg.Mode})
	}
	return out, errors.Join(errs...)
}

// pinned is one pinned link.
type pinned struct {
	path    string
	ifindex int
	mode    string
	link    link.Link
}

// live reports whether the link is still attached to its interface (a
// deleted interface leaves a defunct link).
func (p pinned) live() bool {
	if p.link == nil {
		return false
	}
	info, err := p.link.Info()
	if err != nil {
		return false
	}
	x := info.XDP()
	return x != nil && int(x.Ifindex) == p.ifindex
}

// programTag is the tag of the program the link runs ("" when it cannot
// be read: the program is then replaced, which is always safe).
func (p pinned) programTag() string {
	info, err := p.link.Info()
	if err != nil {
		return ""
	}
	prog, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return ""
	}
	defer prog.Close()
	return progTag(prog)
}

// progTag is the kernel's tag of a loaded program ("-" when it cannot be
// read, which matches no link's).
func progTag(p *ebpf.Program) string {
	pi, err := p.Info()
	if err != nil || pi.Tag == "" {
		return "-"
	}
	return pi.Tag
}

// detach removes the pin and drops the link, which detaches the program.
func (p pinned) detach() error {
	if p.link != nil {
		err := p.link.Unpin()
		p.link.Close()
		if err == nil {
			return nil
		}
	}
	if err := os.Remove(p.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("xdp: remove %s: %w", p.path, err)
	}
	return nil
}

// pinnedLinks lists and opens the link pins in d.
func pinnedLinks(d string) ([]pinned, error) {
	ents, err := os.ReadDir(d)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("xdp: read %s: %w", d, err)
	}
	var out []pinned
	for _, e := range ents {
		idx, mode, ok := parseLinkPin(e.Name())
		if !ok {
			continue
		}
		p := pinned{path: filepath.Join(d, e.Name()), ifindex: idx, mode: mode}
		if l, err := link.LoadPinnedLink(p.path, nil); err == nil {
			p.link = l
		}
		out = append(out, p)
	}
	return out, nil
}

// flushDir detaches every pinned link in d, then removes the map pins and
// d itself.
func flushDir(d string) error {
	links, err := pinnedLinks(d)
	if err != nil {
		return err
	}
	for _, l := range links {
		if err := l.detach(); err != nil {
			return err
		}
	}
	for _, name := range []string{pin4, pin6} {
		if err := os.Remove(filepath.Join(d, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("xdp: remove pin: %w", err)
		}
	}
	if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("xdp: remove %s: %w", d, err)
	}
	return nil
}

// Flush detaches the program from every interface of this network
// namespace and removes its maps and pins. With no bpffs at root, or
// nothing pinned, it does nothing. It reports whether anything was there.
func Flush(root string) (bool, error) {
	root = rootOf(root)
	if !isBPFFS(root) {
		return false, nil
	}
	d, err := dir(root)
	if err != nil {
		return false, err
	}
	if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err := flushDir(d); err != nil {
		return true, err
	}
	_ = os.Remove(filepath.Join(root, "synban")) // only if empty: other namespaces' stay
	return true, nil
}

// State is what Read finds: the entries with their counters and where the
// program is attached.
type State struct {
	Entries  []Entry
	Attached []Attachment
}

// Read returns this network namespace's pinned entries and attachments,
// nil when nothing is pinned. It writes nothing: no mount, no directory.
func Read(root string) (*State, error) {
	root = rootOf(root)
	if !isBPFFS(root) {
		return nil, nil
	}
	d, err := dir(root)
	if err != nil {
		return nil, err
	}
	m, ok, err := openMaps(d)
	if err != nil || !ok {
		return nil, err
	}
	defer m.Close()
	c, err := now()
	if err != nil {
		return nil, err
	}
	st := &State{}
	if st.Entries, err = m.entries(c); err != nil {
		return nil, err
	}
	links, err := pinnedLinks(d)
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if l.live() {
			name := ""
			if ifc, err := net.InterfaceByIndex(l.ifindex); err == nil {
				name = ifc.Name
			}
			st.Attached = append(st.Attached, Attachment{Interface: name, Ifindex: l.ifindex, Mode: l.mode})
		}
		if l.link != nil {
			l.link.Close()
		}
	}
	return st, nil
}
