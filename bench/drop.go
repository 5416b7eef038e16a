package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/engine"
	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/state"
)

// The drop scenario measures what a flood costs the host once synban has
// decided: an attacker namespace sends TCP SYNs over a veth into a victim
// namespace, which has a listener (SYN cookies on) and conntrack loaded by
// an ordinary stateful rule in a table of its own, as on a real server.
// Two senders (-drop-sender): the xdp sender of xdpsend.go, whose frames
// reach the victim's veth as xdp_frames (as from a NIC), and trafgen
// (netsniff-ng, AF_PACKET), whose skbs veth hands on. Either runs pinned to
// one CPU (floodCPU), and the victim's receive work runs there too, in
// softirq: trafgen's veth transmit calls netif_rx and the NET_RX softirq
// runs on the sending CPU (with an XDP program, the veth's NAPI, also a
// softirq there); the xdp sender's flush schedules the victim veth's NAPI
// on its own CPU (see xdpsend.go). The sender's own work is system time.
// The victim's replies are steered to the other CPU (RPS on the attacker's
// veth). floodCPU's softirq time from /proc/stat divided by the packets the
// victim's veth received gives nanoseconds per packet; on a drop path every
// received flood packet is a dropped one. (Steering the victim's receive
// work to the other CPU with RPS instead makes trafgen stop: its TX ring
// frames stay held by the queued packets, and it treats the full ring as
// fatal.)

// Lab addresses of the drop scenario: attacker link, client link.
var (
	dropVictimAddr   = netip.MustParseAddr("10.203.0.1")
	dropAttackerAddr = netip.MustParseAddr("10.203.0.2")
	dropVictimCAddr  = netip.MustParseAddr("10.204.0.1")
	dropClientAddr   = netip.MustParseAddr("10.204.0.2")
)

const (
	// floodCPU runs the sender and, in softirq, the victim's receive work;
	// replyCPU the attacker's receive work (the victim's SYN-ACKs).
	floodCPU = 0
	replyCPU = 1
	// clientCPU runs the legitimate client's dials and their softirq work.
	clientCPU = replyCPU
	// dropPort is the victim's listening port, flooded and dialled.
	dropPort = 80
	// userHZ is the unit of /proc/stat (USER_HZ, 100 on every Linux ABI).
	userHZ = 100
)

// Paths of the drop table, in the order printed.
const (
	pathNone = iota
	pathInput
	pathPrerouting
	pathIngress
	pathXDP
	pathXDPFilter
	pathSenderAlone
	numPaths
)

var pathNames = [numPaths]string{
	"no rule (listener, SYN cookies)",
	"synban `hooks = [\"input\"]` (after conntrack)",
	"synban `hooks = [\"prerouting\"]` (raw -300, before conntrack)",
	"synban `hooks = [\"prerouting\", \"ingress\"]`",
	"synban `[xdp]` native",
	"`xdp-filter` (xdp-tools) native, `-f ipv4`",
	"sender alone: its program drops each frame, none reaches the victim",
}

// Senders of the drop scenario (-drop-sender).
const (
	// senderXDP is the live-frame XDP sender of xdpsend.go: frames reach
	// the victim's veth as xdp_frames, as from a NIC's DMA.
	senderXDP = "xdp"
	// senderTrafgen is netsniff-ng's trafgen over AF_PACKET: the victim's
	// veth gets skbs built on the sending side.
	senderTrafgen = "trafgen"
)

// parseSenders parses -drop-sender: senders separated by commas, each at
// most once, in the order given.
func parseSenders(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f != senderXDP && f != senderTrafgen:
			return nil, fmt.Errorf("unknown sender %q (want %s or %s)", f, senderXDP, senderTrafgen)
		case slices.Contains(out, f):
			return nil, fmt.Errorf("sender %q given twice", f)
		}
		out = append(out, f)
	}
	return out, nil
}

// pathPolicy is the policy text of a synban path; "" for the anchors.
func pathPolicy(path int, dev string) string {
	const head = "[ban]\nmax_entries = 262144\n"
	switch path {
	case pathInput:
		return head + "[nftables]\nhooks = [\"input\"]\n"
	case pathPrerouting:
		return head + "[nftables]\nhooks = [\"prerouting\"]\n"
	case pathIngress:
		return head + fmt.Sprintf("[nftables]\nhooks = [\"prerouting\", \"ingress\"]\ningress_devices = [%q]\n", dev)
	case pathXDP:
		return head + fmt.Sprintf("[nftables]\nhooks = [\"prerouting\"]\n[xdp]\nenabled = true\ninterfaces = [%q]\nmode = \"native\"\n", dev)
	}
	return ""
}

// Cases of the drop table.
const (
	caseOne = iota
	caseMany
	caseSpoofed
	numCases
)

var caseNames = [numCases]string{
	"(a) 1 banned source",
	"(b) 10,000 banned /32 + 1,000 banned /24, flood spread over them",
	"(c) random spoofed sources (10.202.0.0/16), nothing banned: the meter only",
}

// caseBans are the bans of a case: (a) 10.100.0.1; (b) 10.100.0.0 up to
// 10.100.39.15 as /32s and 10.160.0.0/24 up to 10.163.249.0/24; (c) none.
func caseBans(c int) []netip.Prefix {
	switch c {
	case caseOne:
		return []netip.Prefix{netip.MustParsePrefix("10.100.0.1/32")}
	case caseMany:
		out := make([]netip.Prefix, 0, 11000)
		for i := range 10000 {
			out = append(out, netip.PrefixFrom(banAddr(i), 32))
		}
		for k := range 1000 {
			out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(160 + k/250), byte(k % 250), 0}), 24))
		}
		return out
	}
	return nil
}

// trafgenConf is the trafgen configuration of a case: SYNs to the victim's
// port, random source ports and sequence numbers, sources drawn as the
// case says (trafgen cycles through the packets of a configuration).
func trafgenConf(c int, mac string) string {
	pkt := func(src string) string {
		return fmt.Sprintf("{ eth(da=%s, type=0x0800), ipv4(%s, daddr=%s, ttl=64), tcp(sp=drnd(), dp=%d, seq=drnd(), syn) }\n",
			mac, src, dropVictimAddr, dropPort)
	}
	switch c {
	case caseOne:
		return pkt("saddr=10.100.0.1")
	case caseMany:
		// Banned /32s 10.100.0.0-10.100.38.255 (all inside the 10,000),
		// and addresses inside the banned /24s 10.160-163.0-249.0/24.
		return pkt("saddr=10.100.0.0, saddr[2]=drnd(0, 38), saddr[3]=drnd()") +
			pkt("saddr=10.160.0.0, saddr[1]=drnd(160, 163), saddr[2]=drnd(0, 249), saddr[3]=drnd()")
	default:
		return pkt("saddr=10.202.0.0, saddr[2:2]=drnd()")
	}
}

// dropCell is one path under one case.
type dropCell struct {
	// nsPerPkt holds one figure per round: victim CPU ns per received packet.
	nsPerPkt []float64
	// sysPerPkt holds floodCPU's system time per packet of each round:
	// the sender's own work (and whatever else ran there).
	sysPerPkt []float64
	// otherPerPkt holds replyCPU's softirq time per packet of each round:
	// the victim's replies as the attacker receives them, and what of the
	// victim's receive work did not stay on floodCPU.
	otherPerPkt []float64
	// pps holds the received packets per second of each round.
	pps []float64
	// connect holds the client's connect times over all rounds; failed
	// counts dials that did not connect within dialTimeout.
	connect []time.Duration
	failed  int
	// note replaces the figures when the path could not run.
	note string
}

// dropResult is the whole drop table.
type dropResult struct {
	senders  []string
	cells    [][numCases][numPaths]*dropCell
	baseline *dropCell
	seconds  int
	dials    int
}

const (
	dialTimeout = 3 * time.Second
	// clientSources is how many addresses the client dials from in turn
	// (10.204.1.1 upwards): a legitimate client population, each address
	// well under the SYN meter's rate.
	clientSources = 32
)

// dropLab is one attacker, victim and client namespace set.
type dropLab struct {
	victim, attacker, client *netns
	sender                   string
	vdev, adev               string
	mac                      string
	// amac and aindex are the attacker veth's address and index, for the
	// xdp sender's frames and redirect.
	amac   net.HardwareAddr
	aindex int
	ln     net.Listener
	wg     sync.WaitGroup
	// unapply, when set, removes what synban applied; its XDP pins live
	// in the host's bpffs and outlive the namespace unless flushed.
	unapply func() error
}

// newDropLab builds the namespaces of one measurement.
func (b *bench) newDropLab(ctx context.Context, n int, sender string) (*dropLab, error) {
	v, err := b.nss.add(ctx, "dropv")
	if err != nil {
		return nil, err
	}
	a, err := b.nss.add(ctx, "dropa")
	if err != nil {
		return nil, err
	}
	c, err := b.nss.add(ctx, "dropc")
	if err != nil {
		return nil, err
	}
	pid := os.Getpid() % 100000
	l := &dropLab{victim: v, attacker: a, client: c, sender: sender,
		vdev: fmt.Sprintf("sbdv%d%d", pid, n), adev: fmt.Sprintf("sbda%d%d", pid, n)}
	l.vdev, l.adev = l.vdev[:min(len(l.vdev), 15)], l.adev[:min(len(l.adev), 15)]
	cdev, vcdev := fmt.Sprintf("sbdc%d%d", pid, n), fmt.Sprintf("sbdw%d%d", pid, n)
	cdev, vcdev = cdev[:min(len(cdev), 15)], vcdev[:min(len(vcdev), 15)]
	for _, argv := range [][]string{
		{"ip", "link", "add", l.vdev, "netns", v.name, "type", "veth", "peer", "name", l.adev, "netns", a.name},
		{"ip", "link", "add", vcdev, "netns", v.name, "type", "veth", "peer", "name", cdev, "netns", c.name},
	} {
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
		}
	}
	for _, s := range []struct {
		ns   *netns
		argv []string
	}{
		{v, []string{"ip", "addr", "add", dropVictimAddr.String() + "/24", "dev", l.vdev}},
		{v, []string{"ip", "link", "set", l.vdev, "up"}},
		{v, []string{"ip", "addr", "add", dropVictimCAddr.String() + "/24", "dev", vcdev}},
		{v, []string{"ip", "link", "set", vcdev, "up"}},
		// SYN-ACKs to forged sources leave towards the attacker, as they
		// would leave towards a real uplink.
		{v, []string{"ip", "route", "add", "default", "via", dropAttackerAddr.String()}},
		{a, []string{"ip", "addr", "add", dropAttackerAddr.String() + "/24", "dev", l.adev}},
		{a, []string{"ip", "link", "set", l.adev, "up"}},
		{c, []string{"ip", "addr", "add", dropClientAddr.String() + "/24", "dev", cdev}},
		{c, []string{"sh", "-c", fmt.Sprintf("for i in $(seq 1 %d); do ip addr add 10.204.1.$i/32 dev %s; done", clientSources, cdev)}},
		{v, []string{"ip", "route", "add", "10.204.1.0/24", "via", dropClientAddr.String()}},
		{c, []string{"ip", "link", "set", cdev, "up"}},
		// The attacker drops what comes back (SYN-ACKs to forged sources)
		// before its own conntrack, on its own CPU (RPS below).
		{a, []string{"nft", "add table ip lab; add chain ip lab pre { type filter hook prerouting priority -300; policy drop; }"}},
		// An ordinary stateful server rule: conntrack is loaded in the victim.
		{v, []string{"nft", "add table inet server; add chain inet server in { type filter hook input priority 0; policy accept; }; " +
			"add rule inet server in ct state established,related accept"}},
		{v, []string{"sysctl", "-qw", "net.ipv4.tcp_syncookies=1"}},
	} {
		if _, err := s.ns.run(ctx, s.argv...); err != nil {
			return nil, err
		}
	}
	// The attacker's receive work (the victim's SYN-ACKs) goes to the
	// other CPU.
	if err := setRPS(ctx, a, l.adev, replyCPU); err != nil {
		return nil, err
	}
	vl, err := linkInfo(ctx, v, l.vdev)
	if err != nil {
		return nil, err
	}
	l.mac = vl.Address
	if sender == senderXDP {
		al, err := linkInfo(ctx, a, l.adev)
		if err != nil {
			return nil, err
		}
		if l.amac, err = net.ParseMAC(al.Address); err != nil {
			return nil, fmt.Errorf("attacker MAC address %q: %w", al.Address, err)
		}
		l.aindex = al.Index
		// The victim's veth needs NAPI to take ndo_xdp_xmit frames.
		if err := setGRO(v.path(), l.vdev, true); err != nil {
			return nil, err
		}
	}
	err = nsenter.Do(v.path(), func() error {
		var err error
		l.ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", dropPort))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("victim listener: %w", err)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			conn, err := l.ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	return l, nil
}

// link is what the drop lab reads of a link from `ip -j link show`.
type link struct {
	Index   int    `json:"ifindex"`
	Address string `json:"address"`
}

// linkInfo reads dev's index and address in ns.
func linkInfo(ctx context.Context, ns *netns, dev string) (link, error) {
	out, err := ns.run(ctx, "ip", "-j", "link", "show", "dev", dev)
	if err != nil {
		return link{}, err
	}
	var links []link
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 || links[0].Address == "" {
		return link{}, fmt.Errorf("%s in %s from %q: %v", dev, ns.name, out, err)
	}
	return links[0], nil
}

// close stops the listener.
func (l *dropLab) close() {
	if l.ln != nil {
		l.ln.Close()
		l.wg.Wait()
	}
}

// setRPS steers dev's receive processing in ns to cpu.
func setRPS(ctx context.Context, ns *netns, dev string, cpu int) error {
	// `ip netns exec` mounts the namespace's own /sys.
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.name, "sh", "-c",
		fmt.Sprintf("echo %x > /sys/class/net/%s/queues/rx-0/rps_cpus", 1<<cpu, dev))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("RPS of %s in %s: %w: %s", dev, ns.name, err, out)
	}
	return nil
}

// cpuTimes are a CPU's system and softirq times in ns from /proc/stat.
func cpuTimes(cpu int) (system, softirq float64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	name := "cpu" + strconv.Itoa(cpu)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 7 && f[0] == name {
			sys, err1 := strconv.ParseFloat(f[3], 64)
			soft, err2 := strconv.ParseFloat(f[7], 64)
			if err := errors.Join(err1, err2); err != nil {
				return 0, 0, fmt.Errorf("/proc/stat %s: %w", name, err)
			}
			return sys * 1e9 / userHZ, soft * 1e9 / userHZ, nil
		}
	}
	return 0, 0, fmt.Errorf("/proc/stat has no %s line", name)
}

// netRXSoftirqs are the NET_RX softirqs each CPU has run, from /proc/softirqs.
func netRXSoftirqs() ([]uint64, error) {
	data, err := os.ReadFile("/proc/softirqs")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "NET_RX:" {
			continue
		}
		out := make([]uint64, len(f)-1)
		for i, v := range f[1:] {
			if out[i], err = strconv.ParseUint(v, 10, 64); err != nil {
				return nil, fmt.Errorf("/proc/softirqs NET_RX: %w", err)
			}
		}
		if len(out) <= max(floodCPU, replyCPU) {
			return nil, fmt.Errorf("/proc/softirqs NET_RX has %d CPUs", len(out))
		}
		return out, nil
	}
	return nil, errors.New("/proc/softirqs has no NET_RX line")
}

// rxPackets is dev's received packet count in ns.
func rxPackets(ctx context.Context, ns *netns, dev string) (uint64, error) {
	out, err := ns.run(ctx, "ip", "-j", "-s", "link", "show", "dev", dev)
	if err != nil {
		return 0, err
	}
	var links []struct {
		Stats struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("statistics of %s from %q: %v", dev, out, err)
	}
	return links[0].Stats.RX.Packets, nil
}

// applyPath puts a path's drop in place in the victim for the case's bans.
// It returns a note when the path is not available in this build.
func (b *bench) applyPath(ctx context.Context, l *dropLab, path int, bans []netip.Prefix) (note string, err error) {
	switch path {
	case pathNone:
		return "", nil
	case pathSenderAlone:
		if l.sender != senderXDP {
			return "n/a: trafgen's frames always reach the victim", nil
		}
		return "", nil
	case pathXDPFilter:
		if len(bans) > 1 {
			return "n/a: xdp-filter matches single addresses only (the 1,000 /24s are 256,000 entries)", nil
		}
		if _, err := exec.LookPath("xdp-filter"); err != nil {
			return "n/a: xdp-filter not installed (apt-get install xdp-tools)", nil
		}
		// xdp-filter keeps its maps in bpffs: give it one in a private
		// mount namespace. The program keeps its maps once attached.
		script := fmt.Sprintf("mount -t bpf bpf /sys/fs/bpf && nsenter --net=%s xdp-filter load %s -m native -f ipv4", l.victim.path(), l.vdev)
		for _, p := range bans {
			script += fmt.Sprintf(" && nsenter --net=%s xdp-filter ip %s -m src", l.victim.path(), p.Addr())
		}
		if out, err := exec.CommandContext(ctx, "unshare", "-m", "sh", "-c", script).CombinedOutput(); err != nil {
			return "", fmt.Errorf("xdp-filter: %w: %s", err, out)
		}
		return "", nil
	}
	p, err := policy.Parse(fmt.Sprintf("drop-%d.toml", path), []byte(pathPolicy(path, l.vdev)))
	if err != nil {
		if path == pathXDP {
			b.log.Info("the policy of this build rejects [xdp]", "err", firstLine(err.Error()))
			return "not in this build (its policy has no [xdp] section)", nil
		}
		return "", err
	}
	dir, err := os.MkdirTemp(b.tmp, "drop-state-")
	if err != nil {
		return "", err
	}
	if err := writeStateBans(dir, bans); err != nil {
		return "", err
	}
	e := engine.New(nil, engine.Options{StateDir: dir})
	var out *engine.Outcome
	if _, err := engineIn(l.victim, func() error {
		var err error
		out, err = e.Run(ctx, p, time.Now())
		return err
	}); err != nil {
		return "", fmt.Errorf("synban run (%s): %w", pathNames[path], err)
	}
	l.unapply = func() error {
		_, err := engineIn(l.victim, func() error {
			_, err := e.Flush(context.WithoutCancel(ctx), p)
			return err
		})
		return err
	}
	if out.Decision.Restored != len(bans) || out.Result.Added != len(bans) {
		return "", fmt.Errorf("synban run (%s): restored %d, added %d, want %d", pathNames[path], out.Decision.Restored, out.Result.Added, len(bans))
	}
	if path == pathXDP {
		links, err := l.victim.run(ctx, "ip", "link", "show", "dev", l.vdev)
		if err != nil {
			return "", err
		}
		if !strings.Contains(links, "xdp") {
			return "not attached: synban ran but " + l.vdev + " has no XDP program", nil
		}
	}
	return "", nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// writeStateBans writes a state store in dir holding bans, active for an hour.
func writeStateBans(dir string, bans []netip.Prefix) error {
	st, err := state.Open(dir)
	if err != nil {
		return err
	}
	now := time.Now()
	return st.Update(func(s *state.State) error {
		s.Bans = make([]state.Ban, len(bans))
		for i, p := range bans {
			s.Bans[i] = state.Ban{Prefix: p, Since: now, Until: now.Add(time.Hour),
				Reason: "syn-flood: 120 syn_recv >= 50", Rule: "syn-flood", Backend: "nftables"}
		}
		return nil
	})
}

// dial connects from the client namespace to the victim until stop closes
// or n dials are done, one after the other, and records the connect times.
// The dialing thread is pinned to clientCPU: a veth processes what a thread
// sends in softirq on that thread's CPU, so the client's SYN, the victim's
// SYN-ACK and the handshake run there, away from floodCPU, which the sender
// holds with bottom halves disabled; the connect time is then the victim's
// service under the flood (shared locks, the listener, memory), not the
// sender's hold on the flood CPU (the "sender alone" row checks it).
func (l *dropLab) dial(n int, stop <-chan struct{}, cell *dropCell) error {
	return nsenter.Do(l.client.path(), func() error {
		unpin, err := pinThread(clientCPU)
		if err != nil {
			return fmt.Errorf("the client: %w", err)
		}
		defer func() { _ = unpin() }()
		addr := netip.AddrPortFrom(dropVictimCAddr, dropPort).String()
		for i := range n {
			select {
			case <-stop:
				return nil
			default:
			}
			start := time.Now()
			// Each dial from the next of clientSources addresses, so that no
			// client address goes over the SYN meter's rate.
			d := net.Dialer{Timeout: dialTimeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(10, 204, 1, byte(1+i%clientSources))}}
			conn, err := d.Dial("tcp4", addr)
			took := time.Since(start)
			if err != nil {
				cell.failed++
				continue
			}
			conn.Close()
			cell.connect = append(cell.connect, took)
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
}

// flood runs the lab's sender for the case from the attacker for at most
// -drop-seconds and measures the victim CPU's cost per received packet
// (for the sender alone, per frame sent) into cell, while the client dials.
func (b *bench) flood(ctx context.Context, l *dropLab, c, path int, cell *dropCell) error {
	conf := filepath.Join(b.tmp, fmt.Sprintf("trafgen-%d.cfg", c))
	if err := os.WriteFile(conf, []byte(trafgenConf(c, l.mac)), 0o600); err != nil {
		return err
	}
	var frame []byte
	if l.sender == senderXDP {
		vmac, err := net.ParseMAC(l.mac)
		if err != nil {
			return fmt.Errorf("victim MAC address %q: %w", l.mac, err)
		}
		frame = synFrame(l.amac, vmac)
	}
	secs := b.cfg.dropSeconds
	rx0, err := rxPackets(ctx, l.victim, l.vdev)
	if err != nil {
		return err
	}
	sys0, soft0, err := cpuTimes(floodCPU)
	if err != nil {
		return err
	}
	_, other0, err := cpuTimes(replyCPU)
	if err != nil {
		return err
	}
	netrx0, err := netRXSoftirqs()
	if err != nil {
		return err
	}
	start := time.Now()
	stop := make(chan struct{})
	dialErr := make(chan error, 1)
	go func() { dialErr <- l.dial(b.cfg.dropDials, stop, cell) }()
	deadline := start.Add(time.Duration(secs) * time.Second)
	var sent uint64
	var ferr error
	if l.sender == senderXDP {
		ifindex := l.aindex
		if path == pathSenderAlone {
			ifindex = 0
		}
		sent, ferr = xdpSend(l.attacker.path(), floodCPU, c, ifindex, frame, deadline, uint64(b.cfg.dropPackets))
	} else {
		ferr = b.trafgen(ctx, l, conf, deadline, rx0)
	}
	if ferr != nil {
		close(stop)
		<-dialErr
		return ferr
	}
	took := time.Since(start)
	sys1, soft1, err := cpuTimes(floodCPU)
	if err != nil {
		return err
	}
	_, other1, err := cpuTimes(replyCPU)
	if err != nil {
		return err
	}
	netrx1, err := netRXSoftirqs()
	if err != nil {
		return err
	}
	close(stop)
	if err := <-dialErr; err != nil {
		return err
	}
	rx1, err := rxPackets(ctx, l.victim, l.vdev)
	if err != nil {
		return err
	}
	pkts := float64(rx1 - rx0)
	if path == pathSenderAlone {
		// Nothing reaches the victim: per frame the sender ran.
		if rx1-rx0 > sent/100 {
			return fmt.Errorf("the sender alone: the victim received %d of %d frames", rx1-rx0, sent)
		}
		pkts = float64(sent)
	}
	if pkts < 1000 {
		return fmt.Errorf("the victim received %v packets: the flood did not arrive", pkts)
	}
	b.log.Info("flood", "sender", l.sender, "sent", sent, "received", rx1-rx0,
		"net_rx_softirqs_flood_cpu", netrx1[floodCPU]-netrx0[floodCPU], "net_rx_softirqs_reply_cpu", netrx1[replyCPU]-netrx0[replyCPU])
	cell.nsPerPkt = append(cell.nsPerPkt, (soft1-soft0)/pkts)
	cell.otherPerPkt = append(cell.otherPerPkt, (other1-other0)/pkts)
	cell.sysPerPkt = append(cell.sysPerPkt, (sys1-sys0)/pkts)
	cell.pps = append(cell.pps, pkts/took.Seconds())
	return nil
}

// trafgen floods from the attacker until deadline or until the victim has
// received -drop-packets since rx0. trafgen gives up when its TX ring is
// full of frames the receiving side still holds (veth with an XDP program
// queues them for its NAPI): it is then started again, within the bounds.
func (b *bench) trafgen(ctx context.Context, l *dropLab, conf string, deadline time.Time, rx0 uint64) error {
	for restarts := 0; ; restarts++ {
		left := time.Until(deadline)
		rx, err := rxPackets(ctx, l.victim, l.vdev)
		if err != nil {
			return err
		}
		budget := int64(b.cfg.dropPackets) - int64(rx-rx0)
		if left < 100*time.Millisecond || budget <= 0 {
			return nil
		}
		if restarts > 50 {
			return errors.New("trafgen: stopped early more than 50 times")
		}
		var out strings.Builder
		// `ip netns exec`: trafgen reads the device from the namespace's /sys.
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.attacker.name,
			"timeout", "-s", "INT", fmt.Sprintf("%.3f", left.Seconds()),
			"taskset", "-c", strconv.Itoa(floodCPU), "trafgen", "--dev", l.adev, "--conf", conf, "--cpus", "1", "-q",
			"-n", strconv.FormatInt(budget, 10))
		cmd.Stdout, cmd.Stderr = &out, &out
		err = cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			// Sent its whole budget.
		case errors.As(err, &ee) && ee.ExitCode() == 124:
			return nil // stopped at the deadline
		case strings.Contains(out.String(), "Flushing TX_RING failed"):
			b.log.Debug("trafgen stopped on a full TX ring; starting it again", "left", left)
		default:
			return fmt.Errorf("trafgen: %w: %s", err, out.String())
		}
	}
}

// dropScenario measures every path under every case, -drop-runs rounds.
func (b *bench) dropScenario(ctx context.Context) error {
	if n := numCPUs(); n < 2 {
		return fmt.Errorf("the drop scenario pins sender and victim to two CPUs; this machine has %d", n)
	}
	if _, err := exec.LookPath("trafgen"); err != nil && slices.Contains(b.cfg.dropSenders, senderTrafgen) {
		return errors.New("the drop scenario's trafgen sender needs trafgen (apt-get install netsniff-ng)")
	}
	r := &dropResult{senders: b.cfg.dropSenders, seconds: b.cfg.dropSeconds, dials: b.cfg.dropDials, baseline: &dropCell{}}
	r.cells = make([][numCases][numPaths]*dropCell, len(r.senders))
	for s := range r.senders {
		for c := range numCases {
			for p := range numPaths {
				r.cells[s][c][p] = &dropCell{}
			}
		}
	}
	seq := 0
	// The no-flood baseline of the client's connect time.
	l, err := b.newDropLab(ctx, seq, senderTrafgen)
	if err != nil {
		return err
	}
	err = l.dial(b.cfg.dropDials, nil, r.baseline)
	l.close()
	b.delDropLab(l)
	if err != nil {
		return err
	}
	for round := range b.cfg.dropRuns {
		for c := range numCases {
			bans := caseBans(c)
			for _, sp := range roundOrder(round, len(r.senders)) {
				s, p := sp[0], sp[1]
				sender := r.senders[s]
				cell := r.cells[s][c][p]
				if cell.note != "" {
					continue
				}
				seq++
				l, err := b.newDropLab(ctx, seq, sender)
				if err != nil {
					return err
				}
				note, err := b.applyPath(ctx, l, p, bans)
				if err == nil && note == "" {
					err = b.flood(ctx, l, c, p, cell)
				}
				l.close()
				b.delDropLab(l)
				if err != nil {
					return fmt.Errorf("%s sender, %s, %s: %w", sender, caseNames[c], pathNames[p], err)
				}
				cell.note = note
				if note == "" {
					b.log.Info("drop measured", "round", round+1, "sender", sender, "case", caseNames[c][:3], "path", pathNames[p],
						"ns_per_pkt", fmt.Sprintf("%.0f", cell.nsPerPkt[len(cell.nsPerPkt)-1]),
						"sys_ns_per_pkt", fmt.Sprintf("%.0f", cell.sysPerPkt[len(cell.sysPerPkt)-1]),
						"kpps", fmt.Sprintf("%.0f", cell.pps[len(cell.pps)-1]/1000))
				} else {
					b.log.Info("drop path skipped", "sender", sender, "path", pathNames[p], "why", note)
				}
			}
		}
	}
	b.drop = r
	return nil
}

// roundOrder is the order in which round measures each (sender, path)
// pair of a case: senders alternate path by path, and every other round
// runs the whole sequence backwards, so that neither a path nor a sender
// is always measured first (or last) while the machine's load drifts.
func roundOrder(round, senders int) [][2]int {
	var out [][2]int
	for p := range numPaths {
		for s := range senders {
			out = append(out, [2]int{s, p})
		}
	}
	if round%2 == 1 {
		slices.Reverse(out)
	}
	return out
}

// delDropLab flushes what synban applied (its XDP pins included) and
// deletes the lab's namespaces.
func (b *bench) delDropLab(l *dropLab) {
	if l.unapply != nil {
		if err := l.unapply(); err != nil {
			b.log.Error("cleanup: synban flush", "err", err)
		}
	}
	for _, ns := range []*netns{l.victim, l.attacker, l.client} {
		if err := b.nss.del(ns); err != nil {
			b.log.Error("cleanup", "err", err)
		}
	}
}

func numCPUs() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0
	}
	return set.Count()
}

// medianF is the median of xs (0 when empty).
func medianF(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// quantile is the q-quantile of ds (nearest rank), 0 when empty.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func fmtMs(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func fmtRatio(x, base float64) string {
	if x == 0 || base == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x/base)
}

// senderText says how each sender floods, for the drop section.
var senderText = map[string]string{
	senderXDP: "**xdp**: a small XDP program run by BPF_PROG_RUN in live-frame mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, bench/xdpsend.go) rewrites a template SYN in page-pool pages " +
		"(source address by the case, random source port and sequence number, both checksums) and redirects it into the attacker's veth, whose ndo_xdp_xmit puts it in the victim veth's ring as an xdp_frame: " +
		"the victim's XDP program runs on the frame in the veth's NAPI poll before any skb exists, and a frame it passes becomes an skb there, as a NIC driver builds it (the victim's veth has GRO on, which gives it NAPI without an XDP program, as a NIC has it by default). " +
		"The sender runs with bottom halves disabled (system time) and the victim's NAPI poll runs in the NET_RX softirq its flush raises on the same CPU. " +
		"The row \"sender alone\" runs the same program returning XDP_DROP (nothing reaches the victim): its ns/pkt is the softirq time the sender leaves on the CPU by itself, per frame.",
	senderTrafgen: "**trafgen**: netsniff-ng's trafgen over AF_PACKET builds an skb per packet on the sending side; veth hands that skb to the victim (netif_rx, or with an XDP program the veth's NAPI, where XDP runs on the existing skb: veth_xdp_rcv_skb). " +
		"The skb's allocation is trafgen's (system time), not the victim's.",
}

// target renders a measured ratio x/base against an upper limit.
func target(x, base, limit float64) string {
	if x == 0 || base == 0 {
		return "not measured"
	}
	verdict := "met"
	if x/base > limit {
		verdict = "not met"
	}
	return fmt.Sprintf("%s (%s)", fmtRatio(x, base), verdict)
}

// dropMarkdown renders the drop section.
func (b *bench) dropMarkdown() string {
	r := b.drop
	if r == nil {
		return ""
	}
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("## Drop cost: nanoseconds per dropped SYN\n\n")
	p("Produced by `%s` on %s (synban %s). ", b.cfg.commandLine, b.began.UTC().Format("2006-01-02 15:04 MST"), b.cfg.rev)
	for _, e := range b.env {
		if strings.HasPrefix(e, "CPU") || strings.HasPrefix(e, "Kernel") {
			p("%s. ", e)
		}
	}
	p("\n\nAn attacker namespace floods TCP SYNs (pinned to CPU %d, bounded by %d packets and %d s) over a veth into a victim namespace "+
		"with a listener on port %d (`tcp_syncookies = 1`) and conntrack loaded by one `ct state established,related accept` rule in a table of its own. "+
		"The victim's receive work for the flood runs on the sending CPU, in softirq, with either sender, "+
		"so **ns/pkt** is CPU %d's softirq time (`/proc/stat`) divided by the packets the victim's veth received: the victim's receive cost, without the sender's own "+
		"work, which is system time (**sender sys ns/pkt**: CPU %d's system time per packet, with whatever else ran there in system time). "+
		"**CPU %d softirq ns/pkt** is the other CPU's softirq time per packet: the attacker's receipt of the victim's replies (RPS), and whatever of the victim's receive work left CPU %d. On the drop paths every received packet is a dropped one. The victim's replies are processed on the other CPU (RPS on the attacker's veth). "+
		"Each path runs in fresh namespaces; synban's rules come from the engine's run (in-process, inside the victim namespace) "+
		"restoring the case's bans from its state store with the path's policy. Meanwhile a client namespace dials the listener (up to %d times, one after another 5 ms apart, from %d addresses in turn so that none exceeds the SYN meter; %s timeout), "+
		"its thread pinned to CPU %d: a veth processes what a thread sends in softirq on that thread's CPU, so the client's handshake runs there, and its connect time is the victim's service under the flood rather than the sender's hold on CPU %d (the \"sender alone\" row checks it; CPU %d softirq ns/pkt includes the client's few hundred handshakes). "+
		"Medians over %d round(s); within a round the senders alternate path by path and every other round runs backwards; the machine is shared and /proc/stat's softirq time is sampled at the tick, so read ratios more than absolutes.\n\n",
		floodCPU, b.cfg.dropPackets, r.seconds, dropPort, floodCPU, floodCPU, replyCPU, floodCPU, r.dials, clientSources, dialTimeout, clientCPU, floodCPU, replyCPU, b.cfg.dropRuns)
	p("Senders:\n\n")
	for _, s := range r.senders {
		p("- %s\n", senderText[s])
	}
	bl := r.baseline
	p("\nClient connect time without a flood: p50 %s, p99 %s (%d dials, %d failed).\n", fmtMs(quantile(bl.connect, .5)), fmtMs(quantile(bl.connect, .99)), len(bl.connect), bl.failed)
	base99 := quantile(bl.connect, .99)
	for c := range numCases {
		p("\n### %s\n\n", caseNames[c])
		p("| path | sender | received kpps | ns/pkt | × input | × ingress | × xdp-filter | sender sys ns/pkt | CPU %d softirq ns/pkt | connect p50 | connect p99 | p99 × no flood | p99 × sender alone | failed dials |\n", replyCPU)
		p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for path := range numPaths {
			for s, sender := range r.senders {
				cells := &r.cells[s][c]
				cell := cells[path]
				if cell.note != "" {
					p("| %s | %s | %s | | | | | | | | | | | |\n", pathNames[path], sender, cell.note)
					continue
				}
				in := medianF(cells[pathInput].nsPerPkt)
				ing := medianF(cells[pathIngress].nsPerPkt)
				xf := medianF(cells[pathXDPFilter].nsPerPkt)
				ns := medianF(cell.nsPerPkt)
				p99 := quantile(cell.connect, .99)
				p("| %s | %s | %.0f | %.0f | %s | %s | %s | %.0f | %.0f | %s | %s | %s | %s | %d |\n", pathNames[path], sender, medianF(cell.pps)/1000, ns,
					fmtRatio(ns, in), fmtRatio(ns, ing), fmtRatio(ns, xf), medianF(cell.sysPerPkt), medianF(cell.otherPerPkt),
					fmtMs(quantile(cell.connect, .5)), fmtMs(p99), fmtRatio(float64(p99), float64(base99)), fmtRatio(float64(p99), float64(aloneP99(cells))), cell.failed)
			}
		}
	}
	p("\n**p99 × sender alone** compares the client's p99 under each path with its p99 while the same sender runs and nothing reaches the victim (the case's \"sender alone\" row, xdp sender only): what the drop path adds to the client's wait, beyond what the flooding sender does to the machine by itself.\n")
	p("\nThe issue's targets, in ns per dropped packet, per sender:\n\n")
	for s, sender := range r.senders {
		ns := func(c, path int) float64 { return medianF(r.cells[s][c][path].nsPerPkt) }
		p("- %s: the default path (prerouting, before conntrack) at most 0.4× of input after conntrack: (a) %s, (b) %s; "+
			"synban's XDP path at most 0.5× of the nftables ingress path: (a) %s, (b) %s; and within 1.5× of xdp-filter: (a) %s.\n",
			sender, target(ns(caseOne, pathPrerouting), ns(caseOne, pathInput), 0.4), target(ns(caseMany, pathPrerouting), ns(caseMany, pathInput), 0.4),
			target(ns(caseOne, pathXDP), ns(caseOne, pathIngress), 0.5), target(ns(caseMany, pathXDP), ns(caseMany, pathIngress), 0.5),
			target(ns(caseOne, pathXDP), ns(caseOne, pathXDPFilter), 1.5))
	}
	p("\nRegenerate (as root, with nftables, iproute2, netsniff-ng and xdp-tools installed; two CPUs or more; Linux 5.18 or later for the xdp sender):\n\n```sh\n%s\n```\n", b.cfg.commandLine)
	return w.String()
}

// aloneP99 is the client's p99 connect time in the case's "sender alone"
// cell, 0 when there is none (trafgen).
func aloneP99(cells *[numPaths]*dropCell) time.Duration {
	a := cells[pathSenderAlone]
	if a == nil || a.note != "" {
		return 0
	}
	return quantile(a.connect, .99)
}

// Markers around a scenario's section in BENCHMARKS.md: `-NAME -out FILE`
// (drop, pass) replaces what lies between `<!-- bench -NAME: begin -->` and
// `<!-- bench -NAME: end -->` (or appends the section) and keeps the rest of
// the file; a full run keeps every such section of the file it replaces.
func sectionMarkers(name string) (begin, end string) {
	return "<!-- bench -" + name + ": begin -->", "<!-- bench -" + name + ": end -->"
}

// markedSections names the scenarios whose sections carry markers.
var markedSections = []string{"drop", "pass"}

// markedSection is the section name's markers hold in text, or "".
func markedSection(text, name string) string {
	begin, end := sectionMarkers(name)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i < 0 || j < i {
		return ""
	}
	return strings.TrimPrefix(text[i+len(begin):j], "\n")
}

// splice puts section between name's markers in text, or appends it with
// its markers.
func splice(text, name, section string) string {
	begin, end := sectionMarkers(name)
	block := begin + "\n" + section + end + "\n"
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i >= 0 && j > i {
		return text[:i] + block + strings.TrimPrefix(text[j+len(end):], "\n")
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	if text != "" {
		text += "\n"
	}
	return text + block
}
