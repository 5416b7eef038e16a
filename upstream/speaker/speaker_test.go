package speaker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/synban/synban/internal/netnstest"

	"github.com/synban/synban/upstream"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

var allFamilies = []string{upstream.FamilyIPv4Unicast, upstream.FamilyIPv6Unicast, upstream.FamilyIPv4FlowSpec, upstream.FamilyIPv6FlowSpec}

// receiver is a plain GoBGP v4 server standing in for the upstream router:
// passive, on a high port of 127.0.0.1.
type receiver struct {
	t    *testing.T
	srv  *server.BgpServer
	port int
}

const receiverASN, speakerASN = 64500, 64512

func newReceiver(t *testing.T) *receiver { return newReceiverFamilies(t, allFamilies) }

// newReceiverFamilies is a receiver negotiating only families.
func newReceiverFamilies(t *testing.T, families []string) *receiver {
	t.Helper()
	return newReceiverPeer(t, families, nil)
}

// newReceiverPeer is newReceiverFamilies with the receiver's neighbor
// (the speaker) changed by edit before it is added.
func newReceiverPeer(t *testing.T, families []string, edit func(*api.Peer)) *receiver {
	t.Helper()
	port := freePort(t)
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelWarn)
	srv := server.NewBgpServer(server.LoggerOption(testLogger(t).With("side", "receiver"), lv))
	go srv.Serve()
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: receiverASN, RouterId: "10.255.0.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.StopBgp(context.Background(), &api.StopBgpRequest{}) })
	p := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: speakerASN},
		Transport: &api.Transport{PassiveMode: true},
	}
	for _, f := range families {
		af, _ := apiFamily(f)
		p.AfiSafis = append(p.AfiSafis, &api.AfiSafi{Config: &api.AfiSafiConfig{Family: af, Enabled: true}})
	}
	if edit != nil {
		edit(p)
	}
	if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: p}); err != nil {
		t.Fatal(err)
	}
	return &receiver{t: t, srv: srv, port: port}
}

// route is what the receiver holds for one NLRI.
type route struct {
	nlri        string // hex of the NLRI's wire form
	text        string
	rate        *float32 // FlowSpec traffic-rate, bytes/s (0 = discard)
	communities []upstream.Community
	nextHop     netip.Addr
}

func (r *receiver) routes(fam bgp.Family) map[string]route {
	r.t.Helper()
	out := map[string]route{}
	err := r.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam}, func(n bgp.NLRI, paths []*apiutil.Path) {
		for _, p := range paths {
			if p.Withdrawal {
				continue
			}
			b, err := n.Serialize()
			if err != nil {
				r.t.Errorf("serialize received nlri: %v", err)
				return
			}
			rt := route{nlri: hex.EncodeToString(b), text: n.String()}
			for _, at := range p.Attrs {
				switch v := at.(type) {
				case *bgp.PathAttributeExtendedCommunities:
					for _, ec := range v.Value {
						if tr, ok := ec.(*bgp.TrafficRateExtended); ok {
							rate := tr.Rate
							rt.rate = &rate
						}
					}
				case *bgp.PathAttributeCommunities:
					for _, c := range v.Value {
						rt.communities = append(rt.communities, upstream.Community(c))
					}
				case *bgp.PathAttributeNextHop:
					rt.nextHop = v.Value
				case *bgp.PathAttributeMpReachNLRI:
					if v.Nexthop.IsValid() && !v.Nexthop.IsUnspecified() {
						rt.nextHop = v.Nexthop
					}
				}
			}
			out[rt.nlri] = rt
		}
	})
	if err != nil {
		r.t.Fatalf("receiver ListPath %s: %v", fam, err)
	}
	return out
}

// all is every route the receiver holds, over the four families.
func (r *receiver) all() map[string]route {
	out := map[string]route{}
	for _, f := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC, bgp.RF_FS_IPv4_UC, bgp.RF_FS_IPv6_UC} {
		for k, v := range r.routes(f) {
			out[k] = v
		}
	}
	return out
}

func nlriHex(t *testing.T, a upstream.Announcement) string {
	t.Helper()
	n, err := toNLRI(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// holdsExactly reports (as an error) whether the receiver holds exactly
// want: the same NLRIs, the same traffic rates, communities and next hops.
func (r *receiver) holdsExactly(want []upstream.Announcement) error {
	got := r.all()
	if len(got) != len(want) {
		var texts []string
		for _, g := range got {
			texts = append(texts, g.text)
		}
		return fmt.Errorf("receiver holds %d routes %q, want %d", len(got), texts, len(want))
	}
	for _, a := range want {
		g, ok := got[nlriHex(r.t, a)]
		if !ok {
			return fmt.Errorf("receiver lacks %s", a.CLI())
		}
		switch a.Kind {
		case upstream.FlowSpec:
			wantRate := float32(0)
			if a.Action == upstream.RateLimit {
				wantRate = float32(a.RateBytes)
			}
			if g.rate == nil || *g.rate != wantRate {
				return fmt.Errorf("%s: traffic-rate %v, want %v", a.CLI(), g.rate, wantRate)
			}
		case upstream.RTBH:
			if !slices.Equal(g.communities, a.Communities) {
				return fmt.Errorf("%s: communities %v, want %v", a.CLI(), g.communities, a.Communities)
			}
			if g.nextHop != a.NextHop {
				return fmt.Errorf("%s: next hop %s, want %s", a.CLI(), g.nextHop, a.NextHop)
			}
		case upstream.Validation:
			if !slices.Equal(g.communities, []upstream.Community{upstream.NoExport, upstream.NoAdvertise}) {
				return fmt.Errorf("%s: communities %v, want NO_EXPORT and NO_ADVERTISE", a.CLI(), g.communities)
			}
			if g.nextHop.IsUnspecified() {
				return fmt.Errorf("%s: next hop %s, want the session's address (next hop self)", a.CLI(), g.nextHop)
			}
		}
	}
	return nil
}

func (r *receiver) waitFor(timeout time.Duration, want []upstream.Announcement) {
	r.t.Helper()
	var last error
	netnstest.Eventually(r.t, timeout, func() bool { last = r.holdsExactly(want); return last == nil }, "receiver RIB: %v", &lastErr{&last})
}

// lastErr prints the latest error when Eventually gives up.
type lastErr struct{ e *error }

func (l *lastErr) String() string {
	if *l.e == nil {
		return "ok"
	}
	return (*l.e).Error()
}

func speakerConfig(port int) upstream.Config {
	cfg := testConfig()
	cfg.LocalASN = speakerASN
	cfg.Neighbors = []upstream.Neighbor{{Address: addr("127.0.0.1"), PeerASN: receiverASN, Port: uint16(port), Families: allFamilies}}
	cfg.Protected = nil
	cfg.MaxRules = 10
	cfg.MaxChangesPerMinute = 100
	return cfg
}

func startSpeaker(t *testing.T, cfg upstream.Config) *Speaker {
	t.Helper()
	s, err := New(cfg, testLogger(t).With("side", "speaker"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

func waitEstablished(t *testing.T, s *Speaker) {
	t.Helper()
	netnstest.Eventually(t, 30*time.Second, func() bool {
		st, err := s.Status(context.Background())
		return err == nil && len(st.Neighbors) == 1 && st.Neighbors[0].State == "established"
	}, "session to the receiver not established")
}

// mitigation is what the in-process tests announce: FlowSpec discard per
// source, a spoofed-flood rate limit, IPv6 FlowSpec, and RTBH in both
// families with BLACKHOLE and NO_EXPORT.
func mitigation() []upstream.Announcement {
	return []upstream.Announcement{
		{Kind: upstream.FlowSpec, Destination: pfx("203.0.113.10/32"), Source: pfx("198.51.100.7/32"), Ports: []uint16{80}, Action: upstream.Discard},
		{Kind: upstream.FlowSpec, Destination: pfx("203.0.113.11/32"), Ports: []uint16{443}, Action: upstream.RateLimit, RateBytes: 125000},
		{Kind: upstream.FlowSpec, Destination: pfx("2001:db8:10::10/128"), Source: pfx("2001:db8:bad::/64"), Ports: []uint16{80, 443}, Action: upstream.Discard},
		{Kind: upstream.RTBH, Destination: pfx("203.0.113.12/32"), Communities: []upstream.Community{upstream.Blackhole, upstream.NoExport}, NextHop: addr("192.0.2.66")},
		{Kind: upstream.RTBH, Destination: pfx("2001:db8:10::12/128"), Communities: []upstream.Community{upstream.Blackhole, upstream.NoExport}, NextHop: addr("2001:db8::66")},
	}
}

// TestSpeakerTwoSpeakers: our speaker and a GoBGP receiver on 127.0.0.1.
// The receiver's RIB holds exactly the FlowSpec components and actions and
// the RTBH communities and next hops decided; a replacement changes the
// action in place; Reconcile(empty) withdraws everything; Stop withdraws
// what is left.
func TestSpeakerTwoSpeakers(t *testing.T) {
	rcv := newReceiver(t)
	s := startSpeaker(t, speakerConfig(rcv.port))
	waitEstablished(t, s)

	want := mitigation()
	began := time.Now()
	res, err := s.Reconcile(upstream.Confirm(time.Now(), want, upstream.DecideState{}).Entries)
	if err != nil || res.Announced != len(want) || len(res.Refused) != 0 {
		t.Fatalf("reconcile: %+v %v", res, err)
	}
	rcv.waitFor(5*time.Second, want)
	t.Logf("receiver holds all %d routes %s after Reconcile", len(want), time.Since(began).Round(time.Millisecond))

	// Same match, another action: replaced, not added.
	want[0].Action, want[0].RateBytes = upstream.RateLimit, 5000
	res, err = s.Reconcile(upstream.Confirm(time.Now(), want, upstream.DecideState{}).Entries)
	if err != nil || res.Replaced != 1 || res.Announced != 0 {
		t.Fatalf("replace: %+v %v", res, err)
	}
	rcv.waitFor(5*time.Second, want)

	st, err := s.Status(context.Background())
	if err != nil || len(st.Announcements) != len(want) || st.Neighbors[0].State != "established" || len(st.Neighbors[0].Families) != 4 {
		t.Fatalf("status %+v %v", st, err)
	}
	wantAdv := map[string]uint64{upstream.FamilyIPv4FlowSpec: 2, upstream.FamilyIPv6FlowSpec: 1, upstream.FamilyIPv4Unicast: 1, upstream.FamilyIPv6Unicast: 1}
	if adv := st.Neighbors[0].Advertised; !maps.Equal(adv, wantAdv) {
		t.Fatalf("advertised per family %v, want %v", adv, wantAdv)
	}
	for _, l := range st.Announcements {
		if len(l.Neighbors) != 1 || l.Neighbors[0] != (upstream.AnnouncementNeighbor{Address: "127.0.0.1", SessionUp: true, Sent: true}) {
			t.Errorf("%s on the neighbors: %+v, want sent on the established session", l.Announcement.CLI(), l.Neighbors)
		}
	}

	res, err = s.Reconcile(nil)
	if err != nil || res.Withdrawn != len(want) {
		t.Fatalf("withdraw all: %+v %v", res, err)
	}
	rcv.waitFor(5*time.Second, nil)

	if _, err := s.Reconcile(upstream.Confirm(time.Now(), want, upstream.DecideState{}).Entries); err != nil {
		t.Fatal(err)
	}
	rcv.waitFor(5*time.Second, want)
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	rcv.waitFor(5*time.Second, nil)
}

// TestSpeakerRunDeadMan: Run picks up the hand-off file within a second and
// withdraws each announcement once no run has confirmed it for MaxAge,
// while a re-confirmed one stays.
func TestSpeakerRunDeadMan(t *testing.T) {
	rcv := newReceiver(t)
	cfg := speakerConfig(rcv.port)
	cfg.MaxAge = 3 * time.Second
	s := startSpeaker(t, cfg)
	waitEstablished(t, s)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, dir) }()

	want := mitigation()[:3]
	wrote := time.Now()
	if err := upstream.WriteDesired(dir, upstream.Confirm(wrote, want, upstream.DecideState{})); err != nil {
		t.Fatal(err)
	}
	rcv.waitFor(time.Second+500*time.Millisecond, want)
	t.Logf("hand-off to receiver RIB: %s", time.Since(wrote).Round(time.Millisecond))
	var rep upstream.StatusReport
	netnstest.Eventually(t, 3*time.Second, func() bool {
		var err error
		rep, err = upstream.ReadStatus(dir)
		return err == nil && len(rep.Announcements) == len(want)
	}, "status file never showed the %d announcements: %+v", len(want), &rep)
	if rep.PID != os.Getpid() || len(rep.Neighbors) != 1 || rep.Neighbors[0].State != "established" {
		t.Fatalf("status file: %+v", rep)
	}

	// A run keeps confirming the first; the others age out.
	keep := want[:1]
	stopConfirm := make(chan struct{})
	confirmed := make(chan struct{})
	go func() {
		defer close(confirmed)
		tk := time.NewTicker(500 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopConfirm:
				return
			case <-tk.C:
				d := upstream.Confirm(time.Now(), keep, upstream.DecideState{})
				d.Entries = append(d.Entries, upstream.Entry{Announcement: want[1], Confirmed: wrote}, upstream.Entry{Announcement: want[2], Confirmed: wrote})
				if err := upstream.WriteDesired(dir, d); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	rcv.waitFor(cfg.MaxAge+2*time.Second, keep)
	if age := time.Since(wrote); age < cfg.MaxAge {
		t.Fatalf("withdrawn after %s, before max age %s", age, cfg.MaxAge)
	}
	close(stopConfirm)
	<-confirmed
	// Nobody confirms any more: the dead-man takes the last one back too.
	rcv.waitFor(cfg.MaxAge+2*time.Second, nil)

	// A clean stop of Run withdraws everything.
	if err := upstream.WriteDesired(dir, upstream.Confirm(time.Now(), want, upstream.DecideState{})); err != nil {
		t.Fatal(err)
	}
	rcv.waitFor(2*time.Second, want)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	rcv.waitFor(5*time.Second, nil)
	if _, err := upstream.ReadStatus(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("status file after a clean stop: %v", err)
	}
}

// TestSpeakerDampening: over MaxChangesPerMinute, the excess is deferred
// (reported, not dropped) and sent once the minute has passed; withdrawals
// are never deferred. The clock is the speaker's own, moved by the test.
func TestSpeakerDampening(t *testing.T) {
	cfg := speakerConfig(freePort(t)) // nobody listens: announcements only
	cfg.MaxChangesPerMinute = 2
	s := startSpeaker(t, cfg)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	want := mitigation()[:4]
	res, err := s.Reconcile(upstream.Confirm(now, want, upstream.DecideState{}).Entries)
	if err != nil || res.Announced != 2 || res.Deferred != 2 {
		t.Fatalf("first: %+v %v", res, err)
	}
	now = now.Add(30 * time.Second)
	res, err = s.Reconcile(upstream.Confirm(now, want, upstream.DecideState{}).Entries)
	if err != nil || res.Announced != 0 || res.Deferred != 2 {
		t.Fatalf("within the minute: %+v %v", res, err)
	}
	st, _ := s.Status(context.Background())
	if st.Deferred != 2 || len(st.Announcements) != 2 {
		t.Fatalf("status %+v", st)
	}
	// Withdrawing is not held back even with the budget spent.
	res, err = s.Reconcile(upstream.Confirm(now, want[2:], upstream.DecideState{}).Entries)
	if err != nil || res.Withdrawn != 2 || res.Announced != 0 || res.Deferred != 2 {
		t.Fatalf("withdraw over budget: %+v %v", res, err)
	}
	now = now.Add(61 * time.Second)
	res, err = s.Reconcile(upstream.Confirm(now, want[2:], upstream.DecideState{}).Entries)
	if err != nil || res.Announced != 2 || res.Deferred != 0 {
		t.Fatalf("after the minute: %+v %v", res, err)
	}
	if st, _ := s.Status(context.Background()); len(st.Announcements) != 2 {
		t.Fatalf("status holds %d announcements, want 2: %+v", len(st.Announcements), st)
	}
}

// TestSpeakerRefusesUnsafe: unsafe announcements in the desired set never
// reach the receiver, and the safe ones beside them do.
func TestSpeakerRefusesUnsafe(t *testing.T) {
	rcv := newReceiver(t)
	cfg := speakerConfig(rcv.port)
	cfg.Protected = []netip.Prefix{pfx("198.51.100.200/32")}
	s := startSpeaker(t, cfg)
	waitEstablished(t, s)
	safe := mitigation()[:1]
	unsafe := []upstream.Announcement{
		fs("192.0.2.10/32", "198.51.100.7/32"),     // outside own_prefixes
		rtbh("203.0.113.0/24", "192.0.2.66"),       // RTBH of a /24
		fs("203.0.113.10/32", "0.0.0.0/0"),         // a /0 source
		fs("203.0.113.10/32", "198.51.100.200/32"), // protected source
	}
	res, err := s.Reconcile(upstream.Confirm(time.Now(), append(slices.Clone(safe), unsafe...), upstream.DecideState{}).Entries)
	if err != nil || res.Announced != 1 || len(res.Refused) != len(unsafe) {
		t.Fatalf("%+v %v", res, err)
	}
	rcv.waitFor(5*time.Second, safe)
	for _, r := range res.Refused {
		if !strings.Contains(r.String(), "refused: ") {
			t.Errorf("refusal text %q", r)
		}
	}
}

// TestSpeakerFlowSpecNotTaken: a neighbor that does not negotiate FlowSpec
// gets only the RTBH route, and Status shows nothing advertised in the
// FlowSpec family: the signal for Decide's FlowSpecRefused.
func TestSpeakerFlowSpecNotTaken(t *testing.T) {
	rcv := newReceiverFamilies(t, []string{upstream.FamilyIPv4Unicast})
	s := startSpeaker(t, speakerConfig(rcv.port))
	waitEstablished(t, s)
	fsRule := mitigation()[0]
	black := mitigation()[3]
	if _, err := s.Reconcile(upstream.Confirm(time.Now(), []upstream.Announcement{fsRule, black}, upstream.DecideState{}).Entries); err != nil {
		t.Fatal(err)
	}
	rcv.waitFor(5*time.Second, []upstream.Announcement{black})
	netnstest.Eventually(t, 5*time.Second, func() bool {
		st, err := s.Status(context.Background())
		return err == nil && len(st.Announcements) == 2 &&
			maps.Equal(st.Neighbors[0].Advertised, map[string]uint64{upstream.FamilyIPv4Unicast: 1})
	}, "status does not show the FlowSpec rule unadvertised")
}

// TestSpeakerValidationRoutes: with FlowSpecValidationRoutes, each FlowSpec
// rule's destination goes out as a unicast route with next hop self,
// NO_EXPORT and NO_ADVERTISE, once per destination; an RTBH of the same
// address takes its place and gives it back; withdrawing the rules
// withdraws it.
func TestSpeakerValidationRoutes(t *testing.T) {
	fams := []string{upstream.FamilyIPv4FlowSpec, upstream.FamilyIPv4Unicast}
	rcv := newReceiverFamilies(t, fams)
	cfg := speakerConfig(rcv.port)
	cfg.Neighbors[0].Families = fams
	cfg.FlowSpecValidationRoutes = true
	s := startSpeaker(t, cfg)
	waitEstablished(t, s)

	v := pfx("203.0.113.10/32")
	rules := []upstream.Announcement{
		{Kind: upstream.FlowSpec, Destination: v, Source: pfx("198.51.100.7/32"), Ports: []uint16{80}, Action: upstream.Discard},
		{Kind: upstream.FlowSpec, Destination: v, Source: pfx("198.51.100.8/32"), Ports: []uint16{80}, Action: upstream.Discard},
	}
	res, err := s.Reconcile(upstream.Confirm(time.Now(), rules, upstream.DecideState{}).Entries)
	if err != nil || res.Announced != 3 {
		t.Fatalf("reconcile: %+v %v", res, err)
	}
	rcv.waitFor(5*time.Second, append(slices.Clone(rules), upstream.ValidationRoute(v)))

	rtbh := upstream.Announcement{Kind: upstream.RTBH, Destination: v, Communities: []upstream.Community{upstream.Blackhole, upstream.NoExport}, NextHop: addr("192.0.2.66")}
	if _, err := s.Reconcile(upstream.Confirm(time.Now(), append(slices.Clone(rules), rtbh), upstream.DecideState{}).Entries); err != nil {
		t.Fatal(err)
	}
	rcv.waitFor(5*time.Second, append(slices.Clone(rules), rtbh))

	if _, err := s.Reconcile(upstream.Confirm(time.Now(), rules, upstream.DecideState{}).Entries); err != nil {
		t.Fatal(err)
	}
	rcv.waitFor(5*time.Second, append(slices.Clone(rules), upstream.ValidationRoute(v)))

	res, err = s.Reconcile(nil)
	if err != nil || res.Withdrawn != 3 {
		t.Fatalf("withdraw: %+v %v", res, err)
	}
	rcv.waitFor(5*time.Second, nil)
}

// TestConfigValidationRoutes: FlowSpecValidationRoutes needs each FlowSpec
// family with its unicast family, on a session of that IP version.
func TestConfigValidationRoutes(t *testing.T) {
	for _, c := range []struct {
		addr string
		fams []string
		want string
	}{
		{"203.0.113.1", []string{upstream.FamilyIPv4FlowSpec, upstream.FamilyIPv4Unicast}, ""},
		{"2001:db8::1", []string{upstream.FamilyIPv6FlowSpec, upstream.FamilyIPv6Unicast}, ""},
		{"203.0.113.1", []string{upstream.FamilyIPv4FlowSpec}, "needs ipv4-unicast with ipv4-flowspec"},
		{"203.0.113.1", []string{upstream.FamilyIPv4FlowSpec, upstream.FamilyIPv4Unicast, upstream.FamilyIPv6Unicast}, "ipv6-unicast without ipv6-flowspec"},
		{"203.0.113.1", []string{upstream.FamilyIPv6FlowSpec, upstream.FamilyIPv6Unicast}, "needs an IPv6 session"},
		{"2001:db8::1", []string{upstream.FamilyIPv4FlowSpec, upstream.FamilyIPv4Unicast}, "needs an IPv4 session"},
		{"203.0.113.1", []string{upstream.FamilyIPv4Unicast}, "no neighbor carries"},
	} {
		cfg := testConfig()
		cfg.FlowSpecValidationRoutes = true
		cfg.Neighbors = []upstream.Neighbor{{Address: addr(c.addr), PeerASN: 64500, Families: c.fams}}
		err := cfg.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s %v: %v, want %q", c.addr, c.fams, err, c.want)
		}
		cfg.FlowSpecValidationRoutes = false
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s %v without validation routes: %v", c.addr, c.fams, err)
		}
	}
}

// TestCheckValidationRoute: a validation route passes Check only with the
// option on, for an exact host address inside own_prefixes, as
// ValidationRoute builds it.
func TestCheckValidationRoute(t *testing.T) {
	cfg := testConfig()
	cfg.FlowSpecValidationRoutes = true
	good := upstream.ValidationRoute(pfx("203.0.113.10/32"))
	if ok, refused := upstream.Check(cfg, []upstream.Announcement{good}); len(ok) != 1 || len(refused) != 0 {
		t.Fatalf("refused %v", refused)
	}
	other := good
	other.Communities = []upstream.Community{upstream.NoExport}
	for _, c := range []struct {
		a    upstream.Announcement
		off  bool
		want string
	}{
		{good, true, "flowspec_validation_routes off"},
		{upstream.ValidationRoute(pfx("203.0.113.0/24")), false, "only an exact /32"},
		{upstream.ValidationRoute(pfx("198.51.100.10/32")), false, "outside own_prefixes"},
		{other, false, "NO_EXPORT and NO_ADVERTISE"},
	} {
		cfg.FlowSpecValidationRoutes = !c.off
		_, refused := upstream.Check(cfg, []upstream.Announcement{c.a})
		if len(refused) != 1 || !strings.Contains(refused[0].Reason, c.want) {
			t.Errorf("%s: refused %v, want %q", c.a.CLI(), refused, c.want)
		}
	}
}

// apiFamily is the GoBGP API's name of a configured family, for the
// receiver.
func apiFamily(name string) (*api.Family, error) {
	f, ok := familyOf(name)
	if !ok {
		return nil, fmt.Errorf("family %q", name)
	}
	return &api.Family{Afi: api.Family_Afi(f.Afi()), Safi: api.Family_Safi(f.Safi())}, nil
}

// TestSpeakerMD5: with a TCP MD5 password (RFC 2385) on both sides the
// session comes up and carries the rules, the speaker connecting to a
// passive receiver and, with the roles turned, the receiver connecting to
// the speaker's listener (an IPv6 socket, keyed for the IPv4-mapped
// address). The kernel drops unsigned segments, so a key the speaker did not
// set keeps the session down.
func TestSpeakerMD5(t *testing.T) {
	const pw = "s3cret-md5"
	rules := mitigation()[:2]
	t.Run("active", func(t *testing.T) {
		rcv := newReceiverPeer(t, allFamilies, func(p *api.Peer) { p.Conf.AuthPassword = pw })
		cfg := speakerConfig(rcv.port)
		cfg.Neighbors[0].Password = pw
		announceTo(t, rcv, cfg, rules)
	})
	t.Run("passive", func(t *testing.T) {
		listen := freePort(t)
		rcv := newReceiverPeer(t, allFamilies, func(p *api.Peer) {
			p.Conf.AuthPassword = pw
			p.Transport.PassiveMode = false
			p.Transport.RemotePort = uint32(listen)
			p.Timers = &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1}}
		})
		cfg := speakerConfig(rcv.port)
		cfg.ListenPort = int32(listen)
		cfg.Neighbors[0].Password = pw
		cfg.Neighbors[0].Passive = true
		announceTo(t, rcv, cfg, rules)
	})
}

// announceTo starts a speaker with cfg, waits for its session to rcv and
// checks that rcv gets rules.
func announceTo(t *testing.T, rcv *receiver, cfg upstream.Config, rules []upstream.Announcement) {
	t.Helper()
	s := startSpeaker(t, cfg)
	waitEstablished(t, s)
	if _, err := s.Reconcile(upstream.Confirm(time.Now(), rules, upstream.DecideState{}).Entries); err != nil {
		t.Fatal(err)
	}
	rcv.waitFor(10*time.Second, rules)
}

// TestSpeakerReceived: a route the neighbor sends back (as a reflector
// would) is reported as received for that announcement only, and no
// longer once the neighbor withdraws it.
func TestSpeakerReceived(t *testing.T) {
	rcv := newReceiver(t)
	s := startSpeaker(t, speakerConfig(rcv.port))
	waitEstablished(t, s)
	want := mitigation()[:2]
	if _, err := s.Reconcile(upstream.Confirm(time.Now(), want, upstream.DecideState{}).Entries); err != nil {
		t.Fatal(err)
	}
	rcv.waitFor(5*time.Second, want)
	n, err := toNLRI(want[0])
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := pathAttrs(want[0], peer{localASN: receiverASN, as4: true})
	if err != nil {
		t.Fatal(err)
	}
	back := &apiutil.Path{Family: bgpFamily(want[0]), Nlri: n, Attrs: attrs}
	if _, err := rcv.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{back}}); err != nil {
		t.Fatal(err)
	}
	received := func() map[string]bool {
		st, err := s.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, l := range st.Announcements {
			m[l.Announcement.Key()] = len(l.Neighbors) == 1 && l.Neighbors[0].Received
		}
		return m
	}
	var got map[string]bool
	netnstest.Eventually(t, 10*time.Second, func() bool {
		got = received()
		return got[want[0].Key()]
	}, "the route sent back never showed as received: %v", &got)
	if got[want[1].Key()] {
		t.Errorf("%s shows as received, but the neighbor never sent it", want[1].CLI())
	}
	if err := rcv.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{back}}); err != nil {
		t.Fatal(err)
	}
	netnstest.Eventually(t, 10*time.Second, func() bool {
		got = received()
		return !got[want[0].Key()]
	}, "still received after the neighbor withdrew it: %v", &got)
}

// TestSpeakerIBGP: over an internal session (the same AS on both sides)
// the receiver takes every kind of rule: the UPDATEs carry an empty
// AS_PATH and LOCAL_PREF, which GoBGP requires of an iBGP neighbor.
func TestSpeakerIBGP(t *testing.T) {
	rcv := newReceiverPeer(t, allFamilies, func(p *api.Peer) { p.Conf.PeerAsn = receiverASN })
	cfg := speakerConfig(rcv.port)
	cfg.LocalASN = receiverASN
	cfg.Neighbors[0].PeerASN = receiverASN
	announceTo(t, rcv, cfg, mitigation())
}
