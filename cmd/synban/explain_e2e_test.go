package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/state"
)

// vwLab is a victim with a listener on port 80 and one peer namespace
// holding four addresses on the victim's link: an attacker, the victim's
// default gateway, an address on the policy's allow list and a quiet
// source. Each floods (or not) from its own address with hping3 -a; the
// peer owns every one, so the victim's SYN-ACKs go back there and are
// dropped, leaving the half-open entries in the victim.
type vwLab struct {
	t              *testing.T
	victim, peer   *netnstest.NS
	policy, stDir  string
	attacker, gw   string
	allowed, quiet string
}

const (
	vwVictim   = "10.71.0.1"
	vwAttacker = "10.71.0.2"
	vwAllowed  = "10.71.0.3"
	vwQuiet    = "10.71.0.4"
	vwGateway  = "10.71.0.254"
)

// vwPolicy: one SYN rule at 50; the /24 aggregated at 100 (it holds the
// victim's own address and its gateway, so it is never banned and its
// addresses are judged alone); the allowed address listed; the meter off.
const vwPolicy = `
[[rule]]
name = "syn-flood"
state = "syn_recv"
threshold = 50

[prefix]
enabled = true
ipv4_length = 24
ipv4_threshold = 100

[allow]
addresses = ["10.71.0.3/32"]

[meter]
enabled = false
`

func newVWLab(t *testing.T) *vwLab {
	t.Helper()
	requireFloodTools(t)
	l := &vwLab{t: t, victim: netnstest.New(t, "vw-victim"), peer: netnstest.New(t, "vw-peer"), stDir: t.TempDir(),
		attacker: vwAttacker, gw: vwGateway, allowed: vwAllowed, quiet: vwQuiet}
	netnstest.Link(t, l.victim, l.peer, []string{vwVictim + "/24"},
		[]string{vwAttacker + "/24", vwAllowed + "/24", vwQuiet + "/24", vwGateway + "/24"})
	l.victim.MustRun("ip", "route", "add", "default", "via", vwGateway)
	l.peer.MustRun("nft", "add table inet att; add chain inet att in { type filter hook input priority 0; }; add rule inet att in tcp flags & (syn | ack) == syn | ack drop")
	// Room for every half-open entry: no SYN cookies standing in for them.
	l.victim.Sysctl("net.core.somaxconn", "4096")
	l.victim.Sysctl("net.ipv4.tcp_max_syn_backlog", "4096")
	l.policy = filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(l.policy, []byte(vwPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	listenIn(t, l.victim, "0.0.0.0:80")
	return l
}

// transmittedRE reads what hping3 says it sent.
var transmittedRE = regexp.MustCompile(`(\d+) packets transmitted`)

// send sends up to count SYNs from src (one of the peer's addresses) to the
// victim's port 80 with hping3, bounded by -c and a timeout, and returns
// how many it sent. hping3 -c also stops once it has counted count packets
// received, and the victim's SYN-ACK retransmissions for earlier half-open
// entries count among them, so it may send fewer: callers judge by what it
// says it sent.
func (l *vwLab) send(src string, count int) int {
	l.t.Helper()
	out, _ := l.peer.Run("timeout", "30", "hping3", "-q", "-S", "-p", "80", "-i", "u500", "-c", strconv.Itoa(count), "-a", src, vwVictim)
	m := transmittedRE.FindStringSubmatch(out)
	n := 0
	if m != nil {
		n, _ = strconv.Atoi(m[1])
	}
	if n == 0 {
		l.t.Fatalf("hping3 sent nothing from %s: %s", src, out)
	}
	return n
}

// flood sends SYNs from src until the victim holds at least want of them
// half-open: count at first, then what is missing, at most five rounds.
func (l *vwLab) flood(src string, count, want int) {
	l.t.Helper()
	for round := 0; round < 5; round++ {
		l.send(src, count)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) && l.halfOpen(src) < want {
			time.Sleep(50 * time.Millisecond)
		}
		have := l.halfOpen(src)
		if have >= want {
			return
		}
		count = want - have
	}
	l.t.Fatalf("the flood from %s left fewer than %d half-open entries in the victim (%d)", src, want, l.halfOpen(src))
}

// halfOpen counts SYN_RECV entries from src in the victim, with ss.
func (l *vwLab) halfOpen(src string) int {
	out := l.victim.MustRun("ss", "-Htan", "state", "syn-recv")
	n := 0
	for _, line := range strings.Split(out, "\n") {
		// The listener is dual-stack: IPv4 peers show as [::ffff:a.b.c.d]:port.
		if f := strings.Fields(line); len(f) >= 4 && strings.HasPrefix(strings.NewReplacer("[::ffff:", "", "]", "").Replace(f[3]), src+":") {
			n++
		}
	}
	return n
}

// synban runs synban inside the victim with the lab's policy and state.
func (l *vwLab) synban(args ...string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	argv := append([]string{"env", "SYNBAN_TEST_ROLE=synban", self}, args...)
	argv = append(argv, "-c", l.policy, "--state-dir", l.stDir)
	return l.victim.Run(argv...)
}

// explained is the part of explain --json the tests read.
type explained struct {
	Subject string `json:"subject"`
	Outcome string `json:"outcome"`
	Rules   []struct {
		Rule      string `json:"rule"`
		Threshold int    `json:"threshold"`
		Counts    []int  `json:"counts"`
		Peak      int    `json:"peak"`
		Hits      int    `json:"hits"`
		Crossed   bool   `json:"crossed"`
	} `json:"rules"`
	Prefix *struct {
		Prefix  string `json:"prefix"`
		Crossed bool   `json:"crossed"`
		Guard   *struct {
			Why string `json:"why"`
		} `json:"guard"`
	} `json:"prefix"`
	Guard *struct {
		Prefix string `json:"prefix"`
		Why    string `json:"why"`
	} `json:"guard"`
	Spared *struct {
		Why string `json:"why"`
	} `json:"spared"`
	Escalation string `json:"escalation"`
	Stored     *struct {
		Prefix  string  `json:"prefix"`
		Expires float64 `json:"expires_seconds"`
	} `json:"stored"`
	History *struct {
		Bans int `json:"bans"`
	} `json:"history"`
	Backend string `json:"backend"`
	Kernel  *struct {
		Prefix  string  `json:"prefix"`
		Expires float64 `json:"expires_seconds"`
		Drops   *uint64 `json:"drops"`
	} `json:"kernel"`
	Summary []string `json:"summary"`
}

func (l *vwLab) explain(subject string) (explained, string) {
	l.t.Helper()
	var x explained
	out, err := l.synban("explain", subject, "--json", "--backend", "nftables")
	if err != nil {
		l.t.Fatalf("explain %s: %v", subject, err)
	}
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		l.t.Fatalf("explain %s --json: %v: %s", subject, err, out)
	}
	text, err := l.synban("explain", subject, "--backend", "nftables")
	if err != nil {
		l.t.Fatalf("explain %s: %v", subject, err)
	}
	return x, text
}

// mentions fails unless the summary has a line holding every part.
func mentions(t *testing.T, x explained, parts ...string) {
	t.Helper()
	for _, line := range x.Summary {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return
		}
	}
	t.Errorf("explain %s: no line with %q in:\n%s", x.Subject, parts, strings.Join(x.Summary, "\n"))
}

// TestExplainEndToEnd floods a victim from an attacker, its default
// gateway, an allowed address and a quiet source, runs synban, sends the
// banned attacker more, and explains each: the attacker is banned (with
// the numbers, the stored ban, time left, the kernel's element and its
// drop counter, escalation seeing a refresh), the gateway spared with the
// reason "default gateway", the allowed address spared by the allow list,
// the quiet source below threshold with its count. explain writes
// nothing: the kernel and the state store are the same before and after.
func TestExplainEndToEnd(t *testing.T) {
	l := newVWLab(t)
	l.flood(vwAttacker, 150, 120)
	l.flood(vwGateway, 80, 60)
	l.flood(vwAllowed, 80, 60)
	l.flood(vwQuiet, 20, 15)
	if out, err := l.synban("run", "--backend", "nftables"); err != nil {
		t.Fatalf("synban run: %v: %s", err, out)
	}
	// The banned attacker keeps sending: the element's counter moves.
	sent := l.send(vwAttacker, 40)

	kernel := withoutExpiry(l.victim.KernelState())
	stateFile := filepath.Join(l.stDir, state.FileName)
	stored, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(l.stDir)

	x, text := l.explain(vwAttacker)
	t.Logf("explain %s:\n%s", vwAttacker, text)
	if x.Outcome != "offends" || x.Guard != nil || len(x.Rules) == 0 || x.Rules[0].Peak < 120 || !x.Rules[0].Crossed || x.Rules[0].Threshold != 50 {
		t.Errorf("attacker: outcome %q guard %+v rules %+v", x.Outcome, x.Guard, x.Rules)
	}
	if x.Prefix == nil || x.Prefix.Prefix != "10.71.0.0/24" || !x.Prefix.Crossed || x.Prefix.Guard == nil {
		t.Errorf("attacker's prefix: %+v (want 10.71.0.0/24 crossed and protected)", x.Prefix)
	}
	if x.Stored == nil || x.Stored.Prefix != vwAttacker+"/32" || x.Stored.Expires < 500 || x.History == nil || x.History.Bans != 1 {
		t.Errorf("attacker's store: stored %+v history %+v", x.Stored, x.History)
	}
	if x.Backend != "nftables" || x.Kernel == nil || x.Kernel.Prefix != vwAttacker+"/32" || x.Kernel.Expires < 500 || x.Kernel.Drops == nil || *x.Kernel.Drops < uint64(sent) {
		t.Errorf("attacker's kernel element: backend %q %+v (want its drop counter >= the %d packets sent)", x.Backend, x.Kernel, sent)
	}
	if x.Escalation != "refresh" {
		t.Errorf("attacker still sending into its ban: escalation %q, want refresh", x.Escalation)
	}
	mentions(t, x, "rule syn-flood", "syn_recv >= threshold 50", "1 of 1 samples")
	mentions(t, x, "kernel (nftables): banned as 10.71.0.2/32", "left", "packets dropped")
	mentions(t, x, "state store: banned as 10.71.0.2/32")

	x, text = l.explain(vwGateway)
	t.Logf("explain %s:\n%s", vwGateway, text)
	if x.Outcome != "spared" || x.Guard == nil || x.Guard.Why != "default gateway" || x.Kernel != nil || x.Rules[0].Peak < 60 || !x.Rules[0].Crossed {
		t.Errorf("gateway: outcome %q guard %+v kernel %+v rules %+v", x.Outcome, x.Guard, x.Kernel, x.Rules)
	}
	mentions(t, x, "guard: never banned: 10.71.0.254/32 is protected (default gateway)")
	mentions(t, x, "verdict: spared", "default gateway", "syn_recv from 10.71.0.254 >= 50")

	x, text = l.explain(vwAllowed)
	t.Logf("explain %s:\n%s", vwAllowed, text)
	if x.Outcome != "spared" || x.Guard == nil || x.Guard.Why != "allow list" || x.Kernel != nil {
		t.Errorf("allowed: outcome %q guard %+v kernel %+v", x.Outcome, x.Guard, x.Kernel)
	}
	mentions(t, x, "guard: never banned: 10.71.0.3/32 is protected (allow list)")

	x, text = l.explain(vwQuiet)
	t.Logf("explain %s:\n%s", vwQuiet, text)
	if x.Outcome != "below threshold" || x.Guard != nil || x.Kernel != nil || x.Rules[0].Peak < 15 || x.Rules[0].Peak >= 50 || x.Rules[0].Crossed {
		t.Errorf("quiet: outcome %q guard %+v rules %+v", x.Outcome, x.Guard, x.Rules)
	}
	mentions(t, x, "rule syn-flood", "below threshold 50", "only 0 of 1 samples")
	mentions(t, x, "kernel (nftables): not banned")

	if after := withoutExpiry(l.victim.KernelState()); after != kernel {
		t.Errorf("explain changed the kernel:\nbefore:\n%s\nafter:\n%s", kernel, after)
	}
	if now, err := os.ReadFile(stateFile); err != nil || !bytes.Equal(now, stored) {
		t.Errorf("explain changed the state store (%v)", err)
	}
	if now, _ := os.ReadDir(l.stDir); len(now) != len(entries) {
		t.Errorf("explain added files to the state directory: %d entries, was %d", len(now), len(entries))
	}
}

// withoutExpiry drops the time left nft lists for each set element, which
// changes by itself (expiresRE, limits_test.go).
func withoutExpiry(s string) string { return expiresRE.ReplaceAllString(s, "") }

// TestExplainBadInput: a bad subject or extra arguments exit 2 and name
// what was wrong.
func TestExplainBadInput(t *testing.T) {
	for _, args := range [][]string{{"explain"}, {"explain", "10.0.0.1/8"}, {"explain", "nonsense"}, {"explain", "10.0.0.1", "10.0.0.2"}} {
		var out, errb bytes.Buffer
		code := Main(t.Context(), append(args, "--state-dir", t.TempDir()), &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), "synban explain:") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message", args, code, errb.String())
		}
	}
}
