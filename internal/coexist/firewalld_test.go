package coexist

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// publicZone is the copy's zone: Debian's public zone plus http, so the
// legitimate client reaches port 80 through firewalld.
const publicZone = `<?xml version="1.0" encoding="utf-8"?>
<zone>
  <short>Public</short>
  <service name="ssh"/>
  <service name="http"/>
</zone>
`

// TestFirewalld: firewalld (nftables backend) on a private D-Bus system bus,
// started, reloaded, given a permanent zone change, completely reloaded and
// restarted beside synban. It writes /etc/firewalld: a sandbox over a copy.
func TestFirewalld(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"firewalld", "firewall-cmd", "dbus-daemon"} {
		netnstest.RequireCommand(t, c)
	}
	l := newLab(t, hooksPrerouting)
	sb := newSandbox(t, l.victim, "/etc/firewalld")
	if err := os.WriteFile(filepath.Join(sb.copyOf("/etc/firewalld"), "zones", "public.xml"), []byte(publicZone), 0o644); err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(sb.runDir, "dbus"), 0o755); err != nil {
		t.Fatal(err)
	}
	sb.start(filepath.Join(logDir, "dbus.log"), "dbus-daemon", "--system", "--nofork", "--nopidfile")
	netnstest.Eventually(t, 10*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(sb.runDir, "dbus", "system_bus_socket"))
		return err == nil
	}, "the private D-Bus system bus did not come up")
	fwLog := filepath.Join(logDir, "firewalld.log")
	var fw *daemon
	startFirewalld := func() {
		fw = sb.start(filepath.Join(logDir, "firewalld.out"), "firewalld", "--nofork", "--nopid", "--log-file", fwLog)
		netnstest.Eventually(t, 45*time.Second, func() bool {
			if fw.exited() {
				t.Fatalf("firewalld exited:\n%s", fw.logTail())
			}
			out, _ := sb.run(10*time.Second, "firewall-cmd", "--state")
			return strings.TrimSpace(out) == "running"
		}, "firewalld did not reach running")
	}
	cmd := func(args ...string) { sb.mustRun(time.Minute, append([]string{"firewall-cmd"}, args...)...) }
	l.ban()
	l.step("firewalld start", startFirewalld)
	if !strings.Contains(l.others(), `"firewalld"`) {
		t.Fatalf("firewalld's table is not in the victim's ruleset")
	}
	l.step("firewall-cmd --reload", func() { cmd("--reload") })
	l.step("permanent zone change + reload", func() {
		cmd("--permanent", "--zone=public", "--add-port=8081/tcp")
		cmd("--permanent", "--zone=public", `--add-rich-rule=rule family="ipv4" source address="`+bystanderA+`" drop`)
		cmd("--reload")
	})
	l.step("firewall-cmd --complete-reload", func() { cmd("--complete-reload") })
	l.step("firewalld restart", func() { fw.stop(); startFirewalld() })
	l.finish()
}
