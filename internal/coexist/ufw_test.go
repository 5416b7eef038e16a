package coexist

import (
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// TestUfw: ufw (iptables-nft) enabled, reloaded, its rules changed and
// restarted beside synban. ufw writes /etc/ufw and /lib/ufw: it runs in a
// sandbox over copies of both.
func TestUfw(t *testing.T) {
	t.Parallel()
	netnstest.RequireCommand(t, "ufw")
	l := newLab(t, hooksInputForward)
	sb := newSandbox(t, l.victim, "/etc/ufw", "/lib/ufw")
	ufw := func(args ...string) { sb.mustRun(time.Minute, append([]string{"ufw"}, args...)...) }
	l.ban()
	l.step("ufw allow 80/tcp + enable", func() { ufw("allow", "80/tcp"); ufw("--force", "enable") })
	l.step("ufw reload", func() { ufw("reload") })
	l.step("ufw deny from a bystander", func() { ufw("deny", "from", bystanderA) })
	l.step("ufw disable + enable (restart)", func() { ufw("disable"); ufw("--force", "enable") })
	if !strings.Contains(l.others(), "ufw-user-input") {
		t.Fatalf("ufw's chains are not in the victim's ruleset:\n%s", l.others())
	}
	l.finish()
}
