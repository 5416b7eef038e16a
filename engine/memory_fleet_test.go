package engine

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synban/synban/crowdsec"
	"github.com/synban/synban/rules/memory"
)

// stubLAPI is a CrowdSec LAPI in memory: the decision stream it serves,
// and what was pushed and deleted.
type stubLAPI struct {
	mu        sync.Mutex
	decisions []crowdsec.Decision
	down      error
	pushed    []crowdsec.Ban
	deleted   []netip.Prefix
	streams   int
}

func (s *stubLAPI) Stream(_ context.Context, o crowdsec.StreamOptions) (*crowdsec.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams++
	if s.down != nil {
		return nil, s.down
	}
	return &crowdsec.Stream{New: append([]crowdsec.Decision(nil), s.decisions...)}, nil
}

func (s *stubLAPI) PushBans(_ context.Context, bans []crowdsec.Ban) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down != nil {
		return nil, s.down
	}
	s.pushed = append(s.pushed, bans...)
	return make([]string, len(bans)), nil
}

func (s *stubLAPI) DeleteDecisions(_ context.Context, p netip.Prefix) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down != nil {
		return 0, s.down
	}
	s.deleted = append(s.deleted, p)
	return 1, nil
}

func (s *stubLAPI) Login(context.Context) error { return s.down }

func decision(id int64, subject string, left time.Duration) crowdsec.Decision {
	p := netip.MustParsePrefix(subject)
	return crowdsec.Decision{ID: id, Origin: "cscli", Type: "ban", Scope: "Ip", Value: p.Addr().String(),
		Scenario: "manual", Prefix: p, Duration: left}
}

// fleetRig is a rig with [crowdsec] pulling and pushing through a stub.
func fleetRig(t *testing.T) *rig {
	r := newRig(t)
	r.lapi = &stubLAPI{}
	c := &r.p.CrowdSec
	c.Enabled, c.Push, c.Pull = true, true, true
	c.LAPIURL = "http://127.0.0.1:1/"
	c.MachineID = "web1"
	c.PasswordFile = secretFile(t, "pw", 0o600)
	c.BouncerKeyFile = secretFile(t, "key", 0o600)
	return r
}

func TestMemoryFleetJoin(t *testing.T) {
	r := fleetRig(t)
	pulled := netip.MustParsePrefix("192.0.2.66/32")
	r.lapi.decisions = []crowdsec.Decision{decision(1, "192.0.2.66/32", time.Hour)}
	out := r.run(capSingle)
	if out.Fleet == nil || out.Fleet.Err != nil || out.Fleet.Pulled != 1 {
		t.Fatalf("fleet report %+v", out.Fleet)
	}
	k := r.kernel()
	if ab, ok := k[pulled]; !ok || ab.Expires != time.Hour || !strings.HasPrefix(ab.Reason, PulledOriginPrefix+"cscli") {
		t.Fatalf("pulled ban in the kernel: %+v %v", ab, ok)
	}
	if _, ok := k[flooder]; !ok {
		t.Fatal("the local ban is missing beside the pulled one")
	}
	if sb, ok := r.stored(pulled); !ok || sb.Origin != PulledOriginPrefix+"cscli" {
		t.Fatalf("pulled ban stored as %+v %v", sb, ok)
	}
	// The local ban is pushed; the pulled one is not pushed back.
	if len(r.lapi.pushed) != 1 || r.lapi.pushed[0].Prefix != flooder || r.lapi.pushed[0].Scenario != "synban/syn-flood" {
		t.Fatalf("pushed %+v, want the local ban only", r.lapi.pushed)
	}
}

func TestMemoryFleetWithdraw(t *testing.T) {
	r := fleetRig(t)
	pulled := netip.MustParsePrefix("192.0.2.66/32")
	r.lapi.decisions = []crowdsec.Decision{decision(1, "192.0.2.66/32", time.Hour)}
	r.run(capQuiet)
	r.lapi.decisions = nil // deleted on the LAPI
	r.clock.Advance(time.Minute)
	out := r.run(capQuiet)
	if out.Fleet.Withdrawn != 1 {
		t.Fatalf("fleet report %+v, want 1 withdrawn", out.Fleet)
	}
	if _, ok := r.kernel()[pulled]; ok {
		t.Fatal("withdrawn ban still in the kernel")
	}
	if _, ok := r.stored(pulled); ok {
		t.Fatal("withdrawn ban still stored")
	}
}

// A pulled decision passes the guard like a local ban.
func TestMemoryFleetPulledBanGuarded(t *testing.T) {
	r := fleetRig(t)
	r.p.Allow.Addresses = []netip.Prefix{netip.MustParsePrefix("192.0.2.64/29")}
	r.lapi.decisions = []crowdsec.Decision{decision(1, "192.0.2.66/32", time.Hour)}
	out := r.run(capQuiet)
	if _, ok := r.kernel()[netip.MustParsePrefix("192.0.2.66/32")]; ok {
		t.Fatal("a pulled ban on the allow list was applied")
	}
	if len(out.Decision.Omitted) != 1 || !strings.Contains(out.Decision.Omitted[0].Why, "192.0.2.64/29") {
		t.Fatalf("omitted %+v, want the pulled ban naming the allow entry", out.Decision.Omitted)
	}
}

// A LAPI that is down never stops local protection.
func TestMemoryFleetDown(t *testing.T) {
	r := fleetRig(t)
	r.lapi.down = errors.New("connection refused")
	out := r.run(capSingle)
	if out.Fleet == nil || out.Fleet.Err == nil || !strings.Contains(out.Fleet.Err.Error(), "connection refused") {
		t.Fatalf("fleet report %+v, want the failure", out.Fleet)
	}
	if _, ok := r.kernel()[flooder]; !ok {
		t.Fatal("local ban not applied with the LAPI down")
	}
	if n := strings.Count(r.log.String(), "CrowdSec LAPI unavailable"); n != 1 {
		t.Errorf("the failure was logged %d times, want once", n)
	}
}

// Pulling defeats the generation shortcut: the fleet's decisions change
// without a local verdict.
func TestMemoryFleetPullReconcilesInFull(t *testing.T) {
	r := fleetRig(t)
	r.run(capQuiet)
	r.lapi.decisions = []crowdsec.Decision{decision(2, "192.0.2.67/32", time.Hour)}
	out := r.run(capQuiet)
	if out.Decision.Unchanged || out.Result.Added != 1 {
		t.Fatalf("second run: unchanged %v, %+v", out.Decision.Unchanged, out.Result)
	}
}

func TestMemoryFleetUnbanDeletesDecision(t *testing.T) {
	r := fleetRig(t)
	r.run(capSingle)
	n, _, err := r.engine("").Unban(context.Background(), r.p, []netip.Prefix{flooder})
	if err != nil || n != 1 {
		t.Fatalf("unban = %d, %v", n, err)
	}
	if len(r.lapi.deleted) != 1 || r.lapi.deleted[0] != flooder {
		t.Fatalf("deleted on the LAPI: %v, want %s", r.lapi.deleted, flooder)
	}
	if _, ok := r.kernel()[flooder]; ok {
		t.Fatal("still banned")
	}
}

// A bad secret stops the run before anything changes.
func TestMemoryFleetBadSecret(t *testing.T) {
	r := fleetRig(t)
	r.p.CrowdSec.PasswordFile = secretFile(t, "pw", 0o644)
	_, err := r.engine(capSingle).Run(context.Background(), r.p, r.clock.Now())
	var ie *InputError
	if !errors.As(err, &ie) || r.k.Present() || r.lapi.streams != 0 {
		t.Fatalf("run with a world-readable secret: %v, kernel present %v, streams %d", err, r.k.Present(), r.lapi.streams)
	}
	_ = memory.Name
}
