package coexist

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/lapitest"
	"github.com/synban/synban/internal/netnstest"
)

// writeFile0600 writes text to a new file in a temporary directory.
func writeFile0600(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCrowdsecBouncer: cs-firewall-bouncer (nftables mode) and synban's
// CrowdSec pull on one host and one LAPI: the bouncer started, a decision
// added and removed (both enforce it, then both drop it), the bouncer
// restarted; neither disturbs the other's tables.
func TestCrowdsecBouncer(t *testing.T) {
	t.Parallel()
	netnstest.RequireCommand(t, "crowdsec-firewall-bouncer")
	lapi := lapitest.Start(t)
	synKey := writeFile0600(t, "synban-key", lapi.BouncerKey+"\n")
	// The LAPI's URL is known once the victim is attached: the [crowdsec]
	// section is appended to the lab's policy then.
	l := newLab(t, hooksPrerouting)
	lk := lapi.Attach(t, l.victim)
	pol, err := os.ReadFile(l.policy)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.policy, append(pol, fmt.Sprintf(`
[crowdsec]
enabled = true
lapi_url = %q
bouncer_key_file = %q
push = false
pull = true
timeout = "20s"
`, lk.URL4, synKey)...), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := writeFile0600(t, "bouncer.yaml", lapitest.FirewallBouncerConfig(dir, lk.URL4, lapi.AddBouncer("cs-firewall-bouncer")))
	sb := newSandbox(t, l.victim)
	var b *daemon
	bouncerHas := func(addr string) bool {
		out, err := l.victim.Run("nft", "list", "table", "ip", "crowdsec")
		return err == nil && strings.Contains(out, addr)
	}
	startBouncer := func() {
		b = sb.start(filepath.Join(dir, "bouncer.out"), "crowdsec-firewall-bouncer", "-c", cfg)
		netnstest.Eventually(t, 30*time.Second, func() bool {
			if b.exited() {
				t.Fatalf("crowdsec-firewall-bouncer exited:\n%s", b.logTail())
			}
			_, err := l.victim.Run("nft", "list", "table", "ip", "crowdsec")
			return err == nil
		}, "the bouncer's table ip crowdsec did not appear")
	}
	synbanHas := func(addr string) bool {
		out, err := l.victim.Run("nft", "list", "set", "inet", "synban", "ban_v4")
		return err == nil && strings.Contains(out, addr+" ")
	}
	l.ban()
	l.step("bouncer start", startBouncer)
	l.step("LAPI decision added", func() {
		if _, err := lapi.Cscli("decisions", "add", "-i", bystanderA, "-d", "1h", "-R", "coexist"); err != nil {
			t.Fatal(err)
		}
		netnstest.Eventually(t, 20*time.Second, func() bool { return bouncerHas(bystanderA) },
			"the bouncer did not enforce the new decision")
	})
	if !synbanHas(bystanderA) {
		t.Fatalf("synban's pull did not enforce the LAPI decision for %s", bystanderA)
	}
	report(t, "one decision, both enforce it: the bouncer in ip crowdsec, synban in inet synban ban_v4")
	l.step("LAPI decision removed", func() {
		if _, err := lapi.Cscli("decisions", "delete", "-i", bystanderA); err != nil {
			t.Fatal(err)
		}
		netnstest.Eventually(t, 20*time.Second, func() bool { return !bouncerHas(bystanderA) },
			"the bouncer did not withdraw the deleted decision")
	})
	if synbanHas(bystanderA) {
		t.Fatalf("synban still enforces the deleted LAPI decision for %s", bystanderA)
	}
	l.step("bouncer restart", func() { b.stop(); startBouncer() })
	l.step("bouncer stop", b.stop)
	if _, err := l.victim.Run("nft", "list", "table", "ip", "crowdsec"); err == nil {
		t.Log("the bouncer leaves its table behind when stopped")
	}
	l.finish()
}
