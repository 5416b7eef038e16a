// Package speaker is synban's BGP speaker: it holds the sessions to the
// upstream neighbors (session.go, on GoBGP's message codec) and keeps the
// announcements equal to the hand-off file that runs write
// (upstream.WriteDesired). It is the only package that links GoBGP, and
// only the synban-speaker binary imports it: `synban upstream` checks the
// policy and hands over to that binary, so the commands run from cron never
// initialise it.
package speaker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/synban/synban/upstream"
)

// PollInterval is how often Run looks at the hand-off file; a change is
// reconciled within a second.
const PollInterval = 250 * time.Millisecond

// Speaker holds the sessions to the neighbors and keeps its announcements
// equal to the checked desired set.
type Speaker struct {
	cfg upstream.Config
	log *slog.Logger
	now func() time.Time

	mu        sync.Mutex
	started   bool
	sessions  []*session
	listener  net.Listener
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

// Start listens (when ListenPort is set) and starts one session per
// neighbor; sessions come up in the background.
func (s *Speaker) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("upstream speaker already started")
	}
	if s.cfg.ListenPort > 0 {
		lc := net.ListenConfig{Control: md5Control(s.cfg.Neighbors)}
		l, err := lc.Listen(ctx, "tcp", fmt.Sprintf(":%d", s.cfg.ListenPort))
		if err != nil {
			return fmt.Errorf("listen on BGP port %d: %w", s.cfg.ListenPort, err)
		}
		s.listener = l
	}
	for _, n := range s.cfg.Neighbors {
		for _, f := range n.Families {
			if _, ok := familyOf(f); !ok {
				if s.listener != nil {
					s.listener.Close()
				}
				return fmt.Errorf("neighbor %s: family %q: want ipv4-unicast, ipv6-unicast, ipv4-flowspec or ipv6-flowspec", n.Address, f)
			}
		}
		s.sessions = append(s.sessions, newSession(n, s.cfg.LocalASN, s.cfg.RouterID, s.log, s.resync))
	}
	for _, ss := range s.sessions {
		sctx, cancel := context.WithCancel(context.Background())
		ss.cancel = cancel
		go ss.run(sctx)
	}
	if s.listener != nil {
		go s.accept(s.listener, s.sessions)
	}
	s.started = true
	s.log.Info("upstream speaker started", "asn", s.cfg.LocalASN, "router_id", s.cfg.RouterID, "neighbors", len(s.cfg.Neighbors))
	return nil
}

// accept hands each connection from a passive neighbor that is waiting
// for one to its session (of sessions, Start's: Stop clears the speaker's
// list while this may still run), and closes every other connection.
func (s *Speaker) accept(l net.Listener, sessions []*session) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		var to *session
		if err == nil {
			for _, ss := range sessions {
				if ss.n.Passive && ss.n.Address == ap.Addr().Unmap() {
					to = ss
				}
			}
		}
		handed := false
		if to != nil {
			to.mu.Lock()
			if to.state == stateActive && !to.stopping {
				select {
				case to.incoming <- c:
					handed = true
				default:
				}
			}
			to.mu.Unlock()
		}
		if !handed {
			s.log.Debug("upstream connection refused: not from a passive neighbor waiting for one", "from", c.RemoteAddr().String())
			c.Close()
		}
	}
}

// want is the announcements in the order sessions send them: validation
// routes first (a validating router re-checks a rule when its unicast
// route arrives, but a rule that finds the route already there is applied
// at once), then by key. Called with s.mu held.
func (s *Speaker) want() []upstream.Announcement {
	out := make([]upstream.Announcement, 0, len(s.announced))
	for _, l := range s.announced {
		out = append(out, l.a)
	}
	slices.SortFunc(out, func(a, b upstream.Announcement) int {
		return cmp.Or(cmp.Compare(kindOrder(a.Kind), kindOrder(b.Kind)), strings.Compare(a.Key(), b.Key()))
	})
	return out
}

// resync sends a session that has just come up the current announcements.
func (s *Speaker) resync(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return
	}
	want := s.want()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.stopping {
		return
	}
	ss.sync(want)
}

// Reconcile makes the announcements equal to desired: entries past the
// dead-man limit (MaxAge since their confirmation) are dropped, the rest go
// through Check, and the difference is sent by key: withdrawals at once,
// announcements and replacements within the dampening budget (the excess is
// deferred to a later call, and logged).
func (s *Speaker) Reconcile(desired []upstream.Entry) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
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

	wanted := map[string]bool{}
	for _, a := range ok {
		wanted[a.Key()] = true
	}
	var errs []error
	// Withdrawals first and never deferred: taking a rule back is always
	// safe, and the dead-man must not wait.
	for _, k := range slices.Sorted(maps.Keys(s.announced)) {
		if wanted[k] {
			continue
		}
		l := s.announced[k]
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
		if _, err := announceMsg(a, probePeer); err != nil {
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
	if res.Changed() {
		want := s.want()
		for _, ss := range s.sessions {
			ss.mu.Lock()
			ss.sync(want)
			ss.mu.Unlock()
		}
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

// DrainTimeout bounds how long Stop waits for the sessions to write their
// withdrawals and Cease and for the neighbors to close.
const DrainTimeout = 5 * time.Second

// Stop withdraws every announcement from every established session, then
// sends each neighbor a Cease and closes the sessions. A session writes its
// withdrawals and its Cease in that order on one connection, so the
// withdrawals are on the wire first; the log says, per neighbor, how many
// were written, or that the session was down (its router drops the
// session's routes).
func (s *Speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return nil
	}
	s.started = false
	sessions := s.sessions
	s.sessions = nil
	announced := len(s.announced)
	clear(s.announced)
	if s.listener != nil {
		s.listener.Close()
		s.listener = nil
	}
	s.mu.Unlock()

	type result struct {
		addr        string
		withdrawn   int
		established bool
		err         error
	}
	results := make(chan result, len(sessions))
	for _, ss := range sessions {
		go func() {
			w, est, err := ss.stop()
			results <- result{ss.n.Address.String(), w, est, err}
		}()
	}
	var (
		errs    []error
		rs      []result
		timeout = time.After(DrainTimeout)
	)
	for range sessions {
		select {
		case r := <-results:
			rs = append(rs, r)
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("stop sessions: %w", ctx.Err()))
		case <-timeout:
			errs = append(errs, fmt.Errorf("stop sessions: not all done within %s", DrainTimeout))
		}
		if len(errs) > 0 {
			break
		}
	}
	slices.SortFunc(rs, func(a, b result) int { return strings.Compare(a.addr, b.addr) })
	written, down := 0, 0
	for _, r := range rs {
		switch {
		case r.err != nil:
			errs = append(errs, fmt.Errorf("neighbor %s: %w", r.addr, r.err))
			s.log.Warn("upstream withdrawals not all written; the session is closed, and the neighbor drops its routes unless it keeps stale routes", "neighbor", r.addr, "withdrawn", r.withdrawn, "error", r.err)
		case !r.established:
			down++
			if announced > 0 {
				s.log.Info("upstream neighbor had no session; nothing to withdraw there", "neighbor", r.addr)
			}
		default:
			written++
			s.log.Info("upstream withdrawals written before the Cease", "neighbor", r.addr, "withdrawn", r.withdrawn)
		}
	}
	switch {
	case len(errs) > 0:
		s.log.Warn("upstream speaker stopped: some neighbors got the Cease without every withdrawal (they drop the session's routes unless they keep stale routes)",
			"announced", announced, "neighbors_written", written, "neighbors", len(sessions))
	case announced == 0:
		s.log.Info("upstream speaker stopped: nothing was announced")
	default:
		s.log.Info("upstream speaker stopped: every withdrawal written before the Cease", "withdrawn", announced, "neighbors", written, "neighbors_down", down)
	}
	return errors.Join(errs...)
}

// Status returns the live announcements with their age and, for each
// neighbor it is meant for, whether the session is up, the route was sent
// and the neighbor sent it back; and each neighbor's session state (idle,
// connect, active, opensent, openconfirm, established) with the routes
// sent per family.
func (s *Speaker) Status(ctx context.Context) (upstream.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st upstream.Status
	if !s.started {
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
	// Each announcement's NLRI as the sessions record what neighbors send.
	nlri := make([]string, len(st.Announcements))
	for i := range st.Announcements {
		st.Announcements[i].Neighbors = []upstream.AnnouncementNeighbor{}
		if n, err := toNLRI(st.Announcements[i].Announcement); err == nil {
			nlri[i] = n.String()
		}
	}
	for _, ss := range s.sessions {
		ss.mu.Lock()
		ns := upstream.NeighborStatus{Address: ss.n.Address.String(), PeerASN: ss.n.PeerASN, State: ss.state, Families: slices.Clone(ss.n.Families)}
		for _, a := range ss.out {
			if ns.Advertised == nil {
				ns.Advertised = map[string]uint64{}
			}
			ns.Advertised[a.Family()]++
		}
		up := ss.state == stateEstablished
		for i := range st.Announcements {
			a := st.Announcements[i].Announcement
			if !slices.Contains(ss.n.Families, a.Family()) {
				continue
			}
			an := upstream.AnnouncementNeighbor{Address: ns.Address, SessionUp: up}
			if up {
				_, an.Sent = ss.out[a.Key()]
				an.Received = nlri[i] != "" && ss.in[bgpFamily(a)][nlri[i]]
			}
			st.Announcements[i].Neighbors = append(st.Announcements[i].Neighbors, an)
		}
		ss.mu.Unlock()
		st.Neighbors = append(st.Neighbors, ns)
	}
	slices.SortFunc(st.Neighbors, func(a, b upstream.NeighborStatus) int { return strings.Compare(a.Address, b.Address) })
	return st, nil
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
