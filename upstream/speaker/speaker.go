// Package speaker is synban's embedded BGP speaker (GoBGP): it holds the
// sessions to the upstream neighbors and keeps the announcements equal to
// the hand-off file that runs write (upstream.WriteDesired). It is the only
// package that links GoBGP, gRPC and protobuf, and only the synban-speaker
// binary imports it: `synban upstream` checks the policy and hands over to
// that binary, so the commands run from cron never initialise GoBGP.
package speaker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/synban/synban/upstream"
)

// PollInterval is how often Run looks at the hand-off file; a change is
// reconciled within a second.
const PollInterval = 250 * time.Millisecond

// Speaker is the embedded GoBGP speaker: it holds the sessions to the
// neighbors and keeps its announcements equal to the checked desired set.
type Speaker struct {
	cfg upstream.Config
	log *slog.Logger
	now func() time.Time

	mu        sync.Mutex
	srv       *server.BgpServer
	announced map[string]*live
	changes   []time.Time // announcements, replacements and withdrawals in the last minute
	deferred  int
	refused   map[string]string // key → reason, last logged
}

type live struct {
	a         upstream.Announcement
	since     time.Time
	confirmed time.Time
}

// Result says what one Reconcile did.
type Result struct {
	Announced, Replaced, Withdrawn int
	// Expired counts desired entries past the dead-man limit, not sent.
	Expired int
	// Deferred counts changes held back by dampening; a later Reconcile
	// sends them.
	Deferred int
	Refused  []upstream.Refusal
}

// Changed reports whether anything was sent.
func (r Result) Changed() bool { return r.Announced+r.Replaced+r.Withdrawn > 0 }

// New checks cfg and returns a speaker that is not started yet.
func New(cfg upstream.Config, log *slog.Logger) (*Speaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("upstream config: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Speaker{cfg: cfg, log: log, now: time.Now, announced: map[string]*live{}, refused: map[string]string{}}, nil
}

func apiFamily(name string) (*api.Family, error) {
	switch name {
	case upstream.FamilyIPv4Unicast:
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, nil
	case upstream.FamilyIPv6Unicast:
		return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}, nil
	case upstream.FamilyIPv4FlowSpec:
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_FLOW_SPEC_UNICAST}, nil
	case upstream.FamilyIPv6FlowSpec:
		return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_FLOW_SPEC_UNICAST}, nil
	}
	return nil, fmt.Errorf("family %q: want ipv4-unicast, ipv6-unicast, ipv4-flowspec or ipv6-flowspec", name)
}

// Start starts the BGP server and adds the neighbors; sessions come up in
// the background.
func (s *Speaker) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("upstream speaker already started")
	}
	// GoBGP logs session events (peer up, down, notifications) through the
	// same logger.
	srv := server.NewBgpServer(server.LoggerOption(s.log.With("component", "gobgp"), new(slog.LevelVar)))
	go srv.Serve()
	port := s.cfg.ListenPort
	if port <= 0 {
		port = -1
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: s.cfg.LocalASN, RouterId: s.cfg.RouterID.String(), ListenPort: port,
	}}); err != nil {
		srv.Stop()
		return fmt.Errorf("start BGP (asn %d, router id %s, port %d): %w", s.cfg.LocalASN, s.cfg.RouterID, port, err)
	}
	for _, n := range s.cfg.Neighbors {
		p := &api.Peer{
			Conf: &api.PeerConf{NeighborAddress: n.Address.String(), PeerAsn: n.PeerASN, AuthPassword: n.Password},
			Transport: &api.Transport{
				RemotePort:  uint32(n.Port),
				PassiveMode: n.Passive,
			},
			Timers: &api.Timers{Config: &api.TimersConfig{ConnectRetry: 5, IdleHoldTimeAfterReset: 1}},
		}
		if n.LocalAddress.IsValid() {
			p.Transport.LocalAddress = n.LocalAddress.String()
		}
		for _, f := range n.Families {
			af, err := apiFamily(f)
			if err != nil {
				srv.Stop()
				return fmt.Errorf("neighbor %s: %w", n.Address, err)
			}
			p.AfiSafis = append(p.AfiSafis, &api.AfiSafi{Config: &api.AfiSafiConfig{Family: af, Enabled: true}})
		}
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: p}); err != nil {
			srv.Stop()
			return fmt.Errorf("add neighbor %s (asn %d): %w", n.Address, n.PeerASN, err)
		}
	}
	s.srv = srv
	s.log.Info("upstream speaker started", "asn", s.cfg.LocalASN, "router_id", s.cfg.RouterID, "neighbors", len(s.cfg.Neighbors))
	return nil
}

// Reconcile makes the announcements equal to desired: entries past the
// dead-man limit (MaxAge since their confirmation) are dropped, the rest go
// through Check, and the difference is sent by key: withdrawals at once,
// announcements and replacements within the dampening budget (the excess is
// deferred to a later call, and logged).
func (s *Speaker) Reconcile(desired []upstream.Entry) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return Result{}, errors.New("upstream speaker not started")
	}
	now := s.now()
	var res Result
	confirmed := map[string]time.Time{}
	var want []upstream.Announcement
	for _, e := range desired {
		if now.Sub(e.Confirmed) > s.cfg.MaxAge {
			res.Expired++
			continue
		}
		want = append(want, e.Announcement)
		k := e.Announcement.Key()
		if e.Confirmed.After(confirmed[k]) {
			confirmed[k] = e.Confirmed
		}
	}
	want = s.withValidationRoutes(want, confirmed)
	ok, refused := upstream.Check(s.cfg, want)
	res.Refused = refused
	s.logRefusals(refused)
	// Validation routes first: a validating router re-checks a rule when
	// its unicast route arrives, but a rule that finds the route already
	// there is applied at once.
	slices.SortStableFunc(ok, func(a, b upstream.Announcement) int {
		return cmp.Compare(kindOrder(a.Kind), kindOrder(b.Kind))
	})

	wanted := map[string]bool{}
	for _, a := range ok {
		wanted[a.Key()] = true
	}
	var errs []error
	// Withdrawals first and never deferred: taking a rule back is always
	// safe, and the dead-man must not wait.
	keys := make([]string, 0, len(s.announced))
	for k := range s.announced {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if wanted[k] {
			continue
		}
		l := s.announced[k]
		if err := s.withdraw(l.a); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(s.announced, k)
		res.Withdrawn++
		s.changes = append(s.changes, now)
		s.log.Info("upstream withdrawn", "route", l.a.CLI(), "age", now.Sub(l.since).Round(time.Millisecond))
	}
	// Dampening window.
	cut := 0
	for cut < len(s.changes) && now.Sub(s.changes[cut]) >= time.Minute {
		cut++
	}
	s.changes = s.changes[cut:]
	budget := s.cfg.MaxChangesPerMinute - len(s.changes)
	for _, a := range ok {
		k := a.Key()
		l, exists := s.announced[k]
		if exists && l.a.Equal(a) {
			l.confirmed = confirmed[k]
			continue
		}
		if budget <= 0 {
			res.Deferred++
			continue
		}
		p, err := toPath(a)
		if err == nil {
			_, err = s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{p}})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("announce %s: %w", a.CLI(), err))
			continue
		}
		budget--
		s.changes = append(s.changes, now)
		if exists {
			res.Replaced++
			s.log.Info("upstream replaced", "route", a.CLI(), "was", l.a.ThenText())
		} else {
			res.Announced++
			s.log.Info("upstream announced", "route", a.CLI())
		}
		s.announced[k] = &live{a: a, since: now, confirmed: confirmed[k]}
	}
	if res.Deferred != s.deferred {
		if res.Deferred > 0 {
			s.log.Warn("upstream changes deferred by dampening", "deferred", res.Deferred, "max_changes_per_minute", s.cfg.MaxChangesPerMinute)
		} else if s.deferred > 0 {
			s.log.Info("upstream deferred changes all sent")
		}
		s.deferred = res.Deferred
	}
	return res, errors.Join(errs...)
}

func kindOrder(k upstream.Kind) int {
	if k == upstream.Validation {
		return 0
	}
	return 1
}

// withValidationRoutes adds, when FlowSpecValidationRoutes is on, the
// validation route of each FlowSpec rule's destination, unless an RTBH
// route for the same address is wanted (it has the same NLRI, and is itself
// the unicast route a validating router looks for). The route is as
// important as the most important rule it validates, and is confirmed with
// the latest of them.
func (s *Speaker) withValidationRoutes(want []upstream.Announcement, confirmed map[string]time.Time) []upstream.Announcement {
	if !s.cfg.FlowSpecValidationRoutes {
		return want
	}
	rtbh := map[netip.Prefix]bool{}
	for _, a := range want {
		if a.Kind == upstream.RTBH {
			rtbh[a.Destination] = true
		}
	}
	idx := map[netip.Prefix]int{}
	out := want
	for _, a := range want {
		d := a.Destination
		if a.Kind != upstream.FlowSpec || rtbh[d] || !d.IsValid() || d.Bits() != d.Addr().BitLen() {
			continue
		}
		i, ok := idx[d]
		if !ok {
			i = len(out)
			idx[d] = i
			out = append(out, upstream.ValidationRoute(d))
		}
		out[i].Weight = max(out[i].Weight, a.Weight)
		vk := out[i].Key()
		if c := confirmed[a.Key()]; c.After(confirmed[vk]) {
			confirmed[vk] = c
		}
	}
	return out
}

func (s *Speaker) logRefusals(refused []upstream.Refusal) {
	now := map[string]string{}
	for _, r := range refused {
		k := r.Announcement.Key() + " " + r.Announcement.ThenText()
		now[k] = r.Reason
		if s.refused[k] != r.Reason {
			s.log.Warn("upstream announcement refused", "route", r.Announcement.CLI(), "reason", r.Reason)
		}
	}
	s.refused = now
}

func (s *Speaker) withdraw(a upstream.Announcement) error {
	p, err := toPath(a)
	if err != nil {
		return fmt.Errorf("withdraw %s: %w", a.CLI(), err)
	}
	if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{p}}); err != nil {
		return fmt.Errorf("withdraw %s: %w", a.CLI(), err)
	}
	return nil
}

// DrainTimeout bounds how long Stop waits for its withdrawals to be
// written to the neighbors before it closes the sessions.
const DrainTimeout = 5 * time.Second

// drainPoll is how often Stop reads the neighbors' message counters, and
// drainQuiet how many polls in a row a counter must hold still before the
// speaker's outgoing queue for that neighbor counts as empty.
const (
	drainPoll  = 10 * time.Millisecond
	drainQuiet = 3
)

// peerCounters is what Stop reads of one neighbor.
type peerCounters struct {
	established bool
	updates     uint64          // UPDATE messages written to the socket
	advertised  map[string]bool // families with routes in its adj-rib-out
}

func (s *Speaker) counters(ctx context.Context) (map[string]peerCounters, error) {
	m := map[string]peerCounters{}
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		c := peerCounters{
			established: p.GetState().GetSessionState() == api.PeerState_SESSION_STATE_ESTABLISHED,
			updates:     p.GetState().GetMessages().GetSent().GetUpdate(),
			advertised:  map[string]bool{},
		}
		for _, af := range p.GetAfiSafis() {
			if af.GetState().GetAdvertised() > 0 {
				c.advertised[familyName(af.GetConfig().GetFamily())] = true
			}
		}
		m[p.GetConf().GetNeighborAddress()] = c
	})
	return m, err
}

// settle polls the counters until every established neighbor's UPDATE
// count has held still for drainQuiet polls and reached want[addr] (when
// given), or the neighbor is no longer established, or ctx ends. It
// returns the last counters read.
func (s *Speaker) settle(ctx context.Context, want map[string]uint64) (map[string]peerCounters, error) {
	last, err := s.counters(ctx)
	if err != nil {
		return nil, err
	}
	still := map[string]int{}
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-t.C:
		}
		cur, err := s.counters(ctx)
		if err != nil {
			return last, err
		}
		done := true
		for addr, c := range cur {
			if !c.established {
				continue
			}
			if p, ok := last[addr]; ok && p.established && p.updates == c.updates {
				still[addr]++
			} else {
				still[addr] = 0
			}
			if still[addr] < drainQuiet || c.updates < want[addr] {
				done = false
			}
		}
		last = cur
		if done {
			return last, nil
		}
	}
}

// Stop withdraws every announcement, waits (at most DrainTimeout, or
// until ctx ends) until GoBGP has written the withdrawals to each
// established neighbor, and only then closes the sessions: GoBGP writes
// the Cease from another goroutine than its UPDATEs and drops what is
// still queued, so closing at once can put the Cease before a withdrawal.
//
// "Written" is read from the neighbor's sent-UPDATE counter, which GoBGP
// raises after each successful write to the socket: first the counters
// must hold still (anything queued before has gone), then they must rise by
// at least one UPDATE per family withdrawn on that session (GoBGP packs
// a family's withdrawals into one UPDATE, or more) and hold still again.
// The log says, per neighbor, whether the withdrawals were written, the
// session was down (its router drops the session's routes), or the wait
// timed out.
func (s *Speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, DrainTimeout)
	defer cancel()
	var errs []error
	// Let anything already queued (a recent announcement) go first, so
	// that the counter's rise below is the withdrawals'.
	before, err := s.settle(dctx, nil)
	if err != nil {
		errs = append(errs, fmt.Errorf("wait for queued updates: %w", err))
	}
	var paths []*apiutil.Path
	families := map[string]bool{}
	for _, l := range s.announced {
		p, err := toPath(l.a)
		if err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", l.a.CLI(), err))
			continue
		}
		paths = append(paths, p)
		families[l.a.Family()] = true
	}
	withdrawn := 0
	if len(paths) > 0 {
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: paths}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %d announcements: %w", len(paths), err))
		} else {
			withdrawn = len(paths)
		}
	}
	clear(s.announced)
	want := map[string]uint64{}
	for addr, c := range before {
		n := uint64(0)
		for f := range families {
			if c.advertised[f] {
				n++
			}
		}
		if c.established && n > 0 && withdrawn > 0 {
			want[addr] = c.updates + n
		}
	}
	after := before
	if len(want) > 0 {
		after, err = s.settle(dctx, want)
		if err != nil {
			errs = append(errs, fmt.Errorf("wait for withdrawals to be written: %w", err))
		}
	}
	addrs := make([]string, 0, len(want))
	for a := range want {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	written := 0
	for _, addr := range addrs {
		c := after[addr]
		switch {
		case !c.established:
			s.log.Warn("upstream neighbor went down before the withdrawals were written; it drops the session's routes itself", "neighbor", addr)
		case c.updates >= want[addr]:
			written++
			s.log.Info("upstream withdrawals written", "neighbor", addr, "updates", c.updates-before[addr].updates)
		default:
			s.log.Warn("upstream withdrawals not all written before the timeout; the Cease follows", "neighbor", addr,
				"updates", c.updates-before[addr].updates, "want_at_least", want[addr]-before[addr].updates)
		}
	}
	// StopBgp sends a Cease to every neighbor, which drops whatever a
	// lost withdrawal would have left.
	if err := s.srv.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		errs = append(errs, fmt.Errorf("stop BGP: %w", err))
	}
	s.srv = nil
	switch {
	case withdrawn == 0:
		s.log.Info("upstream speaker stopped: nothing was announced")
	case written == len(want):
		s.log.Info("upstream speaker stopped: every withdrawal written before the Cease", "withdrawn", withdrawn, "neighbors", written)
	default:
		s.log.Warn("upstream speaker stopped: some neighbors got the Cease without every withdrawal (they drop the session's routes unless they keep stale routes)",
			"withdrawn", withdrawn, "neighbors_written", written, "neighbors", len(want))
	}
	return errors.Join(errs...)
}

// Status returns the live announcements with their age, and each
// neighbor's session state (idle, connect, active, opensent, openconfirm,
// established).
func (s *Speaker) Status(ctx context.Context) (upstream.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st upstream.Status
	if s.srv == nil {
		return st, errors.New("upstream speaker not started")
	}
	now := s.now()
	for _, l := range s.announced {
		st.Announcements = append(st.Announcements, upstream.LiveAnnouncement{Announcement: l.a, Since: l.since, Confirmed: l.confirmed, Age: now.Sub(l.since)})
	}
	slices.SortFunc(st.Announcements, func(a, b upstream.LiveAnnouncement) int {
		return strings.Compare(a.Announcement.Key(), b.Announcement.Key())
	})
	st.Deferred = s.deferred
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		ns := upstream.NeighborStatus{Address: p.GetConf().GetNeighborAddress(), PeerASN: p.GetConf().GetPeerAsn(),
			State: sessionState(p.GetState().GetSessionState())}
		for _, af := range p.GetAfiSafis() {
			name := familyName(af.GetConfig().GetFamily())
			ns.Families = append(ns.Families, name)
			if n := af.GetState().GetAdvertised(); n > 0 {
				if ns.Advertised == nil {
					ns.Advertised = map[string]uint64{}
				}
				ns.Advertised[name] = n
			}
		}
		st.Neighbors = append(st.Neighbors, ns)
	})
	if err != nil {
		return st, fmt.Errorf("list neighbors: %w", err)
	}
	slices.SortFunc(st.Neighbors, func(a, b upstream.NeighborStatus) int { return strings.Compare(a.Address, b.Address) })
	s.perNeighbor(st.Announcements, st.Neighbors)
	return st, nil
}

// perNeighbor fills each announcement's Neighbors from the neighbors'
// adj-rib-out and adj-rib-in. A table that cannot be read leaves Sent and
// Received false.
func (s *Speaker) perNeighbor(anns []upstream.LiveAnnouncement, neighbors []upstream.NeighborStatus) {
	type tkey struct{ addr, family string }
	out, in := map[tkey]map[string]bool{}, map[tkey]map[string]bool{}
	read := func(tt api.TableType, addr, family string) map[string]bool {
		keys := map[string]bool{}
		af, err := apiFamily(family)
		if err != nil {
			return keys
		}
		_ = s.srv.ListPath(apiutil.ListPathRequest{TableType: tt, Name: addr, Family: bgp.NewFamily(uint16(af.Afi), uint8(af.Safi))},
			func(n bgp.NLRI, _ []*apiutil.Path) { keys[n.String()] = true })
		return keys
	}
	for i := range anns {
		a := anns[i].Announcement
		n, err := toNLRI(a)
		if err != nil {
			continue
		}
		nk, f := n.String(), a.Family()
		anns[i].Neighbors = []upstream.AnnouncementNeighbor{}
		for _, nb := range neighbors {
			if !slices.Contains(nb.Families, f) {
				continue
			}
			up := nb.State == "established"
			an := upstream.AnnouncementNeighbor{Address: nb.Address, SessionUp: up}
			if up {
				k := tkey{nb.Address, f}
				if out[k] == nil {
					out[k], in[k] = read(api.TableType_TABLE_TYPE_ADJ_OUT, nb.Address, f), read(api.TableType_TABLE_TYPE_ADJ_IN, nb.Address, f)
				}
				an.Sent, an.Received = out[k][nk], in[k][nk]
			}
			anns[i].Neighbors = append(anns[i].Neighbors, an)
		}
	}
}

func sessionState(s api.PeerState_SessionState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "SESSION_STATE_"))
}

func familyName(f *api.Family) string {
	for _, n := range []string{upstream.FamilyIPv4Unicast, upstream.FamilyIPv6Unicast, upstream.FamilyIPv4FlowSpec, upstream.FamilyIPv6FlowSpec} {
		af, _ := apiFamily(n)
		if af.Afi == f.GetAfi() && af.Safi == f.GetSafi() {
			return n
		}
	}
	return f.String()
}

func (s *Speaker) publishStatus(ctx context.Context, dir string) error {
	st, err := s.Status(ctx)
	if err != nil {
		return err
	}
	return upstream.WriteStatus(dir, upstream.StatusReport{Written: s.now(), PID: os.Getpid(), Status: st})
}

// Run reconciles against dir/DesiredFile until ctx ends, then stops the
// speaker (withdrawing everything) and removes its status file. It polls the file every PollInterval
// (re-reading it when its size, modification time or inode changes) and
// reconciles on every poll, so a change, a dampened change coming due and a
// dead-man expiry are all sent within a second. A file that cannot be read
// keeps the last good content, whose confirmations then age out.
func (s *Speaker) Run(ctx context.Context, dir string) error {
	path := filepath.Join(dir, upstream.DesiredFile)
	var (
		last    os.FileInfo
		desired []upstream.Entry
		readErr string
	)
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	var published time.Time
	for {
		fi, err := os.Lstat(path)
		switch {
		case err == nil && (last == nil || !os.SameFile(fi, last) || fi.Size() != last.Size() || !fi.ModTime().Equal(last.ModTime())):
			d, err := upstream.ReadDesired(dir)
			if err != nil {
				if err.Error() != readErr {
					s.log.Error("upstream hand-off file unreadable; keeping the last good one", "error", err)
					readErr = err.Error()
				}
				break
			}
			last, readErr, desired = fi, "", d.Entries
		case errors.Is(err, os.ErrNotExist):
			last, desired = nil, nil
		case err != nil && err.Error() != readErr:
			s.log.Error("upstream hand-off file", "error", err)
			readErr = err.Error()
		}
		res, err := s.Reconcile(desired)
		if err != nil {
			s.log.Error("upstream reconcile", "error", err)
		}
		if res.Changed() || time.Since(published) >= time.Second {
			if err := s.publishStatus(ctx, dir); err != nil && ctx.Err() == nil {
				s.log.Error("upstream status file", "error", err)
			}
			published = time.Now()
		}
		select {
		case <-ctx.Done():
			stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := s.Stop(stopCtx)
			if rmErr := os.Remove(filepath.Join(dir, upstream.StatusFile)); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("remove status file: %w", rmErr))
			}
			return err
		case <-tick.C:
		}
	}
}
