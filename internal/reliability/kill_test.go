package reliability

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/state"
)

// killPolicy is the policy of the kill and race tests: one quick sample,
// nftables only.
const killPolicy = `backend = "nftables"
[sample]
count = 1
interval = "1s"
`

// genBans is how many bans each generation of the kill test holds: the
// state store of generation g holds 10.(100+g%100).x.y for that many
// addresses, so every run restores (applies) all of them at once.
const genBans = 20000

func genAddrs(g int) []netip.Addr {
	out := make([]netip.Addr, genBans)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, byte(100 + g%100), byte(i >> 8), byte(i)})
	}
	return out
}

// genOf maps a banned address back to its generation's second octet.
func genOf(a netip.Addr) int { return int(a.As4()[1]) }

// kills is how many runs TestKillDuringApply kills; SYNBAN_RELIABILITY_KILLS
// overrides it.
func kills(t *testing.T) int {
	if s := os.Getenv("SYNBAN_RELIABILITY_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SYNBAN_RELIABILITY_KILLS=%q: want a positive integer", s)
		}
		return n
	}
	return 200
}

// TestKillDuringApply starts `synban run` in a namespace with a state store
// of 20,000 bans to restore and kills it with SIGKILL after a random delay
// spread over a whole run, many times. After every kill, the kernel holds
// the old ruleset or the new one, never a mix: synban's table is absent or
// structurally complete, and each generation of bans is in the ban set
// whole or not at all; the state store opens and loads, and its lock is
// free. A last run, not killed, converges, and one more changes nothing.
func TestKillDuringApply(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, "kill")
	pol := writePolicy(t, killPolicy)
	dir := t.TempDir()
	run := []string{"run", "-c", pol, "--state-dir", dir}

	// A full run gives the structure to compare with and the run's length.
	writeState(t, dir, genAddrs(0))
	began := time.Now()
	if code, _, stderr := runSynban(t, ns, run...); code != 0 {
		t.Fatalf("first run exited %d: %s", code, stderr)
	}
	runTime := time.Since(began)
	// The first run of a fresh binary is slow; a second one, restoring the
	// bans again in full (the table removed), sets the scale.
	ns.MustRun("nft", "delete", "table", "inet", "synban")
	writeState(t, dir, genAddrs(0))
	began = time.Now()
	if code, _, stderr := runSynban(t, ns, run...); code != 0 {
		t.Fatalf("second run exited %d: %s", code, stderr)
	}
	runTime = min(runTime, time.Since(began))
	structure := ns.MustRun("nft", "-s", "-t", "list", "table", "inet", "synban")
	kernel := map[int]bool{} // generations whose bans the kernel holds
	checkKernel := func(when string, old map[int]bool, g int) (string, map[int]bool) {
		t.Helper()
		addrs, present := nftSetAddrs(t, ns, "synban", "ban_v4")
		if !present {
			if len(old) > 0 {
				t.Fatalf("%s: synban's table vanished; it held generations %v", when, keys(old))
			}
			return "absent", map[int]bool{}
		}
		if got := ns.MustRun("nft", "-s", "-t", "list", "table", "inet", "synban"); got != structure {
			t.Fatalf("%s: table structure differs from a complete run's:\n%s\nwant:\n%s", when, got, structure)
		}
		count := map[int]int{}
		for _, a := range addrs {
			count[genOf(a)]++
		}
		if len(count) == 0 {
			t.Fatalf("%s: synban's table is there without any ban: a partial apply", when)
		}
		now := map[int]bool{}
		for gen, n := range count {
			if n != genBans {
				t.Fatalf("%s: ban set holds %d of the %d bans of generation %d: a partial apply", when, n, genBans, gen)
			}
			now[gen] = true
		}
		// The kernel holds the old generations, or the old ones and g.
		want := map[int]bool{100 + g%100: true}
		for k := range old {
			want[k] = true
			if !now[k] {
				t.Fatalf("%s: generation %d's bans vanished", when, k)
			}
		}
		for k := range now {
			if !want[k] {
				t.Fatalf("%s: unexpected generation %d in the ban set", when, k)
			}
		}
		if len(now) == len(old) {
			return "old", now
		}
		return "new", now
	}
	_, kernel = checkKernel("after the first run", kernel, 0)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	outcomes := map[string]int{}
	killed, finished := 0, 0
	n := kills(t)
	for i := 1; killed < n && i <= 3*n; i++ {
		// Keep the set small: start from an empty kernel now and then.
		if len(kernel) >= 2 || (len(kernel) > 0 && rng.IntN(3) == 0) {
			ns.MustRun("nft", "delete", "table", "inet", "synban")
			kernel = map[int]bool{}
		}
		writeState(t, dir, genAddrs(i))
		// The kill lands in the later part of a run, where it applies and
		// records (a run spends its first part starting, loading the store
		// and sampling), and now and then just after it ended.
		delay := runTime*2/5 + time.Duration(rng.Int64N(int64(runTime*7/10)))
		cmd := ns.Command(context.Background(), append([]string{synbanBin.Path(t)}, run...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay) // the random moment of the kill, not synchronisation
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			finished++
		case asExit(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL:
			killed++
		default:
			t.Fatalf("run %d: %v", i, err)
		}
		when := "after kill " + strconv.Itoa(i) + " at " + delay.Round(time.Millisecond).String()
		var outcome string
		outcome, kernel = checkKernel(when, kernel, i)
		if err == nil && outcome != "new" {
			t.Fatalf("%s: the run finished but the kernel holds the %s state", when, outcome)
		}
		outcomes[outcome]++

		store, err := state.Open(dir)
		if err != nil {
			t.Fatalf("%s: state store does not open: %v", when, err)
		}
		if _, err := store.Load(); err != nil {
			t.Fatalf("%s: state store does not load: %v", when, err)
		}
		release, err := store.Lock(context.Background(), false)
		if err != nil {
			t.Fatalf("%s: state lock still held: %v", when, err)
		}
		if err := release(); err != nil {
			t.Fatal(err)
		}
	}
	if killed < n {
		t.Fatalf("only %d of %d runs were killed before they finished (run time %s)", killed, n, runTime)
	}

	// The next run converges, and the one after finds nothing to do.
	last := 3*n + 1
	writeState(t, dir, genAddrs(last))
	if code, _, stderr := runSynban(t, ns, run...); code != 0 {
		t.Fatalf("converging run exited %d: %s", code, stderr)
	}
	if o, _ := checkKernel("after the converging run", kernel, last); o != "new" {
		t.Fatalf("converging run left the kernel %s", o)
	}
	code, out, stderr := runSynban(t, ns, append(run, "--json")...)
	if code != 0 {
		t.Fatalf("second converging run exited %d: %s", code, stderr)
	}
	var res struct {
		Added   int  `json:"added"`
		Created bool `json:"created"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("run --json: %v: %s", err, out)
	}
	if res.Added != 0 || res.Created {
		t.Fatalf("run after convergence changed things: %s", out)
	}
	report(t, "%d kills survived (%d runs finished before their kill), kernel after each kill: %d old, %d new, %d absent, never partial; %d bans per run, run time %s",
		killed, finished, outcomes["old"], outcomes["new"], outcomes["absent"], genBans, runTime.Round(time.Millisecond))
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

func keys(m map[int]bool) string {
	var k []int
	for x := range m {
		k = append(k, x)
	}
	slices.Sort(k)
	var s []string
	for _, x := range k {
		s = append(s, strconv.Itoa(x))
	}
	return strings.Join(s, ",")
}
