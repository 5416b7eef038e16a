package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// lab is a victim host with a listener on port 80, an attacker and a
// legitimate client, each in its own namespace, on two veth links.
type lab struct {
	t                        *testing.T
	victim, attacker, client *netnstest.NS
	policy, stateDir         string
}

const (
	victimAddr   = "10.61.0.1"
	attackerAddr = "10.61.0.2"
	victimAddrC  = "10.62.0.1"
	clientAddr   = "10.62.0.2"
)

func newLab(t *testing.T, policyText string) *lab {
	t.Helper()
	return newLabWith(t, policyText, nil)
}

// newLabWith is newLab with sysctls set in the victim before its listener
// starts (net.core.somaxconn caps the listen backlog at listen time).
func newLabWith(t *testing.T, policyText string, victimSysctls map[string]string) *lab {
	t.Helper()
	l := &lab{t: t,
		victim:   netnstest.New(t, "victim"),
		attacker: netnstest.New(t, "attacker"),
		client:   netnstest.New(t, "client"),
		stateDir: t.TempDir(),
	}
	netnstest.Link(t, l.victim, l.attacker, []string{victimAddr + "/24"}, []string{attackerAddr + "/24"})
	netnstest.Link(t, l.victim, l.client, []string{victimAddrC + "/24"}, []string{clientAddr + "/24"})
	// The attacker's kernel must not answer the victim's SYN-ACKs with RSTs,
	// or the half-open entries would vanish at once.
	l.attacker.MustRun("nft", "add table inet att; add chain inet att in { type filter hook input priority 0; }; add rule inet att in tcp flags & (syn | ack) == syn | ack drop")
	for k, v := range victimSysctls {
		l.victim.Sysctl(k, v)
	}
	l.policy = filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(l.policy, []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	listenIn(t, l.victim, "0.0.0.0:80")
	return l
}

// synban runs synban inside the victim namespace.
func (l *lab) synban(args ...string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	argv := append([]string{"env", "SYNBAN_TEST_ROLE=synban", self}, args...)
	argv = append(argv, "-c", l.policy)
	if args[0] != "sample" { // sample never reads the state store
		argv = append(argv, "--state-dir", l.stateDir)
	}
	return l.victim.Run(argv...)
}

// flood sends count SYNs from the attacker to the victim's port 80, bounded
// in packets and time (hping3 -c, and a timeout).
func (l *lab) flood(count int) int {
	l.t.Helper()
	return hping(l.t, l.attacker, count, victimAddr)
}

// hping sends count SYNs to dst:80 from ns with hping3 (extra arguments such
// as "-a SRC" go before the target), bounded by -c and a timeout. hping3
// exits 1 when no answer came back, which is what a ban does: judge it by
// what it says it sent, which it returns.
func hping(t *testing.T, ns *netnstest.NS, count int, dst string, extra ...string) int {
	t.Helper()
	argv := append([]string{"timeout", "30", "hping3", "-q", "-S", "-p", "80", "-i", "u500", "-c", strconv.Itoa(count)}, extra...)
	out, _ := ns.Run(append(argv, dst)...)
	// hping3 -c also stops once it has counted that many replies, and the
	// victim's retransmitted SYN-ACKs to earlier SYNs count: it may send a
	// few fewer than asked ("94 packets transmitted, 100 packets
	// received"). The callers check what the kernel holds, not the count.
	var sent int
	if i := strings.Index(out, " packets transmitted"); i > 0 {
		f := strings.Fields(out[:i])
		sent, _ = strconv.Atoi(f[len(f)-1])
	}
	if sent < count/2 {
		t.Fatalf("hping3 sent %d of %d packets: %s", sent, count, out)
	}
	return sent
}

// halfOpen counts SYN_RECV entries from src in the victim, read with ss
// (an independent reader, not synban's own samplers). A src ending in "."
// counts a whole IPv4 prefix such as "10.63.5.".
func (l *lab) halfOpen(src string) int {
	out, err := l.victim.Run("ss", "-Htan", "state", "syn-recv")
	if err != nil {
		l.t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		// The listener is dual-stack, so IPv4 peers show as [::ffff:a.b.c.d]:port.
		peer := strings.TrimPrefix(f[3], "[::ffff:")
		peer = peer[:strings.LastIndex(peer, ":")]
		peer = strings.TrimSuffix(peer, "]")
		if peer == src || (strings.HasSuffix(src, ".") && strings.HasPrefix(peer, src)) {
			n++
		}
	}
	return n
}

type statusJSON struct {
	Backend string `json:"backend"`
	Bans    []struct {
		Prefix  string  `json:"prefix"`
		Expires float64 `json:"expires_seconds"`
		Reason  string  `json:"reason"`
	} `json:"bans"`
	Counters []struct {
		Chain, Rule    string
		Packets, Bytes uint64
	} `json:"counters"`
}

func (l *lab) status(backend string) statusJSON {
	l.t.Helper()
	out, err := l.synban("status", "--json", "--backend", backend)
	if err != nil {
		l.t.Fatal(err)
	}
	var s statusJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		l.t.Fatalf("status --json: %v: %s", err, out)
	}
	return s
}

func (s statusJSON) packets(rule string) uint64 {
	var n uint64
	for _, c := range s.Counters {
		if c.Rule == rule {
			n += c.Packets
		}
	}
	return n
}

func (s statusJSON) banned(prefix string) bool {
	for _, b := range s.Bans {
		if b.Prefix == prefix {
			return true
		}
	}
	return false
}

// The policy of the end-to-end tests: one SYN rule at 50 half-open entries,
// no prefix aggregation, the meter off so only the ban is measured.
const e2ePolicy = `
[[rule]]
name = "syn-flood"
state = "syn_recv"
threshold = 50

[prefix]
enabled = false

[meter]
enabled = false
`

func requireFloodTools(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "hping3")
	netnstest.RequireCommand(t, "nft")
	netnstest.RequireCommand(t, "ss")
}

// TestEndToEndFloodBanned floods a victim from one address, runs synban in
// the victim with each backend, and checks the attacker is banned and
// dropped while a legitimate client still connects.
func TestEndToEndFloodBanned(t *testing.T) {
	requireFloodTools(t)
	for _, backend := range []string{"nftables", "iptables", "route"} {
		t.Run(backend, func(t *testing.T) {
			l := newLab(t, e2ePolicy)
			l.flood(200)
			netnstest.Eventually(t, 10*time.Second, func() bool { return l.halfOpen(attackerAddr) >= 150 },
				"the flood left fewer than 150 half-open entries in the victim")

			out, err := l.synban("run", "-v", "--backend", backend)
			if err != nil {
				t.Fatalf("synban run: %v", err)
			}
			t.Logf("synban run:\n%s", out)
			st := l.status(backend)
			if st.Backend != backend {
				t.Fatalf("status backend = %q, want %q", st.Backend, backend)
			}
			if !st.banned(attackerAddr + "/32") {
				t.Fatalf("attacker %s not banned after the flood: %+v", attackerAddr, st.Bans)
			}
			if len(st.Bans) != 1 {
				t.Fatalf("want exactly the attacker banned, got %+v", st.Bans)
			}

			// A legitimate client from a third namespace still completes a
			// TCP connection.
			if err := l.dialFrom(l.client, victimAddrC+":80"); err != nil {
				t.Fatalf("legitimate client could not connect: %v", err)
			}

			if backend == "route" {
				// Routes stop the victim's replies, not the attacker's
				// packets: the attacker's handshake must fail.
				if err := l.dialFrom(l.attacker, victimAddr+":80"); err == nil {
					t.Fatal("banned attacker completed a TCP handshake through the reject route")
				}
				return
			}
			before := st.packets("ban_v4")
			sent := l.flood(100)
			netnstest.Eventually(t, 10*time.Second, func() bool { return l.status(backend).packets("ban_v4") >= before+uint64(sent) },
				"ban_v4 drop counter did not rise by the 100 flood packets (was %d)", before)
		})
	}
}

func (l *lab) dialFrom(ns *netnstest.NS, addr string) error {
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	out, err := ns.Run("env", "SYNBAN_TEST_ROLE=dial", self, addr, "3")
	if err != nil {
		return err
	}
	if !strings.HasPrefix(out, "hello") {
		return fmt.Errorf("unexpected greeting %q", out)
	}
	return nil
}

// TestEndToEndBelowThreshold: the same kind of flood below the rule's
// threshold bans nothing.
func TestEndToEndBelowThreshold(t *testing.T) {
	requireFloodTools(t)
	l := newLab(t, e2ePolicy)
	l.flood(30)
	netnstest.Eventually(t, 10*time.Second, func() bool { return l.halfOpen(attackerAddr) >= 25 },
		"the flood left fewer than 25 half-open entries in the victim")
	if out, err := l.synban("run", "--backend", "nftables"); err != nil {
		t.Fatalf("synban run: %v: %s", err, out)
	}
	if st := l.status("nftables"); len(st.Bans) != 0 {
		t.Fatalf("a flood below the threshold was banned: %+v", st.Bans)
	}
}

// listenIn starts this test binary's listener on addr in ns (the role
// SYNBAN_TEST_ROLE=listen of TestMain) and waits until it accepts.
func listenIn(t *testing.T, ns *netnstest.NS, addr string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(t.Context(), "env", "SYNBAN_TEST_ROLE=listen", self, addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 10)
	if _, err := out.Read(buf); err != nil {
		t.Fatalf("listener did not start: %v", err)
	}
}
