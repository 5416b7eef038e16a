package state

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// killChildEnv switches the test binary into the writer child of TestKillMidWrite.
const killChildEnv = "SYNBAN_STATE_KILL_CHILD_DIR"

// genState is the full state the writer child saves as its seq-th write.
// Sizes vary from 1 to ~900 bans, so writes take varying time.
func genState(seq int) *State {
	st := &State{Version: Version}
	since := time.Unix(1_700_000_000+int64(seq), 0).UTC()
	n := 1 + (seq%300)*3
	for i := range n {
		st.Bans = append(st.Bans, Ban{
			Prefix:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32),
			Since:   since,
			Until:   since.Add(time.Duration(i+1) * time.Second),
			Reason:  fmt.Sprintf("seq %d ban %d", seq, i),
			Backend: "route",
		})
	}
	st.History = []Record{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Bans: seq, LastBan: since, LastFor: time.Duration(n)}}
	return st
}

// seqOf checks that st is exactly a state genState wrote in full and returns
// its sequence number (0 for the empty state before any write).
func seqOf(st *State) (int, error) {
	if len(st.History) == 0 && len(st.Bans) == 0 {
		return 0, nil
	}
	if len(st.History) != 1 {
		return 0, fmt.Errorf("history has %d records, want 1", len(st.History))
	}
	seq := st.History[0].Bans
	want := genState(seq)
	want.normalize()
	same := len(st.Bans) == len(want.Bans) && recordEqual(&st.History[0], &want.History[0])
	for i := 0; same && i < len(st.Bans); i++ {
		same = banEqual(&st.Bans[i], &want.Bans[i])
	}
	if !same {
		return 0, fmt.Errorf("state claims seq %d (%d bans) but is not the state written as seq %d (%d bans)", seq, len(st.Bans), seq, len(want.Bans))
	}
	return seq, nil
}

// consistent checks that the store's metadata, expiry index and tally
// agree with the n bans it holds: the count, one index entry per ban, and
// the tally of every ban's group.
func consistent(s *Store, n int) error {
	return s.View(func(t *Tx) error {
		c, err := t.Bans()
		if err != nil {
			return err
		}
		if c != n {
			return fmt.Errorf("the metadata counts %d bans, the store holds %d", c, n)
		}
		indexed := 0
		if err := t.Expiring(time.Unix(1<<40, 0), func(Ban) error { indexed++; return nil }); err != nil {
			return err
		}
		if indexed != n {
			return fmt.Errorf("the expiry index holds %d bans, the store %d", indexed, n)
		}
		want := map[Group]int{}
		if err := t.ForEachBan(func(b Ban) error { want[b.Group()]++; return nil }); err != nil {
			return err
		}
		got, err := t.Tally()
		if err != nil {
			return err
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("the tally is %v, the bans' groups %v", got, want)
		}
		return nil
	})
}

// TestMain turns the test binary into the writer child of TestKillMidWrite
// when killChildEnv names a directory.
func TestMain(m *testing.M) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		if err := killChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "kill child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// killChild writes ever newer states into the store at dir until it is
// killed (or 30 s pass).
func killChild(dir string) error {
	s, err := Open(dir)
	if err != nil {
		return err
	}
	release, err := s.Lock(context.Background(), true)
	if err != nil {
		return err
	}
	defer release()
	fmt.Println("ready")
	deadline := time.Now().Add(30 * time.Second) // the parent kills it long before
	for time.Now().Before(deadline) {
		err := s.Update(func(st *State) error {
			seq, err := seqOf(st)
			if err != nil {
				return err
			}
			*st = *genState(seq + 1)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// TestKillMidWrite SIGKILLs a writer at random moments and checks after each
// kill that the store opens and holds exactly a state the writer wrote in
// full, never older than the one seen before.
func TestKillMidWrite(t *testing.T) {
	dir := t.TempDir()
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("random seed %d", seed)

	const kills = 200
	prev, advanced := 0, 0
	for i := range kills {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0])
		cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "ready" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			cancel()
			t.Fatalf("kill %d: child did not start writing: %q, %v", i, line, err)
		}
		// The random moment: somewhere within the child's stream of writes.
		time.Sleep(time.Duration(rng.IntN(30_000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		err = cmd.Wait()
		cancel()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("kill %d: child ended by itself (%v) before the kill; it should write until killed", i, err)
		}

		s, err := Open(dir)
		if err != nil {
			t.Fatalf("kill %d: Open: %v", i, err)
		}
		st, err := s.Load()
		if err != nil {
			t.Fatalf("kill %d: Load: %v", i, err)
		}
		seq, err := seqOf(st)
		if err != nil {
			t.Fatalf("kill %d: torn state: %v", i, err)
		}
		if err := consistent(s, len(st.Bans)); err != nil {
			t.Fatalf("kill %d: seq %d: %v", i, seq, err)
		}
		if seq < prev {
			t.Fatalf("kill %d: state went back from seq %d to %d", i, prev, seq)
		}
		if seq > prev {
			advanced++
		}
		prev = seq
	}
	t.Logf("killed the writer %d times; final seq %d; state advanced between %d kills", kills, prev, advanced)
	if advanced == 0 {
		t.Fatal("the writer never completed a write between kills; the test proved nothing")
	}
}
