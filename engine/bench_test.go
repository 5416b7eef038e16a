package engine

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/state"
)

// insideEnv marks the benchmark process re-run inside a test namespace.
const insideEnv = "SYNBAN_ENGINE_BENCH_NS"

// BenchmarkSteadyRun times one run (Run, nftables) with 1,000, 10,000 and
// 100,000 bans stored, and no verdict: "first" with the kernel's ruleset
// flushed (the run creates the table and restores every ban), and, with
// the bans already in the kernel, "full"
// after an outside commit moved the nftables generation (the full
// reconcile: stored bans compiled, the kernel's elements read back, the
// store rewritten), "unchanged" with the generation as the last run left
// it (the shortcut). The engine works in its own network namespace, so the
// benchmark re-runs itself inside a fresh one and prints that process's
// results; the outer benchmark is then skipped.
func BenchmarkSteadyRun(b *testing.B) {
	if os.Getenv(insideEnv) == "" {
		benchInNamespace(b)
		return
	}
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("bans=%d", n), func(b *testing.B) { benchSteady(b, n) })
	}
}

func benchInNamespace(b *testing.B) {
	netnstest.RequireRoot(b)
	netnstest.RequireCommand(b, "nft")
	ns := netnstest.New(b, "steady")
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	args := []string{"env", insideEnv + "=1", self, "-test.run=^$", "-test.bench=" + flag.Lookup("test.bench").Value.String(), "-test.benchmem"}
	if f := flag.Lookup("test.benchtime"); f != nil {
		args = append(args, "-test.benchtime="+f.Value.String())
	}
	// -cpuprofile and -memprofile profile the process that runs the
	// engine: its profiles get ".ns" appended to the names given.
	for _, name := range []string{"test.cpuprofile", "test.memprofile"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			args = append(args, "-"+name+"="+f.Value.String()+".ns")
		}
	}
	out, err := ns.Command(context.Background(), args...).CombinedOutput()
	if err != nil {
		b.Fatalf("benchmark inside %s: %v\n%s", ns.Name, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "BenchmarkSteadyRun/") {
			fmt.Println(line)
		}
	}
	b.Skip("measured in a namespace: results above")
}

func benchSteady(b *testing.B, n int) {
	p, err := policy.Parse("bench.toml", []byte("[ban]\nmax_entries = 262144\n"))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	store, err := state.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	if err := store.Update(func(s *state.State) error {
		s.Bans = make([]state.Ban, n)
		for i := range s.Bans {
			a := netip.AddrFrom4([4]byte{10, byte(100 + i>>16), byte(i >> 8), byte(i)})
			s.Bans[i] = state.Ban{Prefix: netip.PrefixFrom(a, 32), Since: now, Until: now.Add(time.Hour),
				Reason: "syn-flood: 120 syn_recv >= 50", Rule: "syn-flood", Backend: "nftables"}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	e := New(nil, Options{StateDir: filepath.Clean(dir), Backend: "nftables"})
	ctx := context.Background()
	// A fresh ruleset for every size (the namespace is the process's).
	if out, err := exec.Command("nft", "flush", "ruleset").CombinedOutput(); err != nil {
		b.Fatalf("nft flush ruleset: %v: %s", err, out)
	}
	if out, err := e.Run(ctx, p, time.Now()); err != nil || out.Result.Added != n {
		b.Fatalf("first run: %v (added %v)", err, out)
	}
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			// The kernel lost everything (a reboot, an outside flush):
			// the run restores every stored ban in one transaction.
			if out, err := exec.Command("nft", "flush", "ruleset").CombinedOutput(); err != nil {
				b.Fatalf("nft flush ruleset: %v: %s", err, out)
			}
			b.StartTimer()
			out, err := e.Run(ctx, p, time.Now())
			if err != nil || !out.Result.Created || out.Result.Added != n || out.Decision.Restored != n {
				b.Fatalf("first run: %v (%+v)", err, out)
			}
		}
	})
	table := 0
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			// An outside commit moves the generation (adding a table that
			// exists would not: a transaction that changes nothing leaves it).
			table++
			if out, err := exec.Command("nft", "add", "table", "ip", fmt.Sprintf("bump%d_%d", n, table)).CombinedOutput(); err != nil {
				b.Fatalf("nft add table: %v: %s", err, out)
			}
			b.StartTimer()
			out, err := e.Run(ctx, p, time.Now())
			if err != nil || out.Decision.Unchanged || out.Decision.Restored != n {
				b.Fatalf("full run: %v (unchanged %v, restored %d)", err, out != nil && out.Decision.Unchanged, n)
			}
		}
	})
	b.Run("unchanged", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			out, err := e.Run(ctx, p, time.Now())
			if err != nil || !out.Decision.Unchanged || out.Decision.Restored != n {
				b.Fatalf("steady run: %v (unchanged %v)", err, out != nil && out.Decision.Unchanged)
			}
		}
	})
}
