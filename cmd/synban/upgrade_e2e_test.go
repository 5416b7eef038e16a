package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/nsenter"
)

// upgradeView is what the upgrade test reads of `nft -j list table inet
// synban` at each poll.
type upgradeView struct {
	// chains maps base chain names to their hooks.
	chains map[string]string
	// setHandles maps set names to their kernel handles.
	setHandles map[string]int
	// banned is the number of elements of ban_v4.
	banned int
	// dropChains are the base chains with a rule dropping @ban_v4.
	dropChains []string
}

// readNFTTable lists synban's table with nft's JSON output (nft rereads
// its listing when the ruleset generation changes while it dumps, so each
// poll is one consistent view).
func readNFTTable(ns *netnstest.NS) (upgradeView, error) {
	out, err := ns.Run("nft", "-j", "list", "table", "inet", "synban")
	if err != nil {
		return upgradeView{}, err
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return upgradeView{}, fmt.Errorf("nft -j: %w", err)
	}
	t := upgradeView{chains: map[string]string{}, setHandles: map[string]int{}}
	var ruleObjs []struct {
		Chain string          `json:"chain"`
		Expr  json.RawMessage `json:"expr"`
	}
	for _, obj := range doc.Nftables {
		switch {
		case obj["chain"] != nil:
			var c struct {
				Name string `json:"name"`
				Hook string `json:"hook"`
			}
			if err := json.Unmarshal(obj["chain"], &c); err != nil {
				return t, err
			}
			if c.Hook != "" {
				t.chains[c.Name] = c.Hook
			}
		case obj["set"] != nil:
			var s struct {
				Name   string            `json:"name"`
				Handle int               `json:"handle"`
				Elem   []json.RawMessage `json:"elem"`
			}
			if err := json.Unmarshal(obj["set"], &s); err != nil {
				return t, err
			}
			t.setHandles[s.Name] = s.Handle
			if s.Name == "ban_v4" {
				t.banned = len(s.Elem)
			}
		case obj["rule"] != nil:
			var r struct {
				Chain string          `json:"chain"`
				Expr  json.RawMessage `json:"expr"`
			}
			if err := json.Unmarshal(obj["rule"], &r); err != nil {
				return t, err
			}
			ruleObjs = append(ruleObjs, r)
		}
	}
	for _, r := range ruleObjs {
		e := string(r.Expr)
		if _, base := t.chains[r.Chain]; base && strings.Contains(e, `"@ban_v4"`) && strings.Contains(e, `"drop"`) {
			t.dropChains = append(t.dropChains, r.Chain)
		}
	}
	return t, nil
}

// TestUpgradeInputToPrerouting: a table made by the previous default
// (hooks = ["input"], after conntrack) holding N bans is converted by a run
// with today's default (prerouting at raw priority, before conntrack). While
// that run applies, a poller lists the table and a prober dials from a
// banned address: at every poll all N bans are present in a base chain that
// drops them, and no probe connects. The sets keep their kernel handles
// (moved chains, not recreated sets), `plan` says what moves beforehand, and
// afterwards the banned source's SYNs no longer reach conntrack.
func TestUpgradeInputToPrerouting(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	const n = 2000
	l := newLab(t, "[nftables]\nhooks = [\"input\"]\n")
	// Counts the attacker's packets that conntrack saw as new, just after
	// conntrack (-200) and before the filter hooks.
	l.victim.MustRun("nft", fmt.Sprintf("add table inet probe; add chain inet probe pre { type filter hook prerouting priority -150; }; "+
		"add rule inet probe pre ip saddr %s ct state new counter", attackerAddr))

	var list strings.Builder
	list.WriteString(attackerAddr + "\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&list, "10.80.%d.%d\n", i/250, 1+i%250)
	}
	banFile := filepath.Join(t.TempDir(), "bans.txt")
	if err := os.WriteFile(banFile, []byte(list.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := l.synban("ban", "--from-file", banFile, "--for", "1h", "--backend", "nftables"); err != nil {
		t.Fatalf("synban ban with the previous default: %v: %s", err, out)
	}
	before, err := readNFTTable(l.victim)
	if err != nil {
		t.Fatal(err)
	}
	if before.chains["input"] != "input" || before.chains["prerouting"] != "" || before.banned != n {
		t.Fatalf("table made with hooks = [\"input\"]: chains %v, %d bans, want chain input only and %d bans", before.chains, before.banned, n)
	}
	if l.dialFrom(l.client, victimAddrC+":80") != nil {
		t.Fatal("the client cannot connect before the upgrade: the probe below would prove nothing")
	}
	probe := func() bool { // reports whether a dial from the banned attacker connected
		var connected bool
		_ = nsenter.Do(l.attacker.Path(), func() error {
			c, err := net.DialTimeout("tcp4", victimAddr+":80", 100*time.Millisecond)
			if err == nil {
				connected = true
				c.Close()
			}
			return nil
		})
		return connected
	}
	if probe() {
		t.Fatal("a dial from the banned address connected before the upgrade")
	}
	seenNew := ctNew(t, l.victim)
	if seenNew == 0 {
		t.Fatal("with the ban in input, conntrack saw none of the banned source's SYNs: the probe counter does not work")
	}

	// Today's default: an empty policy file.
	if err := os.WriteFile(l.policy, []byte("# the defaults\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := l.synban("plan", "--backend", "nftables")
	if err != nil {
		t.Fatalf("synban plan: %v: %s", err, out)
	}
	if !strings.Contains(out, "# run would move: chain input → prerouting (priority -10 → -300, before conntrack)") {
		t.Errorf("plan does not say the chain moves:\n%s", firstLines(out, 12))
	}
	if after, err := readNFTTable(l.victim); err != nil || after.chains["input"] != "input" || after.chains["prerouting"] != "" {
		t.Fatalf("plan changed the table: %v %v", after.chains, err)
	}

	// Poll and probe while the upgrade run applies.
	var (
		mu             sync.Mutex
		polls, probes  int
		gaps           []string
		sawPrerouting  bool
		stop, finished = make(chan struct{}), make(chan struct{}, 2)
	)
	gap := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(gaps) < 10 {
			gaps = append(gaps, fmt.Sprintf(format, args...))
		}
	}
	go func() {
		defer func() { finished <- struct{}{} }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			tb, err := readNFTTable(l.victim)
			switch {
			case err != nil:
				gap("poll: %v", err)
			case tb.banned != n:
				gap("poll: ban_v4 holds %d of %d bans", tb.banned, n)
			case len(tb.dropChains) == 0:
				gap("poll: no base chain drops @ban_v4 (chains %v)", tb.chains)
			}
			mu.Lock()
			polls++
			if tb.chains["prerouting"] != "" {
				sawPrerouting = true
			}
			mu.Unlock()
		}
	}()
	go func() {
		defer func() { finished <- struct{}{} }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if probe() {
				gap("probe: a dial from the banned %s connected", attackerAddr)
			}
			mu.Lock()
			probes++
			mu.Unlock()
		}
	}()
	// Some polls before the run, then the run, then some after.
	netnstest.Eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return polls >= 3 && probes >= 3 }, "poller and prober did not start")
	runOut, runErr := l.synban("run", "--json", "--backend", "nftables")
	netnstest.Eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return sawPrerouting && polls >= 10 }, "the poller never saw the prerouting chain")
	close(stop)
	<-finished
	<-finished
	if runErr != nil {
		t.Fatalf("synban run with the default policy: %v: %s", runErr, runOut)
	}
	var res struct {
		Restored int `json:"restored"`
	}
	// The output carries the log on stderr too: the document starts at
	// the first line that opens an object.
	doc := runOut
	if i := strings.Index(runOut, "\n{"); i >= 0 {
		doc = runOut[i+1:]
	}
	if err := json.Unmarshal([]byte(doc), &res); err != nil || res.Restored != n {
		t.Errorf("run --json = %s (%v), want %d bans restored", runOut, err, n)
	}
	// Moving hooks is a change, not a restore after an outside flush.
	if strings.Contains(runOut, "was missing") || strings.Contains(doc, `"created": true`) {
		t.Errorf("the upgrade run reported a restore:\n%s", runOut)
	}
	if len(gaps) > 0 {
		t.Fatalf("enforcement gaps during the upgrade (%d polls, %d probes):\n%s", polls, probes, strings.Join(gaps, "\n"))
	}
	t.Logf("upgrade watched by %d polls and %d probes, no gap", polls, probes)

	after, err := readNFTTable(l.victim)
	if err != nil {
		t.Fatal(err)
	}
	if after.chains["prerouting"] != "prerouting" || after.chains["input"] != "" || after.banned != n {
		t.Errorf("after the upgrade: chains %v, %d bans; want chain prerouting only and %d bans", after.chains, after.banned, n)
	}
	for name, h := range before.setHandles {
		if after.setHandles[name] != h {
			t.Errorf("set %s was recreated (handle %d → %d): its elements would have been lost for a moment", name, h, after.setHandles[name])
		}
	}
	// Now drops happen before conntrack: more probes, no new conntrack entry.
	seenNew = ctNew(t, l.victim)
	for range 5 {
		if probe() {
			t.Fatal("a dial from the banned address connected after the upgrade")
		}
	}
	if got := ctNew(t, l.victim); got != seenNew {
		t.Errorf("conntrack still saw the banned source's SYNs after the upgrade (%d → %d)", seenNew, got)
	}
	if err := l.dialFrom(l.client, victimAddrC+":80"); err != nil {
		t.Errorf("the client cannot connect after the upgrade: %v", err)
	}
	// A second run with the same policy moves nothing.
	if out, err := l.synban("plan", "--backend", "nftables"); err != nil || strings.Contains(out, "run would move") {
		t.Errorf("plan after the upgrade: %v\n%s", err, firstLines(out, 12))
	}
}

var reCounterPackets = regexp.MustCompile(`counter packets (\d+)`)

// ctNew reads the probe table's counter of the attacker's packets that
// conntrack saw as new.
func ctNew(t *testing.T, ns *netnstest.NS) uint64 {
	t.Helper()
	out := ns.MustRun("nft", "list", "chain", "inet", "probe", "pre")
	m := reCounterPackets.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in\n%s", out)
	}
	v, _ := strconv.ParseUint(m[1], 10, 64)
	return v
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
