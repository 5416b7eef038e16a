package speaker

// The BGP session to one neighbor is written here by hand, on GoBGP's
// message codec (pkg/packet/bgp), not with GoBGP's server: that server
// (pkg/server, v3.37 and v4.8, capabilitiesFromConfig) advertises the
// extended next-hop capability (RFC 8950) for every family but IPv6
// unicast with no setting to leave it out, and routers log it as
// unexpected for FlowSpec or may refuse it. synban only announces, so its
// session is the part of RFC 4271's state machine an announcing speaker
// needs: connect (or accept, for a passive neighbor), OPEN with exactly the
// capabilities synban uses (multiprotocol per configured family, route
// refresh, four-octet AS), KEEPALIVE and the hold timer, UPDATE out,
// NOTIFICATION both ways, ROUTE-REFRESH in, and the routes the neighbor
// sends back kept only to report them. A session's writes go out in the
// order they are made, on one connection, so the withdrawals Stop writes
// are on the wire before its Cease.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/upstream"
)

// Session timers. The hold time offered is RFC 4271's suggested 90 s; a
// failed connection is retried after connectRetry; a session that went
// down waits idleHold before the next attempt.
const (
	offeredHold  = 90 * time.Second
	connectRetry = 5 * time.Second
	idleHold     = time.Second
	openWait     = 30 * time.Second // for the neighbor's OPEN and KEEPALIVE
	writeTimeout = 10 * time.Second
	closeWait    = 2 * time.Second // for the neighbor to close after a Cease
)

// Session states, as `synban status` shows them (RFC 4271 section 8.2.2).
const (
	stateIdle        = "idle"
	stateConnect     = "connect"
	stateActive      = "active"
	stateOpenSent    = "opensent"
	stateOpenConfirm = "openconfirm"
	stateEstablished = "established"
)

// session is the BGP session to one neighbor. Lock order: Speaker.mu,
// then session.mu, then session.wmu.
type session struct {
	n        upstream.Neighbor
	localASN uint32
	routerID netip.Addr
	log      *slog.Logger
	// resync is called (in a goroutine of its own) once the session is
	// established: it sends the speaker's current announcements
	// (Speaker.resync).
	resync func(*session)

	incoming chan net.Conn // a passive neighbor's connections, from the listener
	cancel   context.CancelFunc
	done     chan struct{} // closed when run returns

	mu       sync.Mutex
	state    string
	conn     net.Conn
	peer     peer                             // valid while established
	families map[bgp.Family]bool              // negotiated, while established
	out      map[string]upstream.Announcement // adj-rib-out by key, while established
	in       map[bgp.Family]map[string]bool   // NLRIs the neighbor sent, while established
	stopping bool

	wmu sync.Mutex // one message at a time on conn
}

func newSession(n upstream.Neighbor, localASN uint32, routerID netip.Addr, log *slog.Logger, resync func(*session)) *session {
	return &session{
		n: n, localASN: localASN, routerID: routerID, resync: resync,
		log:      log.With("neighbor", n.Address.String()),
		incoming: make(chan net.Conn, 1),
		done:     make(chan struct{}),
		state:    stateIdle,
	}
}

// configured are the families the neighbor is configured with.
func (ss *session) configured() []bgp.Family {
	var fs []bgp.Family
	for _, name := range ss.n.Families {
		if f, ok := familyOf(name); ok {
			fs = append(fs, f)
		}
	}
	return fs
}

func (ss *session) setState(st string) {
	ss.mu.Lock()
	ss.state = st
	ss.mu.Unlock()
}

// run holds the session until stop: connect, run it, and again after a
// pause when it ends.
func (ss *session) run(ctx context.Context) {
	defer close(ss.done)
	for {
		conn, err := ss.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			ss.setState(stateActive)
			ss.log.Debug("upstream neighbor not reached", "error", err)
			if !sleep(ctx, connectRetry) {
				return
			}
			continue
		}
		ss.mu.Lock()
		if ss.stopping {
			ss.mu.Unlock()
			conn.Close()
			return
		}
		ss.conn, ss.state = conn, stateOpenSent
		ss.mu.Unlock()
		err = ss.handle(conn)
		ss.mu.Lock()
		stopping, was := ss.stopping, ss.state
		ss.conn, ss.state, ss.out, ss.in, ss.families = nil, stateIdle, nil, nil, nil
		ss.mu.Unlock()
		conn.Close()
		switch {
		case stopping:
		case was == stateEstablished:
			ss.log.Warn("upstream session down; the neighbor drops its routes, and they are sent again when it is back", "error", err)
		default:
			ss.log.Info("upstream session not established", "state", was, "error", err)
		}
		if !sleep(ctx, idleHold) {
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// connect dials the neighbor, or waits for it to connect when passive.
func (ss *session) connect(ctx context.Context) (net.Conn, error) {
	if ss.n.Passive {
		ss.setState(stateActive)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case c := <-ss.incoming:
			return c, nil
		}
	}
	ss.setState(stateConnect)
	port := ss.n.Port
	if port == 0 {
		port = 179
	}
	d := net.Dialer{Timeout: connectRetry}
	if ss.n.LocalAddress.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: ss.n.LocalAddress.AsSlice()}
	}
	if ss.n.Password != "" {
		d.Control = md5Control([]upstream.Neighbor{ss.n})
	}
	network := "tcp4"
	if ss.n.Address.Is6() {
		network = "tcp6"
	}
	return d.DialContext(ctx, network, netip.AddrPortFrom(ss.n.Address, port).String())
}

// md5Control sets the TCP MD5 signature key (RFC 2385) of each neighbor
// with a password on the socket being dialed or listened on. An IPv4
// neighbor's key on an IPv6 socket is set for its mapped address.
func md5Control(ns []upstream.Neighbor) func(network, address string, c syscall.RawConn) error {
	return func(network, _ string, c syscall.RawConn) error {
		var errs []error
		err := c.Control(func(fd uintptr) {
			for _, n := range ns {
				if n.Password == "" {
					continue
				}
				var sig unix.TCPMD5Sig
				sig.Keylen = uint16(copy(sig.Key[:], n.Password)) // Validate: at most 80 bytes
				if network == "tcp4" {
					sig.Addr.Family = unix.AF_INET
					a := n.Address.As4()
					copy(sig.Addr.Data[2:6], a[:])
				} else {
					sig.Addr.Family = unix.AF_INET6
					a := n.Address.As16()
					copy(sig.Addr.Data[6:22], a[:])
				}
				if err := unix.SetsockoptTCPMD5Sig(int(fd), unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig); err != nil {
					errs = append(errs, fmt.Errorf("TCP MD5 key for %s: %w", n.Address, err))
				}
			}
		})
		return errors.Join(append(errs, err)...)
	}
}

// errNotification is a NOTIFICATION, sent or received, that ended the
// session.
type errNotification struct {
	sent          bool
	code, subcode uint8
	text          string
}

func (e *errNotification) Error() string {
	dir := "received"
	if e.sent {
		dir = "sent"
	}
	s := fmt.Sprintf("NOTIFICATION %s: code %d subcode %d (%s)", dir, e.code, e.subcode, notificationName(e.code, e.subcode))
	if e.text != "" {
		s += ": " + e.text
	}
	return s
}

func notificationName(code, subcode uint8) string {
	switch code {
	case bgp.BGP_ERROR_MESSAGE_HEADER_ERROR:
		return "message header error"
	case bgp.BGP_ERROR_OPEN_MESSAGE_ERROR:
		switch subcode {
		case bgp.BGP_ERROR_SUB_BAD_PEER_AS:
			return "OPEN: bad peer AS"
		case bgp.BGP_ERROR_SUB_UNACCEPTABLE_HOLD_TIME:
			return "OPEN: unacceptable hold time"
		case bgp.BGP_ERROR_SUB_UNSUPPORTED_CAPABILITY:
			return "OPEN: unsupported capability"
		}
		return "OPEN message error"
	case bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR:
		return "UPDATE message error"
	case bgp.BGP_ERROR_HOLD_TIMER_EXPIRED:
		return "hold timer expired"
	case bgp.BGP_ERROR_FSM_ERROR:
		return "finite state machine error"
	case bgp.BGP_ERROR_CEASE:
		switch subcode {
		case bgp.BGP_ERROR_SUB_MAXIMUM_NUMBER_OF_PREFIXES_REACHED:
			return "cease: maximum number of prefixes reached"
		case bgp.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN:
			return "cease: administrative shutdown"
		case bgp.BGP_ERROR_SUB_PEER_DECONFIGURED:
			return "cease: peer de-configured"
		case bgp.BGP_ERROR_SUB_ADMINISTRATIVE_RESET:
			return "cease: administrative reset"
		case bgp.BGP_ERROR_SUB_CONNECTION_REJECTED:
			return "cease: connection rejected"
		case bgp.BGP_ERROR_SUB_CONNECTION_COLLISION_RESOLUTION:
			return "cease: connection collision resolution"
		}
		return "cease"
	}
	return "unknown"
}

// notify sends a NOTIFICATION and returns it as the session's error.
func (ss *session) notify(conn net.Conn, code, subcode uint8, text string) error {
	_ = ss.write(conn, bgp.NewBGPNotificationMessage(code, subcode, nil), nil)
	return &errNotification{sent: true, code: code, subcode: subcode, text: text}
}

// handle runs one connection from OPEN to its end.
func (ss *session) handle(conn net.Conn) error {
	caps := []bgp.ParameterCapabilityInterface{}
	for _, f := range ss.configured() {
		caps = append(caps, bgp.NewCapMultiProtocol(f))
	}
	caps = append(caps, bgp.NewCapRouteRefresh(), bgp.NewCapFourOctetASNumber(ss.localASN))
	myAS := uint16(bgp.AS_TRANS)
	if ss.localASN <= 0xffff {
		myAS = uint16(ss.localASN)
	}
	open, err := bgp.NewBGPOpenMessage(myAS, uint16(offeredHold/time.Second), ss.routerID, []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if err != nil {
		return fmt.Errorf("build OPEN: %w", err)
	}
	if err := ss.write(conn, open, nil); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(openWait))
	m, err := readMessage(conn, nil)
	if err != nil {
		return fmt.Errorf("waiting for OPEN: %w", err)
	}
	o, ok := m.Body.(*bgp.BGPOpen)
	if !ok {
		return ss.unexpected(conn, m, bgp.BGP_ERROR_SUB_RECEIVE_UNEXPECTED_MESSAGE_IN_OPENSENT_STATE)
	}
	p, fams, hold, err := ss.checkOpen(conn, o)
	if err != nil {
		return err
	}
	if err := ss.write(conn, bgp.NewBGPKeepAliveMessage(), nil); err != nil {
		return err
	}
	ss.setState(stateOpenConfirm)
	opts := &bgp.MarshallingOption{Use2ByteAS: !p.as4}
	m, err = readMessage(conn, opts)
	if err != nil {
		return fmt.Errorf("waiting for KEEPALIVE: %w", err)
	}
	if m.Header.Type != bgp.BGP_MSG_KEEPALIVE {
		return ss.unexpected(conn, m, bgp.BGP_ERROR_SUB_RECEIVE_UNEXPECTED_MESSAGE_IN_OPENCONFIRM_STATE)
	}

	ss.mu.Lock()
	if ss.stopping {
		ss.mu.Unlock()
		return errors.New("stopping")
	}
	ss.state, ss.peer, ss.families = stateEstablished, p, fams
	ss.out, ss.in = map[string]upstream.Announcement{}, map[bgp.Family]map[string]bool{}
	ss.mu.Unlock()
	names := make([]string, 0, len(fams))
	for f := range fams {
		names = append(names, f.String())
	}
	slices.Sort(names)
	ss.log.Info("upstream session established", "peer_asn", ss.n.PeerASN, "families", names, "hold", hold)
	// Sent while this goroutine reads: a neighbor sending its own table
	// at the same time must never find both sides blocked on a full
	// window.
	go ss.resync(ss)

	stopKeepalive := make(chan struct{})
	defer close(stopKeepalive)
	if hold > 0 {
		go ss.keepalives(conn, hold/3, opts, stopKeepalive)
	}
	for {
		if hold > 0 {
			_ = conn.SetReadDeadline(time.Now().Add(hold))
		} else {
			_ = conn.SetReadDeadline(time.Time{})
		}
		m, err := readMessage(conn, opts)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return ss.notify(conn, bgp.BGP_ERROR_HOLD_TIMER_EXPIRED, 0, fmt.Sprintf("nothing from the neighbor in %s", hold))
			}
			return err
		}
		switch b := m.Body.(type) {
		case *bgp.BGPUpdate:
			ss.received(b)
		case *bgp.BGPNotification:
			return &errNotification{code: b.ErrorCode, subcode: b.ErrorSubcode, text: string(b.Data)}
		case *bgp.BGPRouteRefresh:
			ss.refresh(bgp.NewFamily(b.AFI, b.SAFI))
		case *bgp.BGPKeepAlive:
		default:
			return ss.unexpected(conn, m, bgp.BGP_ERROR_SUB_RECEIVE_UNEXPECTED_MESSAGE_IN_ESTABLISHED_STATE)
		}
	}
}

func (ss *session) unexpected(conn net.Conn, m *bgp.BGPMessage, subcode uint8) error {
	if n, ok := m.Body.(*bgp.BGPNotification); ok {
		return &errNotification{code: n.ErrorCode, subcode: n.ErrorSubcode, text: string(n.Data)}
	}
	return ss.notify(conn, bgp.BGP_ERROR_FSM_ERROR, subcode, fmt.Sprintf("unexpected message type %d", m.Header.Type))
}

// checkOpen checks the neighbor's OPEN (RFC 4271 section 6.2, RFC 6793)
// and returns what the session negotiated.
func (ss *session) checkOpen(conn net.Conn, o *bgp.BGPOpen) (peer, map[bgp.Family]bool, time.Duration, error) {
	if o.Version != 4 {
		return peer{}, nil, 0, ss.notify(conn, bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_UNSUPPORTED_VERSION_NUMBER, fmt.Sprintf("version %d", o.Version))
	}
	asn, as4 := uint32(o.MyAS), false
	theirs := map[bgp.Family]bool{}
	anyMP := false
	for _, op := range o.OptParams {
		c, ok := op.(*bgp.OptionParameterCapability)
		if !ok {
			continue
		}
		for _, cp := range c.Capability {
			switch v := cp.(type) {
			case *bgp.CapFourOctetASNumber:
				asn, as4 = v.CapValue, true
			case *bgp.CapMultiProtocol:
				theirs[v.CapValue], anyMP = true, true
			}
		}
	}
	if !anyMP {
		theirs[bgp.RF_IPv4_UC] = true // RFC 4760 section 8: no capability is IPv4 unicast
	}
	if asn != ss.n.PeerASN {
		return peer{}, nil, 0, ss.notify(conn, bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_BAD_PEER_AS, fmt.Sprintf("neighbor is AS %d, configured peer_asn %d", asn, ss.n.PeerASN))
	}
	hold := time.Duration(min(o.HoldTime, uint16(offeredHold/time.Second))) * time.Second
	if o.HoldTime == 1 || o.HoldTime == 2 {
		return peer{}, nil, 0, ss.notify(conn, bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_UNACCEPTABLE_HOLD_TIME, fmt.Sprintf("hold time %d s", o.HoldTime))
	}
	fams := map[bgp.Family]bool{}
	for _, f := range ss.configured() {
		if theirs[f] {
			fams[f] = true
		}
	}
	local := netip.Addr{}
	if ap, err := netip.ParseAddrPort(conn.LocalAddr().String()); err == nil {
		local = ap.Addr().Unmap()
	}
	return peer{localASN: ss.localASN, external: asn != ss.localASN, as4: as4, local: local}, fams, hold, nil
}

func (ss *session) keepalives(conn net.Conn, every time.Duration, opts *bgp.MarshallingOption, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := ss.write(conn, bgp.NewBGPKeepAliveMessage(), opts); err != nil {
				// Unless stop has half-closed it (closing now could reset
				// the connection before the neighbor read the withdrawals),
				// end the session: the read loop sees the close.
				ss.mu.Lock()
				stopping := ss.stopping
				ss.mu.Unlock()
				if !stopping {
					conn.Close()
				}
				return
			}
		}
	}
}

// write sends one message, whole, within writeTimeout.
func (ss *session) write(conn net.Conn, m *bgp.BGPMessage, opts *bgp.MarshallingOption) error {
	var o []*bgp.MarshallingOption
	if opts != nil {
		o = append(o, opts)
	}
	b, err := m.Serialize(o...)
	if err != nil {
		return fmt.Errorf("encode message type %d: %w", m.Header.Type, err)
	}
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("write message type %d: %w", m.Header.Type, err)
	}
	return nil
}

// readMessage reads one whole BGP message.
func readMessage(r io.Reader, opts *bgp.MarshallingOption) (*bgp.BGPMessage, error) {
	buf := make([]byte, bgp.BGP_HEADER_LENGTH, 512)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(buf[16:18]))
	if n < bgp.BGP_HEADER_LENGTH || n > 65535 {
		return nil, fmt.Errorf("message length %d", n)
	}
	buf = slices.Grow(buf, n-len(buf))[:n]
	if _, err := io.ReadFull(r, buf[bgp.BGP_HEADER_LENGTH:]); err != nil {
		return nil, err
	}
	var o []*bgp.MarshallingOption
	if opts != nil {
		o = append(o, opts)
	}
	m, err := bgp.ParseBGPMessage(buf, o...)
	if err != nil {
		// An UPDATE synban cannot decode only loses what status reports
		// as received: keep the session (and so the rules) up.
		if buf[18] == bgp.BGP_MSG_UPDATE {
			return &bgp.BGPMessage{Header: bgp.BGPHeader{Len: uint16(n), Type: bgp.BGP_MSG_UPDATE}, Body: &bgp.BGPUpdate{}}, nil
		}
		return nil, fmt.Errorf("decode message type %d: %w", buf[18], err)
	}
	return m, nil
}

// received records the NLRIs of an UPDATE the neighbor sent, for status.
func (ss *session) received(u *bgp.BGPUpdate) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.in == nil {
		return
	}
	set := func(f bgp.Family, ns []bgp.PathNLRI, on bool) {
		m := ss.in[f]
		if m == nil {
			m = map[string]bool{}
			ss.in[f] = m
		}
		for _, n := range ns {
			if on {
				m[n.NLRI.String()] = true
			} else {
				delete(m, n.NLRI.String())
			}
		}
	}
	set(bgp.RF_IPv4_UC, u.WithdrawnRoutes, false)
	for _, a := range u.PathAttributes {
		switch v := a.(type) {
		case *bgp.PathAttributeMpUnreachNLRI:
			set(bgp.NewFamily(v.AFI, v.SAFI), v.Value, false)
		case *bgp.PathAttributeMpReachNLRI:
			set(bgp.NewFamily(v.AFI, v.SAFI), v.Value, true)
		}
	}
	set(bgp.RF_IPv4_UC, u.NLRI, true)
}

// sync makes the session's adj-rib-out equal to want (in that order:
// validation routes first), withdrawing first. Called with session.mu
// held; a write that fails closes the connection (the session restarts
// and sends everything again).
func (ss *session) sync(want []upstream.Announcement) {
	if ss.state != stateEstablished || ss.conn == nil {
		return
	}
	keep := map[string]bool{}
	for _, a := range want {
		if ss.families[bgpFamily(a)] {
			keep[a.Key()] = true
		}
	}
	for _, k := range slices.Sorted(maps.Keys(ss.out)) {
		if keep[k] {
			continue
		}
		if err := ss.send(ss.out[k], true); err != nil {
			ss.fail(err)
			return
		}
		delete(ss.out, k)
	}
	for _, a := range want {
		k := a.Key()
		if !keep[k] {
			continue
		}
		if o, ok := ss.out[k]; ok && o.Equal(a) {
			continue
		}
		if err := ss.send(a, false); err != nil {
			ss.fail(err)
			return
		}
		ss.out[k] = a
	}
}

// send writes the UPDATE that announces (or withdraws) a.
func (ss *session) send(a upstream.Announcement, withdraw bool) error {
	var m *bgp.BGPMessage
	var err error
	if withdraw {
		m, err = withdrawMsg(a)
	} else {
		m, err = announceMsg(a, ss.peer)
	}
	if err != nil {
		return err
	}
	return ss.write(ss.conn, m, &bgp.MarshallingOption{Use2ByteAS: !ss.peer.as4})
}

// fail logs a write that failed and closes the connection; called with
// session.mu held.
func (ss *session) fail(err error) {
	ss.log.Warn("upstream session write failed; closing it", "error", err)
	ss.conn.Close()
}

// refresh sends the adj-rib-out of one family again (ROUTE-REFRESH).
func (ss *session) refresh(f bgp.Family) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.state != stateEstablished {
		return
	}
	keys := make([]string, 0, len(ss.out))
	for k, a := range ss.out {
		if bgpFamily(a) == f {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := ss.send(ss.out[k], false); err != nil {
			ss.fail(err)
			return
		}
	}
	ss.log.Info("upstream route refresh answered", "family", f.String(), "routes", len(keys))
}

// stop withdraws everything the session announced, sends a Cease, waits
// (at most closeWait) for the neighbor to close, and ends the session. It
// returns how many withdrawals were written and whether the session was
// established.
func (ss *session) stop() (withdrawn int, established bool, err error) {
	ss.mu.Lock()
	ss.stopping = true
	conn := ss.conn
	established = ss.state == stateEstablished
	if established {
		for _, k := range slices.Sorted(maps.Keys(ss.out)) {
			if err = ss.send(ss.out[k], true); err != nil {
				break
			}
			withdrawn++
		}
		ss.out = map[string]upstream.Announcement{}
	}
	if conn != nil && err == nil {
		// The Cease after the withdrawals, on the same connection.
		err = ss.write(conn, bgp.NewBGPNotificationMessage(bgp.BGP_ERROR_CEASE, bgp.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN, nil), nil)
	}
	ss.mu.Unlock()
	ss.cancel()
	if conn != nil {
		// Half-close and let the neighbor close: closing with its data
		// unread would reset the connection, and a reset can discard
		// what is still queued to it.
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		select {
		case <-ss.done:
		case <-time.After(closeWait):
			conn.Close()
		}
	}
	<-ss.done
	return withdrawn, established, err
}

// familyOf maps a configured family name to GoBGP's.
func familyOf(name string) (bgp.Family, bool) {
	switch name {
	case upstream.FamilyIPv4Unicast:
		return bgp.RF_IPv4_UC, true
	case upstream.FamilyIPv6Unicast:
		return bgp.RF_IPv6_UC, true
	case upstream.FamilyIPv4FlowSpec:
		return bgp.RF_FS_IPv4_UC, true
	case upstream.FamilyIPv6FlowSpec:
		return bgp.RF_FS_IPv6_UC, true
	}
	return 0, false
}
