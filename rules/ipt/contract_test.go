package ipt

import (
	"strings"
	"testing"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backendtest"
)

// programs are the iptables builds every kernel test runs against: the
// nf_tables build and the legacy one.
var programs = []string{"iptables", "iptables-legacy"}

// newBackend builds a backend on program inside ns, failing the test on error.
func newBackend(t *testing.T, ns *netnstest.NS, program string, o Options) *Backend {
	t.Helper()
	netnstest.RequireCommand(t, program)
	netnstest.RequireCommand(t, "ipset")
	o.NetNS, o.Path = ns.Path(), program
	b, err := New(o)
	if err != nil {
		t.Fatalf("New(%s): %v", program, err)
	}
	return b
}

func TestContract(t *testing.T) {
	for _, prog := range programs {
		t.Run(prog, func(t *testing.T) {
			netnstest.RequireCommand(t, prog)
			prog6 := strings.Replace(prog, "iptables", "ip6tables", 1)
			// The nf_tables build loses its jump and its chain's rules; the
			// legacy build loses every chain and rule, and then the ipsets
			// (bans included).
			disrupt := map[string]func(t *testing.T, ns *netnstest.NS){
				"iptables": func(t *testing.T, ns *netnstest.NS) {
					for _, p := range []string{prog, prog6} {
						ns.MustRun(p, "-F", DefaultChain)
						ns.MustRun(p, "-D", "INPUT", "-m", "comment", "--comment", JumpComment, "-j", DefaultChain)
					}
				},
				"iptables-legacy": func(t *testing.T, ns *netnstest.NS) {
					for _, p := range []string{prog, prog6} {
						ns.MustRun(p, "-F")
						ns.MustRun(p, "-X")
					}
					ns.MustRun("ipset", "destroy")
				},
			}[prog]
			backendtest.Run(t, func(t *testing.T, ns *netnstest.NS) rules.Backend {
				return newBackend(t, ns, prog, Options{})
			}, backendtest.Options{
				Disrupt: disrupt,
				Ruleset: func(rs *rules.Ruleset) {
					rs.Meter = &rules.Meter{Rate: 20, Burst: 40, Timeout: 60e9, IPv6Length: 64, Size: 4096}
					rs.ConnLimit = &rules.ConnLimit{Max: 50}
				},
				Snapshot: func(t *testing.T, ns *netnstest.NS) string {
					return othersSnapshot(t, ns, prog)
				},
			})
		})
	}
}

// othersSnapshot creates (once) a chain, a jump, a rule in INPUT and an
// ipset that are not synban's, and returns a picture of them.
func othersSnapshot(t *testing.T, ns *netnstest.NS, prog string) string {
	t.Helper()
	if _, err := ns.Run(prog, "-S", "OTHER"); err != nil {
		ns.MustRun("ipset", "create", "other-set", "hash:ip", "timeout", "0", "comment")
		ns.MustRun("ipset", "add", "other-set", "192.0.2.50", "comment", "not synban's")
		ns.MustRun(prog, "-N", "OTHER")
		ns.MustRun(prog, "-A", "OTHER", "-m", "set", "--match-set", "other-set", "src", "-m", "comment", "--comment", "theirs", "-j", "DROP")
		ns.MustRun(prog, "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
		ns.MustRun(prog, "-A", "INPUT", "-j", "OTHER")
	}
	var b strings.Builder
	b.WriteString(ns.MustRun(prog, "-S"))
	b.WriteString(ns.MustRun("ipset", "list", "other-set"))
	return b.String()
}
