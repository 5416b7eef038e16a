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

// birdRouter is BIRD 2 running in a namespace the test made, read with
// birdc on its own control socket.
type birdRouter struct {
	ns   *netnstest.NS
	sock string
	log  string
}

// startBird runs `bird -f` with conf inside ns until the test ends, and
// waits until birdc answers.
func startBird(t *testing.T, ns *netnstest.NS, conf string) *birdRouter {
	t.Helper()
	netnstest.RequireCommand(t, "bird")
	netnstest.RequireCommand(t, "birdc")
	dir := t.TempDir()
	b := &birdRouter{ns: ns, sock: filepath.Join(dir, "bird.ctl"), log: filepath.Join(dir, "bird.log")}
	conf = fmt.Sprintf("log %q all;\n", b.log) + conf
	path := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(context.Background(), "bird", "-c", path, "-s", b.sock, "-P", filepath.Join(dir, "bird.pid"), "-f")
	out := &netnstest.LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bird in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			l, _ := os.ReadFile(b.log)
			t.Logf("bird output:\n%s\nbird log:\n%s", out.String(), l)
		}
	})
	netnstest.Eventually(t, 10*time.Second, func() bool {
		_, err := b.birdc("show", "status")
		return err == nil
	}, "birdc on %s never answered", b.sock)
	return b
}

func (b *birdRouter) birdc(args ...string) (string, error) {
	return b.ns.Run(append([]string{"birdc", "-s", b.sock}, args...)...)
}

// TestBirdFlowSpecValidation: BIRD validating FlowSpec (RFC 8955 section
// 6, `validate yes` on its flow4 channel) marks synban's rule unreachable
// (not applied) without flowspec_validation_routes, and installs it with
// them: the rule's destination then has a unicast route from the same peer.
func TestBirdFlowSpecValidation(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("validation_routes=%v", on), func(t *testing.T) {
			r := netnstest.New(t, "bird-r")
			v := netnstest.New(t, "bird-v")
			netnstest.Link(t, r, v, []string{labRouterToV4 + "/24"}, []string{labVictim4 + "/24"})
			bird := startBird(t, r, fmt.Sprintf(`router id %s;
protocol device {}
ipv4 table t4 { trie yes; };
flow4 table f4;
protocol bgp synban {
  local %s as %d;
  neighbor %s as %d;
  passive on;
  ipv4 { table t4; import all; export none; };
  flow4 { table f4; import all; export none; validate yes; base table t4; };
}
`, labRouterToV4, labRouterToV4, labRouterASN, labVictim4, labVictimASN))
			l := &lab{t: t, r: r, v: v, dir: t.TempDir()}
			cfg := l.config()
			cfg.Neighbors[0].Families = []string{upstream.FamilyIPv4FlowSpec, upstream.FamilyIPv4Unicast}
			cfg.FlowSpecValidationRoutes = on
			l.startSpeaker(cfg)
			rule := upstream.Announcement{Kind: upstream.FlowSpec, Destination: pfx(labVictim4 + "/32"), Source: pfx("10.98.0.0/24"), Ports: []uint16{80}, Action: upstream.Discard}
			if err := upstream.WriteDesired(l.dir, upstream.Confirm(time.Now(), []upstream.Announcement{rule}, upstream.DecideState{})); err != nil {
				t.Fatal(err)
			}
			var out string
			netnstest.Eventually(t, 20*time.Second, func() bool {
				out, _ = bird.birdc("show", "route", "table", "f4", "all")
				return strings.Contains(out, "dst "+labVictim4+"/32") && (!on || !strings.Contains(out, "unreachable"))
			}, "BIRD's flow4 table never held the rule as wanted (validation routes %v):\n%s", on, &out)
			if got := strings.Contains(out, "unreachable"); got == on {
				t.Errorf("validation routes %v: rule unreachable = %v, want %v:\n%s", on, got, !on, out)
			}
			uni, _ := bird.birdc("show", "route", "table", "t4", "all")
			if on && (!strings.Contains(uni, labVictim4+"/32") || !strings.Contains(uni, "(65535,65281)") || !strings.Contains(uni, "(65535,65282)")) {
				t.Errorf("no validation route with NO_EXPORT and NO_ADVERTISE in BIRD's ipv4 table:\n%s", uni)
			}
			if !on && strings.Contains(uni, labVictim4+"/32") {
				t.Errorf("validation route sent with the option off:\n%s", uni)
			}
			t.Logf("flow4:\n%s\nipv4:\n%s", out, uni)
		})
	}
}
