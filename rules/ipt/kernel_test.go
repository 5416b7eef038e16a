package ipt

import (
	"context"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/trust"
	"github.com/synban/synban/rules"
)

func tctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func mustApply(t *testing.T, b *Backend, rs *rules.Ruleset) rules.Result {
	t.Helper()
	res, err := b.Apply(tctx(t), rs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

func baseRS(bans ...rules.Ban) *rules.Ruleset {
	return &rules.Ruleset{
		Table: "synban", Family: "inet", Hooks: []string{"input"},
		Allow:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		MaxEntries: 4096,
		Bans:       bans,
	}
}

func counter(t *testing.T, b *Backend, rule string) uint64 {
	t.Helper()
	cs, err := b.Counters(tctx(t))
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	for _, c := range cs {
		if c.Rule == rule {
			return c.Packets
		}
	}
	t.Fatalf("no counter %q in %+v", rule, cs)
	return 0
}

// listCounter reads a rule's packet count from `iptables -L CHAIN -v -x -n`,
// independently of the backend.
func listCounter(t *testing.T, ns *netnstest.NS, prog, comment string) uint64 {
	t.Helper()
	out := ns.MustRun(prog, "-L", DefaultChain, "-v", "-x", "-n")
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "/* "+comment+" */") {
			n, err := strconv.ParseUint(strings.Fields(l)[0], 10, 64)
			if err != nil {
				t.Fatalf("parse %q: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no rule with comment %s in:\n%s", comment, out)
	return 0
}

var receivedRE = regexp.MustCompile(`(\d+) packets received`)

// synProbe sends n TCP SYNs (bounded: n packets, 2 ms apart) from the
// attacker namespace to dst port 8080 and returns how many answers came back.
func synProbe(t *testing.T, attacker *netnstest.NS, dst string, n int) int {
	t.Helper()
	out, _ := attacker.Run("hping3", "-S", "-p", "8080", "-c", strconv.Itoa(n), "-i", "u2000", dst)
	m := receivedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("hping3 output has no packet count:\n%s", out)
	}
	got, _ := strconv.Atoi(m[1])
	return got
}

// pair makes a victim and an attacker namespace joined by a veth pair:
// victim 10.77.1.1, attacker 10.77.1.2.
func pair(t *testing.T, name string) (victim, attacker *netnstest.NS) {
	t.Helper()
	netnstest.RequireCommand(t, "hping3")
	victim = netnstest.New(t, name+"v")
	attacker = netnstest.New(t, name+"a")
	netnstest.Link(t, victim, attacker, []string{"10.77.1.1/24"}, []string{"10.77.1.2/24"})
	return victim, attacker
}

// TestBanDropsAndAllowWins bans the attacker and sees its SYNs dropped with
// the ban_v4 counter rising, then allows it too and sees the allow list win.
func TestBanDropsAndAllowWins(t *testing.T) {
	for _, prog := range programs {
		t.Run(prog, func(t *testing.T) {
			victim, attacker := pair(t, "drop")
			b := newBackend(t, victim, prog, Options{})
			const n = 20

			mustApply(t, b, baseRS())
			if got := synProbe(t, attacker, "10.77.1.1", n); got == 0 {
				t.Fatalf("before any ban, no answer to %d SYNs: the test path is broken", n)
			}

			ban := rules.Ban{Prefix: netip.MustParsePrefix("10.77.1.2/32"), Timeout: 5 * time.Minute, Reason: "test ban"}
			mustApply(t, b, baseRS(ban))
			if got := synProbe(t, attacker, "10.77.1.1", n); got != 0 {
				t.Errorf("banned source got %d answers to %d SYNs, want 0", got, n)
			}
			if c := counter(t, b, "ban_v4"); c < n {
				t.Errorf("Counters: ban_v4 = %d packets, want >= %d", c, n)
			}
			dropped := listCounter(t, victim, prog, "ban_v4")
			if dropped < n {
				t.Errorf("%s -L: ban_v4 = %d packets, want >= %d", prog, dropped, n)
			}

			rs := baseRS(ban)
			rs.Allow = append(rs.Allow, netip.MustParsePrefix("10.77.1.0/28"))
			mustApply(t, b, rs)
			if got := synProbe(t, attacker, "10.77.1.1", n); got == 0 {
				t.Errorf("source both allowed and banned got no answer: the allow list must come first")
			}
			if c := listCounter(t, victim, prog, "ban_v4"); c != dropped {
				t.Errorf("ban_v4 counter moved from %d to %d although the source is allowed", dropped, c)
			}
		})
	}
}

// TestMeter checks the hashlimit rules as iptables prints them, that the
// meter drops a burst of SYNs, and that changing the rate takes effect (a
// new hashlimit table replaces the old one).
func TestMeter(t *testing.T) {
	for _, prog := range programs {
		t.Run(prog, func(t *testing.T) {
			victim, attacker := pair(t, "meter")
			b := newBackend(t, victim, prog, Options{})
			rs := baseRS()
			rs.Meter = &rules.Meter{Rate: 1, Burst: 1, Timeout: 10 * time.Second, Ports: []uint16{8080}, IPv6Length: 64, Size: 1024}
			mustApply(t, b, rs)

			prog6 := strings.Replace(prog, "iptables", "ip6tables", 1)
			v4 := victim.MustRun(prog, "-S", DefaultChain)
			v6 := victim.MustRun(prog6, "-S", DefaultChain)
			for _, want := range []string{"-m hashlimit --hashlimit-above 1/sec --hashlimit-burst 1 --hashlimit-mode srcip", "--dport 8080", "--hashlimit-htable-expire 10000", "--comment meter_v4 -j DROP"} {
				if !strings.Contains(v4, want) {
					t.Errorf("%s -S lacks %q:\n%s", prog, want, v4)
				}
			}
			if !strings.Contains(v6, "--hashlimit-srcmask 64") || !strings.Contains(v6, "--comment meter_v6") {
				t.Errorf("%s -S lacks the /64 IPv6 meter:\n%s", prog6, v6)
			}

			const n = 30
			got := synProbe(t, attacker, "10.77.1.1", n)
			if got >= n {
				t.Errorf("meter at 1/s burst 1 let all %d SYNs through", n)
			}
			if c := counter(t, b, "meter_v4"); c == 0 || c != uint64(n-got) {
				t.Errorf("meter_v4 counter = %d, want the %d unanswered SYNs", c, n-got)
			}

			old := MeterName(rs.Meter, false)
			rs.Meter.Rate = 2
			res := mustApply(t, b, rs)
			if len(res.Changed) == 0 {
				t.Errorf("changing the meter rate changed nothing: %+v", res)
			}
			tables := victim.MustRun("ls", "/proc/net/ipt_hashlimit")
			if nw := MeterName(rs.Meter, false); nw == old || !strings.Contains(tables, nw) || strings.Contains(tables, old) {
				t.Errorf("after the rate change want hashlimit table %s and not %s; have %q", nw, old, tables)
			}
			if res := mustApply(t, b, rs); res.Created || len(res.Changed) != 0 {
				t.Errorf("Apply after the meter change is not quiet: %+v", res)
			}
		})
	}
}

// ruleLines returns a chain's rules as `iptables -S` prints them.
func ruleLines(t *testing.T, ns *netnstest.NS, prog, chain string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(ns.MustRun(prog, "-S", chain), "\n") {
		if strings.HasPrefix(l, "-A ") {
			out = append(out, l)
		}
	}
	return out
}

// TestJumps repairs a missing, displaced or duplicated jump, adds FORWARD
// and DOCKER-USER jumps when asked and removes the FORWARD one when no
// longer asked.
func TestJumps(t *testing.T) {
	for _, prog := range programs {
		t.Run(prog, func(t *testing.T) {
			ns := netnstest.New(t, "jumps")
			ns.MustRun(prog, "-N", "DOCKER-USER")
			ns.MustRun(prog, "-A", "DOCKER-USER", "-j", "RETURN")
			b := newBackend(t, ns, prog, Options{DockerUser: true})
			jump := "-A INPUT -m comment --comment synban -j SYNBAN"
			user := "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"
			rs := baseRS()
			mustApply(t, b, rs)

			// The jump vanished but the chain remains.
			ns.MustRun(prog, "-D", "INPUT", "1")
			if res := mustApply(t, b, rs); !res.Created {
				t.Errorf("restoring a deleted jump: Created = false")
			}
			if got := ruleLines(t, ns, prog, "INPUT"); !slices.Equal(got, []string{jump}) {
				t.Errorf("INPUT after restore = %q", got)
			}

			// Someone inserted a rule above it, and someone added a second jump.
			ns.MustRun(prog, "-I", "INPUT", "1", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
			ns.MustRun(prog, "-A", "INPUT", "-m", "comment", "--comment", "synban", "-j", "SYNBAN")
			if res := mustApply(t, b, rs); len(res.Changed) == 0 {
				t.Errorf("moving the jump to the top: Changed empty")
			}
			if got := ruleLines(t, ns, prog, "INPUT"); !slices.Equal(got, []string{jump, user}) {
				t.Errorf("INPUT = %q, want the jump on top of the user's rule, once", got)
			}

			rs.Hooks = []string{"input", "forward"}
			mustApply(t, b, rs)
			if got := ruleLines(t, ns, prog, "FORWARD"); !slices.Equal(got, []string{"-A FORWARD -m comment --comment synban -j SYNBAN"}) {
				t.Errorf("FORWARD = %q", got)
			}
			wantDU := []string{"-A DOCKER-USER -m comment --comment synban -j SYNBAN", "-A DOCKER-USER -j RETURN"}
			if got := ruleLines(t, ns, prog, "DOCKER-USER"); !slices.Equal(got, wantDU) {
				t.Errorf("DOCKER-USER = %q, want %q", got, wantDU)
			}
			if res := mustApply(t, b, rs); res.Created || len(res.Changed) != 0 {
				t.Errorf("second Apply with forward hook not quiet: %+v", res)
			}

			rs.Hooks = []string{"input"}
			mustApply(t, b, rs)
			if got := ruleLines(t, ns, prog, "FORWARD"); len(got) != 0 {
				t.Errorf("FORWARD still has %q after the forward hook was dropped", got)
			}

			if err := b.Flush(tctx(t)); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			if got := ruleLines(t, ns, prog, "INPUT"); !slices.Equal(got, []string{user}) {
				t.Errorf("INPUT after Flush = %q, want only the user's rule", got)
			}
			if got := ruleLines(t, ns, prog, "DOCKER-USER"); !slices.Equal(got, []string{"-A DOCKER-USER -j RETURN"}) {
				t.Errorf("DOCKER-USER after Flush = %q", got)
			}
			if out, err := ns.Run(prog, "-S", DefaultChain); err == nil {
				t.Errorf("chain %s survived Flush:\n%s", DefaultChain, out)
			}
		})
	}
}

// TestSetsCrossCheck reads the ipsets with the ipset program, then grows
// MaxEntries and sees the sets rebuilt with their bans kept.
func TestSetsCrossCheck(t *testing.T) {
	ns := netnstest.New(t, "sets")
	b := newBackend(t, ns, "iptables", Options{})
	bans := []rules.Ban{
		{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Timeout: 10 * time.Minute, Reason: `say "hi"`},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/64"), Timeout: 90 * time.Second, Reason: "v6 net"},
	}
	mustApply(t, b, baseRS(bans...))
	out := ns.MustRun("ipset", "list", IPSetBan4)
	if !regexp.MustCompile(`203\.0\.113\.7 timeout (59\d|600) packets 0 bytes 0 comment "say 'hi'"`).MatchString(out) {
		t.Errorf("ipset list %s:\n%s", IPSetBan4, out)
	}
	if !strings.Contains(out, "maxelem 4096") || !strings.Contains(out, "Type: hash:ip") || !strings.Contains(out, "counters") {
		t.Errorf("ipset %s header wrong:\n%s", IPSetBan4, out)
	}
	out = ns.MustRun("ipset", "list", IPSetBanNet6)
	if !regexp.MustCompile(`2001:db8:1::/64 timeout (8\d|90) packets 0 bytes 0 comment "v6 net"`).MatchString(out) {
		t.Errorf("ipset list %s:\n%s", IPSetBanNet6, out)
	}
	if out := ns.MustRun("ipset", "list", IPSetAllow4); !strings.Contains(out, "127.0.0.0/8") {
		t.Errorf("allow set lacks 127.0.0.0/8:\n%s", out)
	}

	rs := baseRS(bans...)
	rs.MaxEntries = 8192
	rs.Bans = nil
	res := mustApply(t, b, rs)
	if !slices.Contains(res.Changed, "ipset "+IPSetBan4) {
		t.Errorf("growing MaxEntries: Changed = %v, want ipset %s", res.Changed, IPSetBan4)
	}
	if out := ns.MustRun("ipset", "list", "-t", IPSetBan4); !strings.Contains(out, "maxelem 8192") {
		t.Errorf("ipset %s not grown:\n%s", IPSetBan4, out)
	}
	got, err := b.Bans(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Reason != `say 'hi'` || got[1].Prefix != bans[1].Prefix || got[1].Expires <= 0 || got[1].Expires > 90*time.Second {
		t.Errorf("bans after the rebuild = %+v", got)
	}
	if out, err := ns.Run("ipset", "list", "-n"); err != nil || strings.Contains(out, "-tmp") {
		t.Errorf("temporary set left behind: %v\n%s", err, out)
	}
}

// TestAutoPath picks the nf_tables build when it works and refuses a
// program that does not exist.
func TestAutoPath(t *testing.T) {
	ns := netnstest.New(t, "probe")
	netnstest.RequireCommand(t, "iptables")
	b, err := New(Options{NetNS: ns.Path()})
	if err != nil {
		t.Fatalf("New with auto path: %v", err)
	}
	// Names are resolved in the fixed system PATH, never $PATH.
	want4, err := trust.Program("iptables", "")
	if err != nil {
		t.Fatal(err)
	}
	want6, err := trust.Program("ip6tables", "")
	if err != nil {
		t.Fatal(err)
	}
	if v4, v6 := b.Paths(); v4 != want4 || v6 != want6 || !strings.HasPrefix(v4, "/") {
		t.Errorf("auto path chose %s and %s, want %s and %s", v4, v6, want4, want6)
	}
	if err := Probe(Options{NetNS: ns.Path(), Path: "/nonexistent/iptables"}); err == nil {
		t.Error("Probe accepted a missing program")
	}
	if err := Probe(Options{NetNS: "/nonexistent/netns", Path: "iptables"}); err == nil {
		t.Error("Probe accepted a missing namespace")
	}
}
