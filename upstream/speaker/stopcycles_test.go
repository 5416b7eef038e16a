package speaker

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/internal/gobgptest"
	"github.com/synban/synban/internal/netnstest"

	"github.com/synban/synban/upstream"
)

// cyclesEnv names the configuration of a stop-cycles child: it starts a
// speaker, announces once the session is up, stops after a random delay,
// and again, alternating its local address so that the router's idle hold
// after each Cease never delays the next session.
const cyclesEnv = "SYNBAN_UPSTREAM_STOP_CYCLES"

type cyclesConfig struct {
	Config   upstream.Config
	Locals   []netip.Addr
	Cycles   int
	MaxDelay time.Duration
	Rule     upstream.Announcement
}

// runCycles is the stop-cycles child: one worker per local address, each
// running its share of the cycles one after another (the router holds a
// neighbor idle for a moment after each Cease, so cycles in series from
// one address would take minutes).
func runCycles(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cc cyclesConfig
	if err := json.Unmarshal(b, &cc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	errs := make(chan error, len(cc.Locals))
	var mu sync.Mutex
	for w, local := range cc.Locals {
		go func() {
			for i := w; i < cc.Cycles; i += len(cc.Locals) {
				line, err := cycle(cc, local, log)
				if err != nil {
					errs <- fmt.Errorf("cycle %d from %s: %w", i, local, err)
					return
				}
				mu.Lock()
				fmt.Printf("cycle %d from %s: %s\n", i, local, line)
				mu.Unlock()
			}
			errs <- nil
		}()
	}
	var all []error
	for range cc.Locals {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// cycle starts a speaker from local, announces cc.Rule once the session
// is established, and stops it after a random delay up to cc.MaxDelay.
func cycle(cc cyclesConfig, local netip.Addr, log *slog.Logger) (string, error) {
	cfg := cc.Config
	cfg.RouterID = local
	cfg.Neighbors = []upstream.Neighbor{cfg.Neighbors[0]}
	cfg.Neighbors[0].LocalAddress = local
	s, err := New(cfg, log.With("local", local))
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := s.Start(ctx); err != nil {
		return "", err
	}
	for {
		st, err := s.Status(ctx)
		if err == nil && len(st.Neighbors) == 1 && st.Neighbors[0].State == "established" {
			break
		}
		if ctx.Err() != nil {
			_ = s.Stop(context.Background())
			return "", errors.New("session never established")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t1 := time.Now()
	if _, err := s.Reconcile([]upstream.Entry{{Announcement: cc.Rule, Confirmed: time.Now()}}); err != nil {
		_ = s.Stop(ctx)
		return "", fmt.Errorf("announce: %w", err)
	}
	delay := rand.N(cc.MaxDelay + 1)
	time.Sleep(delay)
	t2 := time.Now()
	if err := s.Stop(ctx); err != nil {
		return "", fmt.Errorf("stop: %w", err)
	}
	return fmt.Sprintf("established in %s, stopped %s after the announcement, in %s",
		t1.Sub(t0).Round(time.Millisecond), delay.Round(time.Millisecond), time.Since(t2).Round(time.Millisecond)), nil
}

// TestStopWithdrawalBeforeCease: 200 times, a speaker announces a rule
// and is stopped at a random delay (0 to 1 s) after the announcement; a
// capture on the router's side (tcpdump in its namespace) shows, on every
// session that carried the rule, its withdrawal before the Cease.
func TestStopWithdrawalBeforeCease(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "tcpdump")
	const (
		cycles  = 200
		workers = 20
	)
	r := netnstest.New(t, "stop-r")
	v := netnstest.New(t, "stop-v")
	var locals []netip.Addr
	addrs := []string{}
	for i := 2; i < 2+workers; i++ {
		a := fmt.Sprintf("10.99.0.%d", i)
		locals = append(locals, addr(a))
		addrs = append(addrs, a+"/24")
	}
	rToV, _ := netnstest.Link(t, r, v, []string{labRouterToV4 + "/24"}, addrs)
	var nbs []gobgptest.Neighbor
	for _, a := range locals {
		nbs = append(nbs, gobgptest.Neighbor{Address: a.String(), PeerASN: labVictimASN, Families: []string{upstream.FamilyIPv4FlowSpec}})
	}
	gobgptest.Start(t, r, gobgptest.Config{ASN: labRouterASN, RouterID: labRouterToV4, Neighbors: nbs})

	pcap := filepath.Join(t.TempDir(), "bgp.pcap")
	dumpLog := &netnstest.LogBuffer{}
	dump := r.Command(context.Background(), "tcpdump", "-i", rToV, "-n", "--immediate-mode", "-B", "16384", "-U", "-s", "0", "-w", pcap, "tcp", "port", "179")
	dump.Stdout, dump.Stderr = dumpLog, dumpLog
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dump.Process.Kill(); _ = dump.Wait() })
	netnstest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(dumpLog.String(), "listening on") },
		"tcpdump never listened: %s", dumpLog)

	l := &lab{t: t, v: v}
	cfg := l.config()
	cfg.Neighbors[0].Families = []string{upstream.FamilyIPv4FlowSpec}
	rule := upstream.Announcement{Kind: upstream.FlowSpec, Destination: pfx(labVictim4 + "/32"), Source: pfx("10.98.0.0/24"), Ports: []uint16{80}, Action: upstream.Discard}
	b, err := json.Marshal(cyclesConfig{Config: cfg, Locals: locals, Cycles: cycles, MaxDelay: time.Second, Rule: rule})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cycles.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	child := v.Command(ctx, self, "-test.run=^$")
	child.Env = append(os.Environ(), cyclesEnv+"="+path)
	out, err := child.CombinedOutput()
	if err != nil {
		t.Fatalf("stop cycles: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "level=WARN") {
		t.Errorf("a stop logged a warning:\n%s", out)
	}
	// Let the last Cease reach the capture, then stop tcpdump (it flushes
	// on SIGINT).
	time.Sleep(time.Second)
	_ = dump.Process.Signal(syscall.SIGINT)
	_ = dump.Wait()

	data, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	streams, err := tcpStreams(data, 179)
	if err != nil {
		t.Fatalf("%v (tcpdump: %s)", err, dumpLog)
	}
	sessions, refused := 0, 0
	for key, payload := range streams {
		msgs, err := bgpMessages(payload)
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		var seq strings.Builder
		pending, cease := false, false
		for _, m := range msgs {
			seq.WriteString(m.String() + " ")
			switch {
			case m.announces:
				pending = true
			case m.withdraws:
				pending = false
			case m.typ == 3:
				cease = true
				if pending {
					t.Errorf("%s: Cease before the withdrawal: %s", key, seq.String())
				}
			}
		}
		switch {
		case carried(msgs) && cease:
			sessions++
		case carried(msgs):
			t.Errorf("%s: carried the rule but has no Cease: %s", key, seq.String())
		default:
			refused++ // a connection the router closed before the session came up
		}
	}
	if sessions != cycles {
		t.Errorf("%d sessions carried the rule and ended with a Cease, want %d", sessions, cycles)
	}
	if testing.Verbose() {
		t.Logf("child:\n%s", out)
	}
	t.Logf("%d sessions: announcement, withdrawal, Cease (and %d connections closed before a session)", sessions, refused)
}

// carried reports whether msgs announce something (the session carried the
// rule).
func carried(msgs []bgpMsg) bool {
	for _, m := range msgs {
		if m.announces {
			return true
		}
	}
	return false
}

// bgpMsg is one BGP message from a capture.
type bgpMsg struct {
	typ                  byte // 1 OPEN, 2 UPDATE, 3 NOTIFICATION, 4 KEEPALIVE
	announces, withdraws bool // an UPDATE with reachable / withdrawn NLRI
	code                 byte // NOTIFICATION error code (6: Cease)
}

func (m bgpMsg) String() string {
	switch {
	case m.announces:
		return "UPDATE+"
	case m.withdraws:
		return "UPDATE-"
	case m.typ == 2:
		return "UPDATE(EoR)"
	case m.typ == 3:
		return fmt.Sprintf("NOTIFICATION(%d)", m.code)
	}
	return map[byte]string{1: "OPEN", 4: "KEEPALIVE", 5: "REFRESH"}[m.typ]
}

// bgpMessages splits a TCP stream into BGP messages (RFC 4271 section
// 4.1), telling UPDATEs that announce (NLRI or MP_REACH_NLRI with NLRI)
// from those that withdraw (withdrawn routes or MP_UNREACH_NLRI with NLRI);
// an MP_UNREACH_NLRI with only its AFI and SAFI is an End-of-RIB.
func bgpMessages(b []byte) ([]bgpMsg, error) {
	var out []bgpMsg
	for len(b) > 0 {
		if len(b) < 19 || !bytes.Equal(b[:16], bytes.Repeat([]byte{0xff}, 16)) {
			return out, fmt.Errorf("bad BGP header after %d messages", len(out))
		}
		n := int(binary.BigEndian.Uint16(b[16:18]))
		if n < 19 || n > len(b) {
			return out, fmt.Errorf("BGP message length %d with %d bytes left", n, len(b))
		}
		m := bgpMsg{typ: b[18]}
		body := b[19:n]
		switch m.typ {
		case 3:
			if len(body) > 0 {
				m.code = body[0]
			}
		case 2:
			if len(body) < 4 {
				return out, errors.New("short UPDATE")
			}
			wl := int(binary.BigEndian.Uint16(body))
			if 2+wl+2 > len(body) {
				return out, errors.New("bad UPDATE withdrawn length")
			}
			m.withdraws = wl > 0
			al := int(binary.BigEndian.Uint16(body[2+wl:]))
			attrs := body[4+wl:]
			if al > len(attrs) {
				return out, errors.New("bad UPDATE attribute length")
			}
			m.announces = len(attrs) > al // IPv4 NLRI
			attrs = attrs[:al]
			for len(attrs) >= 3 {
				flags, typ := attrs[0], attrs[1]
				hl, l := 3, int(attrs[2])
				if flags&0x10 != 0 {
					if len(attrs) < 4 {
						return out, errors.New("short attribute")
					}
					hl, l = 4, int(binary.BigEndian.Uint16(attrs[2:]))
				}
				if hl+l > len(attrs) {
					return out, errors.New("attribute overruns the UPDATE")
				}
				v := attrs[hl : hl+l]
				switch typ {
				case 14: // MP_REACH_NLRI: AFI, SAFI, next hop length, next hop, reserved, NLRI
					if len(v) >= 4 && len(v) > 5+int(v[3]) {
						m.announces = true
					}
				case 15: // MP_UNREACH_NLRI: AFI, SAFI, withdrawn NLRI
					if len(v) > 3 {
						m.withdraws = true
					}
				}
				attrs = attrs[hl+l:]
			}
		}
		out = append(out, m)
		b = b[n:]
	}
	return out, nil
}

// tcpStreams reads a pcap (Ethernet, IPv4) and returns the payload of
// each TCP direction towards port (the speaker's side of each session),
// reassembled by sequence number, keyed "src:port>dst:port" (with a
// "#n" suffix for an earlier connection that used the same ports).
func tcpStreams(data []byte, port uint16) (map[string][]byte, error) {
	if len(data) < 24 {
		return nil, errors.New("pcap: no header")
	}
	var bo binary.ByteOrder = binary.LittleEndian
	switch binary.LittleEndian.Uint32(data) {
	case 0xa1b2c3d4, 0xa1b23c4d:
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, errors.New("pcap: bad magic")
	}
	if lt := bo.Uint32(data[20:]); lt != 1 {
		return nil, fmt.Errorf("pcap: link type %d, want Ethernet", lt)
	}
	type segment struct {
		off     uint32 // from the first payload byte (ISN+1)
		payload []byte
	}
	type stream struct {
		isn  uint32
		init bool
		segs []segment
	}
	streams := map[string]*stream{}
	for p := data[24:]; len(p) >= 16; {
		incl := int(bo.Uint32(p[8:]))
		if 16+incl > len(p) {
			return nil, errors.New("pcap: truncated record")
		}
		pkt := p[16 : 16+incl]
		p = p[16+incl:]
		if len(pkt) < 14+20 || binary.BigEndian.Uint16(pkt[12:]) != 0x0800 {
			continue
		}
		ip := pkt[14:]
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ip[9] != 6 || total > len(ip) || ihl+20 > total {
			continue
		}
		tcp := ip[ihl:total]
		sp, dp := binary.BigEndian.Uint16(tcp), binary.BigEndian.Uint16(tcp[2:])
		if dp != port {
			continue
		}
		seq := binary.BigEndian.Uint32(tcp[4:])
		off := int(tcp[12]>>4) * 4
		flags := tcp[13]
		if off > len(tcp) {
			continue
		}
		payload := tcp[off:]
		key := fmt.Sprintf("%d.%d.%d.%d:%d>%d.%d.%d.%d:%d", ip[12], ip[13], ip[14], ip[15], sp, ip[16], ip[17], ip[18], ip[19], dp)
		s := streams[key]
		if s == nil {
			s = &stream{}
			streams[key] = s
		}
		if flags&0x02 != 0 { // SYN
			if s.init && s.isn != seq {
				// The same addresses and ports again: a new connection.
				// Keep the old one under its own key.
				streams[fmt.Sprintf("%s#%d", key, len(streams))] = s
				s = &stream{}
				streams[key] = s
			}
			s.isn, s.init = seq, true
			continue
		}
		if len(payload) > 0 {
			s.segs = append(s.segs, segment{seq, append([]byte(nil), payload...)})
		}
	}
	// Reassemble each direction by sequence number: the capture may list
	// segments out of order, and retransmissions twice.
	out := map[string][]byte{}
	for k, s := range streams {
		if !s.init || len(s.segs) == 0 {
			continue
		}
		for i := range s.segs {
			s.segs[i].off = s.segs[i].off - s.isn - 1
		}
		sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].off < s.segs[j].off })
		var buf []byte
		for _, g := range s.segs {
			end := g.off + uint32(len(g.payload))
			switch {
			case g.off > uint32(len(buf)):
				return nil, fmt.Errorf("%s: bytes %d..%d missing from the capture", k, len(buf), g.off)
			case end <= uint32(len(buf)):
				continue // retransmitted
			}
			buf = append(buf, g.payload[uint32(len(buf))-g.off:]...)
		}
		out[k] = buf
	}
	return out, nil
}
