package coexist

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// f2bJail is the test's jail: a log file the test writes, nftables action
// (Debian's nftables-allports: table inet f2b-table, chain at input
// priority -1). Debian's own sshd jail is switched off.
const f2bJail = `[DEFAULT]
banaction = nftables-allports
backend = polling

[sshd]
enabled = false

[synban-test]
enabled = true
filter = synban-test
logpath = %s
maxretry = 2
findtime = 600
bantime = 600
`

const f2bFilter = `[Definition]
failregex = ^Failed login from <HOST>$
datepattern = {NONE}
`

// TestFail2ban: fail2ban started, banning from a log file, unbanning (the
// attacker synban also bans included), reloaded and restarted beside synban.
// It writes /etc/fail2ban (the test's jail), /var/lib/fail2ban (its
// database) and /run/fail2ban: a sandbox over copies.
func TestFail2ban(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"fail2ban-server", "fail2ban-client"} {
		netnstest.RequireCommand(t, c)
	}
	l := newLab(t, hooksInputForward)
	sb := newSandbox(t, l.victim, "/etc/fail2ban", "/var/lib/fail2ban")
	conf := sb.copyOf("/etc/fail2ban")
	logDir := t.TempDir()
	authLog := filepath.Join(logDir, "auth.log")
	for name, text := range map[string]string{
		authLog:                           "",
		filepath.Join(conf, "jail.local"): fmt.Sprintf(f2bJail, authLog),
		filepath.Join(conf, "filter.d", "synban-test.conf"): f2bFilter,
	} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(sb.runDir, "fail2ban"), 0o755); err != nil {
		t.Fatal(err)
	}
	var srv *daemon
	client := func(args ...string) (string, error) {
		return sb.run(time.Minute, append([]string{"fail2ban-client"}, args...)...)
	}
	start := func() {
		srv = sb.start(filepath.Join(logDir, "fail2ban.out"), "fail2ban-server", "-f", "--logtarget", filepath.Join(logDir, "fail2ban.log"))
		netnstest.Eventually(t, 45*time.Second, func() bool {
			if srv.exited() {
				t.Fatalf("fail2ban-server exited:\n%s", srv.logTail())
			}
			out, err := client("status", "synban-test")
			return err == nil && strings.Contains(out, "Currently banned")
		}, "fail2ban's jail synban-test did not come up")
		// The action creates its table at the first ban or at start.
	}
	inSet := func(addr string) bool {
		out, err := l.victim.Run("nft", "list", "set", "inet", "f2b-table", "addr-set-synban-test")
		return err == nil && strings.Contains(out, addr)
	}
	failLogins := func(addr string) {
		f, err := os.OpenFile(authLog, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			fmt.Fprintf(f, "Failed login from %s\n", addr)
		}
		f.Close()
		netnstest.Eventually(t, 30*time.Second, func() bool { return inSet(addr) },
			"fail2ban did not ban %s from the log file", addr)
	}
	unban := func(addr string) {
		if out, err := client("set", "synban-test", "unbanip", addr); err != nil {
			t.Fatalf("fail2ban unbanip: %v: %s", err, out)
		}
		if inSet(addr) {
			t.Fatalf("%s is still in fail2ban's set after unbanip", addr)
		}
	}
	l.ban()
	l.step("fail2ban start", start)
	l.step("fail2ban bans a bystander from the log file", func() { failLogins(bystanderA) })
	l.step("fail2ban bans the attacker too, then unbans it", func() { failLogins(attackerA); unban(attackerA) })
	l.step("fail2ban unbans the bystander", func() { unban(bystanderA) })
	l.step("fail2ban reload", func() {
		if out, err := client("reload"); err != nil {
			t.Fatalf("fail2ban-client reload: %v: %s", err, out)
		}
	})
	l.step("fail2ban restart", func() {
		if out, err := client("stop"); err != nil {
			t.Fatalf("fail2ban-client stop: %v: %s", err, out)
		}
		select {
		case <-srv.done:
		case <-time.After(20 * time.Second):
			t.Fatal("fail2ban-server did not exit within 20 s of fail2ban-client stop")
		}
		start()
		failLogins(bystanderA)
	})
	l.finish()
}
