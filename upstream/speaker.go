package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/synban/synban/internal/strictjson"
)

// PollInterval is how often Run looks at the hand-off file; a change is
// reconciled within a second.
const PollInterval = 250 * time.Millisecond

// Speaker is the embedded GoBGP speaker: it holds the sessions to the
// neighbors and keeps its announcements equal to the checked desired set.
type Speaker struct {
	cfg Config
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
	a         Announcement
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
	Refused  []Refusal
}

// Changed reports whether anything was sent.
func (r Result) Changed() bool { return r.Announced+r.Replaced+r.Withdrawn > 0 }

// NewSpeaker checks cfg and returns a speaker that is not started yet.
func NewSpeaker(cfg Config, log *slog.Logger) (*Speaker, error) {
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
	case FamilyIPv4Unicast:
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, nil
	case FamilyIPv6Unicast:
		return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}, nil
	case FamilyIPv4FlowSpec:
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_FLOW_SPEC_UNICAST}, nil
	case FamilyIPv6FlowSpec:
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
func (s *Speaker) Reconcile(desired []Entry) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return Result{}, errors.New("upstream speaker not started")
	}
	now := s.now()
	var res Result
	confirmed := map[string]time.Time{}
	var want []Announcement
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
	ok, refused := Check(s.cfg, want)
	res.Refused = refused
	s.logRefusals(refused)

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
		p, err := a.Path()
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
			s.log.Info("upstream replaced", "route", a.CLI(), "was", l.a.thenText())
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

func (s *Speaker) logRefusals(refused []Refusal) {
	now := map[string]string{}
	for _, r := range refused {
		k := r.Announcement.Key() + " " + r.Announcement.thenText()
		now[k] = r.Reason
		if s.refused[k] != r.Reason {
			s.log.Warn("upstream announcement refused", "route", r.Announcement.CLI(), "reason", r.Reason)
		}
	}
	s.refused = now
}

func (s *Speaker) withdraw(a Announcement) error {
	p, err := a.Path()
	if err != nil {
		return fmt.Errorf("withdraw %s: %w", a.CLI(), err)
	}
	if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{p}}); err != nil {
		return fmt.Errorf("withdraw %s: %w", a.CLI(), err)
	}
	return nil
}

// Stop withdraws every announcement and closes the sessions.
func (s *Speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	var errs []error
	for k, l := range s.announced {
		if err := s.withdraw(l.a); err != nil {
			errs = append(errs, err)
		}
		delete(s.announced, k)
	}
	// StopBgp sends a Cease to every neighbor, which drops whatever a
	// lost withdrawal would have left.
	if err := s.srv.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		errs = append(errs, fmt.Errorf("stop BGP: %w", err))
	}
	s.srv = nil
	s.log.Info("upstream speaker stopped")
	return errors.Join(errs...)
}

// LiveAnnouncement is an announcement the speaker holds.
type LiveAnnouncement struct {
	Announcement Announcement  `json:"announcement"`
	Since        time.Time     `json:"since"`
	Confirmed    time.Time     `json:"confirmed"`
	Age          time.Duration `json:"age"`
}

// NeighborStatus is one session's state.
type NeighborStatus struct {
	Address  string   `json:"address"`
	PeerASN  uint32   `json:"peer_asn"`
	State    string   `json:"state"`
	Families []string `json:"families"`
	// Advertised counts, per family, the routes sent on the established
	// session: fewer than announced in a FlowSpec family means the
	// neighbor did not take FlowSpec (Decide's FlowSpecRefused).
	Advertised map[string]uint64 `json:"advertised,omitempty"`
}

// Status is what `synban status` shows of the speaker.
type Status struct {
	Announcements []LiveAnnouncement `json:"announcements"`
	Neighbors     []NeighborStatus   `json:"neighbors"`
	Deferred      int                `json:"deferred"`
}

// Status returns the live announcements with their age, and each
// neighbor's session state (idle, connect, active, opensent, openconfirm,
// established).
func (s *Speaker) Status(ctx context.Context) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Status
	if s.srv == nil {
		return st, errors.New("upstream speaker not started")
	}
	now := s.now()
	for _, l := range s.announced {
		st.Announcements = append(st.Announcements, LiveAnnouncement{Announcement: l.a, Since: l.since, Confirmed: l.confirmed, Age: now.Sub(l.since)})
	}
	slices.SortFunc(st.Announcements, func(a, b LiveAnnouncement) int { return strings.Compare(a.Announcement.Key(), b.Announcement.Key()) })
	st.Deferred = s.deferred
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		ns := NeighborStatus{Address: p.GetConf().GetNeighborAddress(), PeerASN: p.GetConf().GetPeerAsn(),
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
	slices.SortFunc(st.Neighbors, func(a, b NeighborStatus) int { return strings.Compare(a.Address, b.Address) })
	return st, nil
}

func sessionState(s api.PeerState_SessionState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "SESSION_STATE_"))
}

func familyName(f *api.Family) string {
	for _, n := range []string{FamilyIPv4Unicast, FamilyIPv6Unicast, FamilyIPv4FlowSpec, FamilyIPv6FlowSpec} {
		af, _ := apiFamily(n)
		if af.Afi == f.GetAfi() && af.Safi == f.GetSafi() {
			return n
		}
	}
	return f.String()
}

// StatusFile is where Run publishes the speaker's Status, about once a
// second, for `synban status` (another process) to read.
const StatusFile = "upstream-status.json"

const statusVersion = 1

// StatusReport is the status file's content.
type StatusReport struct {
	Version int       `json:"version"`
	Written time.Time `json:"written"`
	PID     int       `json:"pid"`
	Status
}

// ReadStatus reads dir/StatusFile strictly. A missing file (an error
// wrapping os.ErrNotExist) means no speaker is running on dir.
func ReadStatus(dir string) (StatusReport, error) {
	path := filepath.Join(dir, StatusFile)
	data, err := readBounded(path)
	if err != nil {
		return StatusReport{}, err
	}
	var r StatusReport
	if err := strictjson.Decode(data, &r); err != nil {
		return StatusReport{}, fmt.Errorf("%s: %w", path, err)
	}
	if r.Version != statusVersion {
		return StatusReport{}, fmt.Errorf("%s: version %d, want %d", path, r.Version, statusVersion)
	}
	return r, nil
}

func (s *Speaker) publishStatus(ctx context.Context, dir string) error {
	st, err := s.Status(ctx)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(StatusReport{Version: statusVersion, Written: s.now(), PID: os.Getpid(), Status: st}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", StatusFile, err)
	}
	// Informational and rewritten every second: not synced.
	return writeAtomic(dir, StatusFile, append(data, '\n'), false)
}

// Run reconciles against dir/DesiredFile until ctx ends, then stops the
// speaker (withdrawing everything) and removes its status file. It polls the file every PollInterval
// (re-reading it when its size, modification time or inode changes) and
// reconciles on every poll, so a change, a dampened change coming due and a
// dead-man expiry are all sent within a second. A file that cannot be read
// keeps the last good content, whose confirmations then age out.
func (s *Speaker) Run(ctx context.Context, dir string) error {
	path := filepath.Join(dir, DesiredFile)
	var (
		last    os.FileInfo
		desired []Entry
		readErr string
	)
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	var published time.Time
	for {
		fi, err := os.Lstat(path)
		switch {
		case err == nil && (last == nil || !os.SameFile(fi, last) || fi.Size() != last.Size() || !fi.ModTime().Equal(last.ModTime())):
			d, err := ReadDesired(dir)
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
			if rmErr := os.Remove(filepath.Join(dir, StatusFile)); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("remove status file: %w", rmErr))
			}
			return err
		case <-tick.C:
		}
	}
}
