package xdp

import (
	"context"
	"errors"
	"fmt"
	stdmaps "maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/nsenter"
)

// lab is an attacker and a victim joined by a veth, a listener on the
// victim, a per-source nftables counter at the victim's first netfilter
// hook, and a bpffs of the test's own.
type lab struct {
	att, vic     *netnstest.NS
	attIf, vicIf string
	root         string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	att, vic := netnstest.New(t, "xatt"), netnstest.New(t, "xvic")
	attIf, vicIf := netnstest.Link(t, att, vic,
		[]string{"10.77.0.1/16", "10.77.0.3/16", "10.77.5.7/16", "fd77::1/64", "fd77::3/64"},
		[]string{"10.77.0.2/16", "fd77::2/64"})
	// The counters sit in a table of their own at prerouting priority
	// -500, before anything else: what XDP drops never reaches them.
	vic.MustRun("nft", "add table inet count; add chain inet count pre { type filter hook prerouting priority -500; }; "+
		"add rule inet count pre ip saddr 10.77.0.1 tcp dport 8080 counter; "+
		"add rule inet count pre ip saddr 10.77.0.3 tcp dport 8080 counter; "+
		"add rule inet count pre ip saddr 10.77.5.7 tcp dport 8080 counter; "+
		"add rule inet count pre ip6 saddr fd77::1 tcp dport 8080 counter; "+
		"add rule inet count pre ip6 saddr fd77::3 tcp dport 8080 counter")
	root := t.TempDir()
	t.Cleanup(func() {
		_ = unix.Unmount(root, unix.MNT_DETACH)
	})
	l := &lab{att: att, vic: vic, attIf: attIf, vicIf: vicIf, root: root}
	// Listeners on the victim, accepting and closing.
	for _, addr := range []string{"10.77.0.2:8080", "[fd77::2]:8080"} {
		var ln net.Listener
		if err := nsenter.Do(vic.Path(), func() (err error) {
			ln, err = net.Listen("tcp", addr)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	return l
}

// dial connects from src to dst:8080 inside the attacker namespace.
func (l *lab) dial(src, dst string, timeout time.Duration) error {
	return nsenter.Do(l.att.Path(), func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(dst, "8080"))
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// counter returns the victim's nftables packet counter for saddr.
func (l *lab) counter(t *testing.T, saddr string) int {
	t.Helper()
	out := l.vic.MustRun("nft", "list chain inet count pre")
	re := regexp.MustCompile(`saddr ` + regexp.QuoteMeta(saddr) + ` tcp dport 8080 counter packets (\d+)`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counter for %s in\n%s", saddr, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func (l *lab) sync(t *testing.T, cfg Config, bans []Ban) (*Result, error) {
	t.Helper()
	var res *Result
	err := nsenter.Do(l.vic.Path(), func() (err error) {
		res, err = Sync(cfg, bans)
		return err
	})
	return res, err
}

func (l *lab) read(t *testing.T) *State {
	t.Helper()
	var st *State
	if err := nsenter.Do(l.vic.Path(), func() (err error) {
		st, err = Read(l.root)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

func (l *lab) packets(t *testing.T, p string) uint64 {
	t.Helper()
	st := l.read(t)
	if st == nil {
		t.Fatal("nothing pinned")
	}
	for _, e := range st.Entries {
		if e.Prefix == netip.MustParsePrefix(p) {
			return e.Packets
		}
	}
	t.Fatalf("no entry %s in %+v", p, st.Entries)
	return 0
}

// TestXDPDropsBannedSources: with the program on the victim's veth in
// native mode, banned sources' SYNs (a /32, an address inside a /24 ban,
// an IPv6 /128) never reach the victim's first nftables hook and are
// counted per entry, while a client not banned still connects; flush
// leaves no program on the device and no pin.
func TestXDPDropsBannedSources(t *testing.T) {
	l := newLab(t)
	exp := time.Now().Add(10 * time.Minute)
	bans := []Ban{
		{netip.MustParsePrefix("10.77.0.1/32"), exp},
		{netip.MustParsePrefix("10.77.5.0/24"), exp},
		{netip.MustParsePrefix("fd77::1/128"), exp},
	}
	cfg := Config{Interfaces: []string{l.vicIf}, Mode: ModeNative, MaxEntries: 1024, Root: l.root}
	res, err := l.sync(t, cfg, bans)
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 3 || len(res.Attached) != 1 || res.Attached[0].Interface != l.vicIf {
		t.Fatalf("sync: %+v", res)
	}
	if out := l.vic.MustRun("ip", "-d", "link", "show", "dev", l.vicIf); !strings.Contains(out, "xdp") {
		t.Fatalf("no xdp program on %s:\n%s", l.vicIf, out)
	}
	// A second sync with the same bans changes nothing and keeps the link.
	if res, err := l.sync(t, cfg, bans); err != nil || res.Added+res.Updated+res.Removed != 0 || len(res.Attached) != 1 {
		t.Fatalf("second sync: %+v, %v", res, err)
	}

	for _, src := range []struct{ from, to string }{{"10.77.0.1", "10.77.0.2"}, {"10.77.5.7", "10.77.0.2"}, {"fd77::1", "fd77::2"}} {
		for range 3 {
			if err := l.dial(src.from, src.to, 300*time.Millisecond); err == nil {
				t.Fatalf("banned %s connected", src.from)
			}
		}
	}
	if err := l.dial("10.77.0.3", "10.77.0.2", 5*time.Second); err != nil {
		t.Fatalf("legit IPv4 client: %v", err)
	}
	if err := l.dial("fd77::3", "fd77::2", 5*time.Second); err != nil {
		t.Fatalf("legit IPv6 client: %v", err)
	}
	for _, s := range []string{"10.77.0.1", "10.77.5.7", "fd77::1"} {
		if n := l.counter(t, s); n != 0 {
			t.Errorf("banned %s: %d packets reached nftables", s, n)
		}
	}
	for _, s := range []string{"10.77.0.3", "fd77::3"} {
		if n := l.counter(t, s); n == 0 {
			t.Errorf("legit %s: no packet reached nftables", s)
		}
	}
	for _, p := range []string{"10.77.0.1/32", "10.77.5.0/24", "fd77::1/128"} {
		if n := l.packets(t, p); n == 0 {
			t.Errorf("entry %s counted no drop", p)
		}
	}

	// Lifting a ban removes its entry; the address connects again.
	res, err = l.sync(t, cfg, bans[1:])
	if err != nil || res.Removed != 1 {
		t.Fatalf("unban sync: %+v, %v", res, err)
	}
	if err := l.dial("10.77.0.1", "10.77.0.2", 5*time.Second); err != nil {
		t.Fatalf("unbanned client: %v", err)
	}

	var found bool
	if err := nsenter.Do(l.vic.Path(), func() (err error) {
		found, err = Flush(l.root)
		return err
	}); err != nil || !found {
		t.Fatalf("flush: %v, %v", found, err)
	}
	if out := l.vic.MustRun("ip", "-d", "link", "show", "dev", l.vicIf); strings.Contains(out, "xdp") {
		t.Errorf("program left on %s after flush:\n%s", l.vicIf, out)
	}
	ents, _ := os.ReadDir(filepath.Join(l.root, "synban"))
	if len(ents) != 0 {
		t.Errorf("pins left after flush: %v", ents)
	}
	if st := l.read(t); st != nil {
		t.Errorf("read after flush: %+v", st)
	}
}

// TestXDPExpiredEntryPasses: an entry whose ban has ended stops dropping
// by itself, before any run removes it.
func TestXDPExpiredEntryPasses(t *testing.T) {
	l := newLab(t)
	cfg := Config{Interfaces: []string{l.vicIf}, Mode: ModeNative, MaxEntries: 16, Root: l.root}
	if _, err := l.sync(t, cfg, []Ban{{netip.MustParsePrefix("10.77.0.1/32"), time.Now().Add(2 * time.Second)}}); err != nil {
		t.Fatal(err)
	}
	if err := l.dial("10.77.0.1", "10.77.0.2", 300*time.Millisecond); err == nil {
		t.Fatal("banned source connected")
	}
	netnstest.Eventually(t, 10*time.Second, func() bool {
		return l.dial("10.77.0.1", "10.77.0.2", time.Second) == nil
	}, "the expired entry still drops")
}

// TestXDPAttachFailure: an interface that does not exist and a mode the
// device lacks (loopback has no native XDP) give one AttachError each,
// naming the interface and why; the maps are synced all the same and the
// device that works gets the program.
func TestXDPAttachFailure(t *testing.T) {
	l := newLab(t)
	cfg := Config{Interfaces: []string{"nosuch0", "lo", l.vicIf}, Mode: ModeNative, MaxEntries: 16, Root: l.root}
	res, err := l.sync(t, cfg, []Ban{{netip.MustParsePrefix("10.77.0.1/32"), time.Now().Add(time.Minute)}})
	if err == nil {
		t.Fatal("no error")
	}
	var ae *AttachError
	if !errors.As(err, &ae) {
		t.Fatalf("not an AttachError: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"nosuch0 in native mode: no such interface", "cannot attach to lo in native mode"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if res == nil || len(res.Attached) != 1 || res.Attached[0].Interface != l.vicIf || res.Added != 1 {
		t.Errorf("result %+v", res)
	}
	// Generic mode works on loopback.
	cfg.Interfaces = []string{"lo"}
	cfg.Mode = ModeGeneric
	if res, err := l.sync(t, cfg, nil); err != nil || len(res.Attached) != 1 {
		t.Fatalf("generic on lo: %+v, %v", res, err)
	}
	// The veth's native link was detached: it is no longer asked for.
	if out := l.vic.MustRun("ip", "-d", "link", "show", "dev", l.vicIf); strings.Contains(out, "xdp") {
		t.Errorf("program left on %s:\n%s", l.vicIf, out)
	}
	if out := l.vic.MustRun("ip", "-d", "link", "show", "dev", "lo"); !strings.Contains(out, "xdpgeneric") {
		t.Errorf("no generic program on lo:\n%s", out)
	}
}

// TestXDPRecoversFromKilledRuns: the states a SIGKILL can leave between
// Sync's steps are each taken up by the next Sync: maps filled and pinned
// but no program attached (killed before the attach), and one map pinned
// without the other (killed between the two pins). After each, the
// attached program uses exactly the pinned maps, and drops.
func TestXDPRecoversFromKilledRuns(t *testing.T) {
	l := newLab(t)
	exp := time.Now().Add(10 * time.Minute)
	bans := []Ban{{netip.MustParsePrefix("10.77.0.1/32"), exp}}
	cfg := Config{Interfaces: []string{l.vicIf}, Mode: ModeNative, MaxEntries: 16, Root: l.root}

	// Killed after the maps were pinned, before the attach.
	noIf := cfg
	noIf.Interfaces = nil
	if res, err := l.sync(t, noIf, bans); err != nil || res.Added != 1 || len(res.Attached) != 0 {
		t.Fatalf("maps only: %+v, %v", res, err)
	}
	if out := l.vic.MustRun("ip", "-d", "link", "show", "dev", l.vicIf); strings.Contains(out, "xdp") {
		t.Fatalf("a program without a run attaching it:\n%s", out)
	}
	if res, err := l.sync(t, cfg, bans); err != nil || res.Added+res.Updated+res.Removed != 0 || len(res.Attached) != 1 {
		t.Fatalf("next run: %+v, %v", res, err)
	}
	l.requireProgramUsesPinnedMaps(t)
	if err := l.dial("10.77.0.1", "10.77.0.2", 300*time.Millisecond); err == nil {
		t.Fatal("banned source connected")
	}

	// Killed between the two pins: bans4 alone.
	if err := nsenter.Do(l.vic.Path(), func() error {
		if _, err := Flush(l.root); err != nil {
			return err
		}
		d, err := dir(l.root)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		m, err := createMaps(16)
		if err != nil {
			return err
		}
		defer m.Close()
		return m.v4.Pin(filepath.Join(d, pin4))
	}); err != nil {
		t.Fatal(err)
	}
	if res, err := l.sync(t, cfg, bans); err != nil || res.Added != 1 || len(res.Attached) != 1 {
		t.Fatalf("after a half-pinned run: %+v, %v", res, err)
	}
	l.requireProgramUsesPinnedMaps(t)
	if err := l.dial("10.77.0.1", "10.77.0.2", 300*time.Millisecond); err == nil {
		t.Fatal("banned source connected")
	}
	if n := l.packets(t, "10.77.0.1/32"); n == 0 {
		t.Error("no drop counted")
	}
}

// requireProgramUsesPinnedMaps checks that the program behind each pinned
// link holds the pinned maps, and no other.
func (l *lab) requireProgramUsesPinnedMaps(t *testing.T) {
	t.Helper()
	if err := nsenter.Do(l.vic.Path(), func() error {
		d, err := dir(l.root)
		if err != nil {
			return err
		}
		m, ok, err := openMaps(d)
		if err != nil || !ok {
			return fmt.Errorf("pinned maps: %v, %v", ok, err)
		}
		defer m.Close()
		want := map[ebpf.MapID]bool{}
		for _, x := range []*ebpf.Map{m.v4, m.v6} {
			info, err := x.Info()
			if err != nil {
				return err
			}
			id, _ := info.ID()
			want[id] = true
		}
		links, err := pinnedLinks(d)
		if err != nil {
			return err
		}
		if len(links) == 0 {
			return errors.New("no pinned link")
		}
		for _, pl := range links {
			if pl.link == nil {
				return fmt.Errorf("%s: not a link", pl.path)
			}
			info, err := pl.link.Info()
			pl.link.Close()
			if err != nil {
				return err
			}
			prog, err := ebpf.NewProgramFromID(info.Program)
			if err != nil {
				return err
			}
			pinfo, err := prog.Info()
			prog.Close()
			if err != nil {
				return err
			}
			ids, _ := pinfo.MapIDs()
			got := map[ebpf.MapID]bool{}
			for _, id := range ids {
				got[id] = true
			}
			if !stdmaps.Equal(got, want) {
				return fmt.Errorf("program of %s uses maps %v, the pinned ones are %v", pl.path, ids, want)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestXDPReplacesOtherVersionsProgram: a link that runs another program
// (as after an upgrade: another synban version's) is given this version's
// program in place by the next Sync: the same link, never detached, and
// the ban drops again.
func TestXDPReplacesOtherVersionsProgram(t *testing.T) {
	l := newLab(t)
	cfg := Config{Interfaces: []string{l.vicIf}, Mode: ModeNative, MaxEntries: 16, Root: l.root}
	ban := []Ban{{netip.MustParsePrefix("10.77.0.1/32"), time.Now().Add(time.Hour)}}
	if _, err := l.sync(t, cfg, ban); err != nil {
		t.Fatal(err)
	}
	// linkProgram returns the pinned link's ID, its program's ID and tag,
	// after giving it prog when prog is not nil.
	linkProgram := func(prog *ebpf.Program) (link.ID, ebpf.ProgramID, string) {
		t.Helper()
		var id link.ID
		var pid ebpf.ProgramID
		var tag string
		if err := nsenter.Do(l.vic.Path(), func() error {
			d, err := dir(l.root)
			if err != nil {
				return err
			}
			links, err := pinnedLinks(d)
			if err != nil || len(links) != 1 || links[0].link == nil {
				return fmt.Errorf("pinned links %+v: %v", links, err)
			}
			defer links[0].link.Close()
			if prog != nil {
				if err := links[0].link.Update(prog); err != nil {
					return err
				}
			}
			info, err := links[0].link.Info()
			if err != nil {
				return err
			}
			id, pid, tag = info.ID, info.Program, links[0].programTag()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return id, pid, tag
	}
	other, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "other_version", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	id, _, oldTag := linkProgram(other)
	if err := l.dial("10.77.0.1", "10.77.0.2", time.Second); err != nil {
		t.Fatalf("with the other program on the link the ban should not drop: %v", err)
	}
	if _, err := l.sync(t, cfg, ban); err != nil {
		t.Fatal(err)
	}
	id2, pid, tag := linkProgram(nil)
	if id2 != id || tag == oldTag {
		t.Fatalf("after Sync: link %d program %s, want link %d (the same) running this version's program, not %s", id2, tag, id, oldTag)
	}
	if err := l.dial("10.77.0.1", "10.77.0.2", 300*time.Millisecond); err == nil {
		t.Fatal("the banned source connected after Sync replaced the program")
	}
	// A Sync with the program already current leaves it be.
	if _, err := l.sync(t, cfg, ban); err != nil {
		t.Fatal(err)
	}
	if _, pid2, _ := linkProgram(nil); pid2 != pid {
		t.Fatalf("a Sync with this version's program on the link replaced it (program %d, then %d)", pid, pid2)
	}
}
