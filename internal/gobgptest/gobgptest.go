// Package gobgptest runs Debian's gobgpd as the "upstream router" of kernel
// tests: inside a network namespace the test made, configured from a small
// struct, its RIB and sessions read back with its own gobgp CLI.
package gobgptest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// APIPort is gobgpd's gRPC port on the namespace's own 127.0.0.1 (each
// namespace has its own loopback, so tests do not collide).
const APIPort = 50051

// Neighbor is one session the router accepts.
type Neighbor struct {
	Address string
	PeerASN uint32
	// Families, in gobgp names (ipv4-flowspec, ipv6-unicast, ...).
	Families []string
	// MaxPrefixes, per family, is the prefix limit: over it gobgpd tears
	// the session down. Absent: no limit.
	MaxPrefixes map[string]int
}

// Config is the router's configuration.
type Config struct {
	ASN      uint32
	RouterID string
	// Neighbors connect to the router (it is passive towards them).
	Neighbors []Neighbor
}

// Router is a running gobgpd.
type Router struct {
	t   testing.TB
	NS  *netnstest.NS
	Log string // gobgpd's log file
}

// TOML renders cfg as gobgpd's configuration file.
func (c Config) TOML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global.config]\n  as = %d\n  router-id = %q\n  port = 179\n", c.ASN, c.RouterID)
	for _, n := range c.Neighbors {
		fmt.Fprintf(&b, "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = %q\n    peer-as = %d\n", n.Address, n.PeerASN)
		b.WriteString("  [neighbors.transport.config]\n    passive-mode = true\n")
		b.WriteString("  [neighbors.timers.config]\n    connect-retry = 1\n    idle-hold-time-after-reset = 1\n")
		for _, f := range n.Families {
			fmt.Fprintf(&b, "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = %q\n", f)
			if m, ok := n.MaxPrefixes[f]; ok {
				fmt.Fprintf(&b, "    [neighbors.afi-safis.prefix-limit.config]\n      max-prefixes = %d\n", m)
			}
		}
	}
	return b.String()
}

// Start runs gobgpd with cfg inside ns and waits until its API answers. It
// is killed when the test ends.
func Start(t testing.TB, ns *netnstest.NS, cfg Config) *Router {
	t.Helper()
	netnstest.RequireCommand(t, "gobgpd")
	netnstest.RequireCommand(t, "gobgp")
	dir := t.TempDir()
	conf := filepath.Join(dir, "gobgpd.toml")
	if err := os.WriteFile(conf, []byte(cfg.TOML()), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "gobgpd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd := ns.Command(context.Background(), "gobgpd", "-f", conf, "--api-hosts", fmt.Sprintf("127.0.0.1:%d", APIPort), "--log-plain")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gobgpd in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("gobgpd log:\n%s", b)
			}
		}
	})
	r := &Router{t: t, NS: ns, Log: logPath}
	netnstest.Eventually(t, 15*time.Second, func() bool {
		_, err := r.gobgp("global")
		return err == nil
	}, "gobgpd API on 127.0.0.1:%d in %s never answered", APIPort, ns.Name)
	return r
}

// gobgp runs the gobgp CLI against the router.
func (r *Router) gobgp(args ...string) (string, error) {
	return r.NS.Run(append([]string{"gobgp", "-u", "127.0.0.1", "-p", fmt.Sprint(APIPort)}, args...)...)
}

// Route is one path in the router's RIB, as `gobgp global rib -j` shows
// it.
type Route struct {
	// Key is gobgp's text for the NLRI, e.g. "[destination:
	// 203.0.113.10/32][source: ...][protocol: ==tcp]...".
	Key string
	// Rate is the FlowSpec traffic-rate in bytes/s (0 = discard), nil when
	// the path carries none.
	Rate *float64
	// Communities are the standard communities, AS:value.
	Communities []string
	// NextHop is the path's next hop (FlowSpec: 0.0.0.0 or ::).
	NextHop string
}

type ribPath struct {
	Attrs []struct {
		Type        int    `json:"type"`
		Nexthop     string `json:"nexthop"`
		Value       any    `json:"value"`
		Communities []any  `json:"communities"`
	} `json:"attrs"`
}

// RIB returns the routes of a family (ipv4-flowspec, ipv6-unicast, ...).
func (r *Router) RIB(family string) ([]Route, error) {
	cliFamily := map[string]string{"ipv4-unicast": "ipv4", "ipv6-unicast": "ipv6"}[family]
	if cliFamily == "" {
		cliFamily = family
	}
	out, err := r.gobgp("global", "rib", "-a", cliFamily, "-j")
	if err != nil {
		return nil, err
	}
	out = strings.TrimSpace(out)
	if out == "" || out == "null" || out == "{}" {
		return nil, nil
	}
	var m map[string][]ribPath
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil, fmt.Errorf("gobgp rib %s -j: %w: %s", family, err, out)
	}
	var routes []Route
	for key, paths := range m {
		for _, p := range paths {
			rt := Route{Key: key}
			for _, a := range p.Attrs {
				switch a.Type {
				case 3: // NEXT_HOP
					rt.NextHop = fmt.Sprint(a.Nexthop)
				case 14: // MP_REACH_NLRI
					rt.NextHop = a.Nexthop
				case 8: // COMMUNITIES
					cs := a.Communities
					if v, ok := a.Value.([]any); ok && cs == nil {
						cs = v
					}
					{
						for _, c := range cs {
							if f, ok := c.(float64); ok {
								v := uint32(f)
								rt.Communities = append(rt.Communities, fmt.Sprintf("%d:%d", v>>16, v&0xffff))
							}
						}
					}
				case 16: // EXTENDED_COMMUNITIES
					if ecs, ok := a.Value.([]any); ok {
						for _, ec := range ecs {
							if m, ok := ec.(map[string]any); ok {
								if rate, ok := m["rate"].(float64); ok {
									rt.Rate = &rate
								} else if m["subtype"] == float64(6) {
									zero := 0.0
									rt.Rate = &zero
								}
							}
						}
					}
				}
			}
			routes = append(routes, rt)
		}
	}
	return routes, nil
}

// Enable re-enables the neighbor at addr after an administrative shutdown
// (gobgpd shuts a session down for good when its prefix limit is crossed).
func (r *Router) Enable(addr string) error {
	_, err := r.gobgp("neighbor", addr, "enable")
	return err
}

// NeighborState returns the session state of the neighbor at addr:
// "established", "active", "idle", ...
func (r *Router) NeighborState(addr string) (string, error) {
	out, err := r.gobgp("neighbor", "-j")
	if err != nil {
		return "", err
	}
	var ns []struct {
		State struct {
			NeighborAddress string `json:"neighbor_address"`
			SessionState    int    `json:"session_state"`
		} `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		return "", fmt.Errorf("gobgp neighbor -j: %w: %s", err, out)
	}
	names := []string{"unknown", "idle", "connect", "active", "opensent", "openconfirm", "established"}
	for _, n := range ns {
		if n.State.NeighborAddress == addr {
			if n.State.SessionState >= 0 && n.State.SessionState < len(names) {
				return names[n.State.SessionState], nil
			}
			return fmt.Sprint(n.State.SessionState), nil
		}
	}
	return "", fmt.Errorf("gobgpd has no neighbor %s", addr)
}
