package xdp

import (
	"fmt"
	stdmaps "maps"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/internal/nsenter"
)

// childEnv names the Sync a child process of this test binary runs (see
// TestMain): "ROOT IFACE SET".
const childEnv = "SYNBAN_XDP_SYNC_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		f := strings.Fields(spec)
		if _, err := Sync(Config{Interfaces: []string{f[1]}, Mode: ModeNative, MaxEntries: 65536, Root: f[0]}, banSet(f[2])); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// banSet is set "A" (10,000 /32s in 10.200.0.0/16) or "B" (the second
// half of A, and 5,000 /32s in 10.201.0.0/16).
func banSet(name string) []Ban {
	exp := time.Now().Add(time.Hour)
	var out []Ban
	add := func(b byte, from, to int) {
		for i := from; i < to; i++ {
			out = append(out, Ban{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, b, byte(i >> 8), byte(i)}), 32), exp})
		}
	}
	if name == "A" {
		add(200, 0, 10000)
	} else {
		add(200, 5000, 10000)
		add(201, 0, 5000)
	}
	return out
}

func prefixSet(bans []Ban) map[netip.Prefix]bool {
	out := make(map[netip.Prefix]bool, len(bans))
	for _, b := range bans {
		out[b.Prefix] = true
	}
	return out
}

// TestXDPSigkillMidSync kills a process syncing 10,000 entries at a
// range of moments, from before its first syscall to after its end (in
// steps of an eighth of an unkilled run's time), both
// when the maps are first made and when they go from set A to set B, and
// checks after each kill what the package doc promises:
//
//   - a program on the device is always behind a pinned link, and uses
//     exactly the pinned maps;
//   - maps made by the killed run are pinned only full (set B exactly);
//   - maps updated by it hold only entries of A or B, and every entry of
//     both;
//   - the next Sync brings everything to B.
//
// Where each kill lands depends on the machine's speed, but the checks hold
// wherever it lands, so the test cannot flake on a correct ordering.
func TestXDPSigkillMidSync(t *testing.T) {
	l := newLab(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a, b := prefixSet(banSet("A")), prefixSet(banSet("B"))
	cfg := Config{Interfaces: []string{l.vicIf}, Mode: ModeNative, MaxEntries: 65536, Root: l.root}
	seen := map[string]int{} // what the kills left: old, new, between, none
	// child starts the syncing child and returns it.
	child := func() *exec.Cmd {
		var cmd *exec.Cmd
		if err := nsenter.Do(l.vic.Path(), func() error {
			cmd = exec.Command(self)
			cmd.Env = append(os.Environ(), childEnv+"="+l.root+" "+l.vicIf+" B")
			return cmd.Start()
		}); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	for _, fresh := range []bool{true, false} {
		setup := func() {
			if err := nsenter.Do(l.vic.Path(), func() error { _, err := Flush(l.root); return err }); err != nil {
				t.Fatal(err)
			}
			if !fresh {
				if _, err := l.sync(t, cfg, banSet("A")); err != nil {
					t.Fatal(err)
				}
			}
		}
		setup()
		start := time.Now()
		if err := child().Wait(); err != nil {
			t.Fatalf("unkilled child: %v", err)
		}
		full := time.Since(start)
		for step := range 9 {
			delay := full * time.Duration(step) / 8
			setup()
			cmd := child()
			time.Sleep(delay)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()

			attached := strings.Contains(l.vic.MustRun("ip", "-d", "link", "show", "dev", l.vicIf), "xdp")
			st := l.read(t)
			if st == nil {
				if attached {
					t.Fatalf("fresh=%v, kill after %v: a program on the device and no pinned maps", fresh, delay)
				}
				if !fresh {
					t.Fatalf("kill after %v: the maps of set A are gone", delay)
				}
				seen["none"]++
				continue
			}
			if attached != (len(st.Attached) == 1) {
				t.Fatalf("fresh=%v, kill after %v: program on the device %v, pinned links %+v", fresh, delay, attached, st.Attached)
			}
			if attached {
				l.requireProgramUsesPinnedMaps(t)
			}
			got := map[netip.Prefix]bool{}
			for _, e := range st.Entries {
				got[e.Prefix] = true
			}
			inA, inB := 0, 0
			for p := range got {
				switch {
				case b[p]:
					inB++
				case a[p]:
					inA++
				default:
					t.Fatalf("kill after %v: entry %s is in neither set", delay, p)
				}
			}
			if fresh && (len(got) != len(b) || inB != len(b)) {
				t.Fatalf("kill after %v: maps made by the killed run pinned with %d of %d entries", delay, len(got), len(b))
			}
			for p := range a {
				if b[p] && !got[p] {
					t.Fatalf("kill after %v: %s, in both sets, is missing", delay, p)
				}
			}
			switch {
			case fresh || stdmaps.Equal(got, b):
				seen["new"]++
			case stdmaps.Equal(got, a):
				seen["old"]++
			default:
				seen["between"]++
			}
			// The next run finishes the job.
			if _, err := l.sync(t, cfg, banSet("B")); err != nil {
				t.Fatal(err)
			}
			if st := l.read(t); st == nil || len(st.Entries) != len(b) || len(st.Attached) != 1 {
				t.Fatalf("kill after %v: the next sync left %d entries, attached %+v", delay, len(st.Entries), st.Attached)
			}
		}
	}
	t.Logf("what the kills left: %v", seen)
}
