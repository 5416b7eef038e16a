package speaker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"

	"github.com/synban/synban/upstream"
)

// frrBgpd is FRR's bgpd, without zebra, in a namespace the test made.
const frrBgpd = "/usr/lib/frr/bgpd"

// TestFRRFlowSpec: FRR's bgpd (alone, no zebra) takes the speaker's
// FlowSpec rule, every component, over an established session, and the
// speaker's OPEN carries only the capabilities synban uses: FRR sees no
// extended next-hop capability from it and logs no "Unexpected afi/safi"
// (GoBGP's own server advertised extended next hop for the FlowSpec
// families, which FRR logged on every session).
func TestFRRFlowSpec(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, frrBgpd)
	netnstest.RequireCommand(t, "vtysh")
	r := netnstest.New(t, "frr-r")
	v := netnstest.New(t, "frr-v")
	netnstest.Link(t, r, v, []string{labRouterToV4 + "/24"}, []string{labVictim4 + "/24"})
	dir := t.TempDir()
	logPath := filepath.Join(dir, "bgpd.log")
	conf := fmt.Sprintf(`hostname frr-r
log file %s debugging
debug bgp neighbor-events
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor %s remote-as %d
 neighbor %s passive
 address-family ipv4 flowspec
  neighbor %s activate
 exit-address-family
`, logPath, labRouterASN, labRouterToV4, labVictim4, labVictimASN, labVictim4, labVictim4)
	confPath := filepath.Join(dir, "bgpd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := r.Command(context.Background(), frrBgpd, "-f", confPath, "-i", filepath.Join(dir, "bgpd.pid"), "-Z", "-S",
		"--vty_socket", dir, "-z", filepath.Join(dir, "zserv.api"))
	out := &netnstest.LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("bgpd output:\n%s\nbgpd log:\n%s", out, b)
		}
	})
	vtysh := func(c string) string {
		o, _ := r.Run("vtysh", "--vty_socket", dir, "-d", "bgpd", "-c", c)
		return o
	}
	l := &lab{t: t, r: r, v: v, dir: t.TempDir()}
	cfg := l.config()
	cfg.Neighbors[0].Families = []string{upstream.FamilyIPv4FlowSpec}
	l.startSpeaker(cfg)
	rule := upstream.Announcement{Kind: upstream.FlowSpec, Destination: pfx(labVictim4 + "/32"), Source: pfx("10.98.0.0/24"), Ports: []uint16{80}, Action: upstream.Discard}
	if err := upstream.WriteDesired(l.dir, upstream.Confirm(time.Now(), []upstream.Announcement{rule}, upstream.DecideState{})); err != nil {
		t.Fatal(err)
	}
	var rib string
	netnstest.Eventually(t, 30*time.Second, func() bool {
		rib = vtysh("show bgp ipv4 flowspec detail")
		return strings.Contains(rib, "Destination Address "+labVictim4+"/32") && strings.Contains(rib, "Source Address 10.98.0.0/24")
	}, "FRR never held the rule:\n%s", &rib)
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "BGP_Established") && !strings.Contains(string(b), "Established") {
		t.Errorf("FRR's log shows no established session: the check below would prove nothing:\n%s", b)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "Unexpected afi/safi") {
			t.Errorf("FRR logged: %s", line)
		}
	}
	nb := vtysh("show bgp neighbors " + labVictim4)
	if !strings.Contains(nb, "Neighbor capabilities:") {
		t.Fatalf("FRR shows no capabilities for the session:\n%s", nb)
	}
	for _, line := range strings.Split(nb, "\n") {
		if strings.Contains(line, "Extended nexthop") && strings.Contains(line, "received") {
			t.Errorf("FRR received the extended next-hop capability: %q\n%s", strings.TrimSpace(line), nb)
		}
	}
	t.Logf("FRR:\n%s\n%s", rib, nb)
}
