package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/synban/synban/internal/lapitest"
	"github.com/synban/synban/internal/nsenter"
)

// The side-by-side with CrowdSec's cs-firewall-bouncer (-bouncer SIZES): for
// each size, one namespace holds a real CrowdSec LAPI (Debian's crowdsec,
// `-no-cs -no-capi`, private configuration and database), the bouncer
// (nftables mode, its own tables ip crowdsec / ip6 crowdsec6) and synban's
// pull (`[crowdsec] pull = true`). The decisions are imported into the LAPI
// with `cscli decisions import`; then the bouncer starts and the harness
// polls the kernel until its sets hold every decision (or stop growing for
// bouncerStall); then, with the bouncer still running, one `synban run`
// enforces the same decisions. Both see the same LAPI, the same decisions,
// in one run. Afterwards it checks that neither disturbed the other, that
// ranges are enforced as ranges, that elements carry the decision's
// remaining time, and that extending decisions in the LAPI refreshes them.

// bouncerStall ends the wait for the bouncer when its sets stopped growing
// for this long (it never reaches the total when it refuses some decisions).
const bouncerStall = 20 * time.Second

// bouncerRow is one size's results.
type bouncerRow struct {
	n               int
	v4, v6, r4, r6  int
	insert          time.Duration
	bouncer, synban toolRun
	// synbanAlone is synban's run before the bouncer started (then
	// flushed), to show what the bouncer running beside it costs.
	synbanAlone toolRun
	undisturbed string
	// lapiFloor is how long the LAPI takes to answer one full stream
	// pull (startup=true), body read and dropped.
	lapiFloor           time.Duration
	bouncerVer, lapiVer string
}

// toolRun is what one tool did with the decisions.
type toolRun struct {
	// enforce is the time from the start of the tool (the decisions
	// already in the LAPI) to the last decision in the kernel.
	enforce  time.Duration
	enforced int
	// exit is synban's time to exit (it writes its state store after the
	// kernel holds the bans); zero for the bouncer, a daemon.
	exit     time.Duration
	cpu      time.Duration
	rssKiB   int64
	ranges   string // how a /24 decision is enforced
	timeouts string // does the element carry the decision's remaining time
	refresh  string // is an extended decision's element extended
}

// decisionValue is the i-th decision of a size-n mix: 70% IPv4 addresses,
// 20% IPv6 addresses, 8% IPv4 /24 ranges, 2% IPv6 /48 ranges.
func decisionValue(i, n int) (scope, value string) {
	v4 := n * 70 / 100
	v6 := n * 20 / 100
	r4 := n * 8 / 100
	switch {
	case i < v4:
		return "ip", fmt.Sprintf("10.%d.%d.%d", byte(i>>16), byte(i>>8), byte(i))
	case i < v4+v6:
		j := i - v4
		return "ip", fmt.Sprintf("2001:db8:%x:%x::1", j>>16, j&0xffff)
	case i < v4+v6+r4:
		j := i - v4 - v6
		return "range", fmt.Sprintf("100.%d.%d.0/24", 64+(j>>8), byte(j))
	default:
		j := i - v4 - v6 - r4
		return "range", fmt.Sprintf("2001:db9:%x::/48", j)
	}
}

// decisionDuration spreads the decisions' lengths over 1h..4h, so each
// element's remaining time says which decision it came from.
func decisionDuration(i int) time.Duration {
	return time.Hour + time.Duration(i%180)*time.Minute
}

// bouncerBench runs the side-by-side for every size and returns the
// markdown section.
func bouncerBench(ctx context.Context, log *slog.Logger, synban, tmp string, sizes []int) (string, error) {
	for _, prog := range []string{"crowdsec", "cscli", "crowdsec-firewall-bouncer", "nft"} {
		if _, err := exec.LookPath(prog); err != nil {
			return "", fmt.Errorf("-bouncer needs %s: %w", prog, err)
		}
	}
	nss := &namespaces{}
	defer func() {
		for _, err := range nss.cleanup() {
			log.Error("cleanup", "err", err)
		}
	}()
	var rows []bouncerRow
	for _, n := range sizes {
		log.Info("bouncer side-by-side", "decisions", n)
		row, err := bouncerOne(ctx, log, nss, synban, filepath.Join(tmp, fmt.Sprintf("bouncer-%d", n)), n)
		if err != nil {
			return "", fmt.Errorf("%d decisions: %w", n, err)
		}
		rows = append(rows, row)
	}
	return bouncerMarkdown(rows), nil
}

// csLAPI is a LAPI started by the harness.
type csLAPI struct {
	ns     *netns
	dir    string
	config string
	cmd    *exec.Cmd
}

const lapiPort = 8080

func (l *csLAPI) url() string { return fmt.Sprintf("http://127.0.0.1:%d/", lapiPort) }

func (l *csLAPI) cscli(ctx context.Context, args ...string) (string, error) {
	return l.ns.run(ctx, append([]string{"cscli", "-c", l.config}, args...)...)
}

// startLAPI writes a private configuration in dir (lapitest.WriteConfig), registers cscli's machine and the two bouncers, and starts the
// LAPI in ns.
func startLAPI(ctx context.Context, ns *netns, dir string) (*csLAPI, []string, error) {
	config, err := lapitest.WriteConfig(dir, lapitest.ConfigOptions{
		ListenURI: fmt.Sprintf("127.0.0.1:%d", lapiPort),
		LogLevel:  "warning",
	})
	if err != nil {
		return nil, nil, err
	}
	l := &csLAPI{ns: ns, dir: dir, config: config}
	if _, err := l.cscli(ctx, "machines", "add", "cscli", "--password", "bench-cscli-password-0123456789", "--url", l.url(),
		"-f", filepath.Join(dir, "local_api_credentials.yaml")); err != nil {
		return nil, nil, err
	}
	keys := make([]string, 3)
	for i, name := range []string{"cs-firewall-bouncer", "synban", "floor"} {
		keys[i] = fmt.Sprintf("benchkey%s%d", strings.ReplaceAll(name, "-", ""), time.Now().UnixNano())
		if _, err := l.cscli(ctx, "bouncers", "add", name, "-k", keys[i]); err != nil {
			return nil, nil, err
		}
	}
	logf, err := os.Create(filepath.Join(dir, "crowdsec.log"))
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close()
	l.cmd = exec.Command("crowdsec", "-c", l.config, "-no-cs", "-no-capi")
	l.cmd.Stdout, l.cmd.Stderr = logf, logf
	if err := nsenter.Do(ns.path(), l.cmd.Start); err != nil {
		return nil, nil, fmt.Errorf("start crowdsec: %w", err)
	}
	client := nsHTTPClient(ns)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(l.url() + "health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return l, keys, nil
			}
		}
		if time.Now().After(deadline) {
			l.stop()
			return nil, nil, fmt.Errorf("the LAPI did not answer /health within 30 s: %v", err)
		}
		select {
		case <-ctx.Done():
			l.stop()
			return nil, nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *csLAPI) stop() {
	if l.cmd != nil && l.cmd.Process != nil {
		_ = l.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = l.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = l.cmd.Process.Kill()
			<-done
		}
	}
}

// streamFloor times one GET /v1/decisions/stream?startup=true with key,
// the body read to the end.
func streamFloor(ctx context.Context, ns *netns, url, key string) (time.Duration, error) {
	client := nsHTTPClient(ns)
	client.Timeout = 10 * time.Minute
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"v1/decisions/stream?startup=true", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Api-Key", key)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("LAPI stream: %w", err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("LAPI stream: HTTP %d, %d bytes: %v", resp.StatusCode, n, err)
	}
	return time.Since(start), nil
}

// nsHTTPClient dials inside ns (IP literals only).
func nsHTTPClient(ns *netns) *http.Client {
	d := &net.Dialer{Timeout: 2 * time.Second}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := nsenter.Do(ns.path(), func() error {
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// synbanBouncerPolicy is synban's policy for the side-by-side: pull only,
// the ban sets big enough, prerouting.
const synbanBouncerPolicy = `backend = "nftables"

[ban]
max_entries = %[1]d

[nftables]
hooks = ["prerouting"]

[crowdsec]
enabled = true
lapi_url = %[2]q
bouncer_key_file = %[3]q
push = false
pull = true
max_pulled = %[4]d
timeout = "5m"
`

func bouncerOne(ctx context.Context, log *slog.Logger, nss *namespaces, synban, dir string, n int) (bouncerRow, error) {
	row := bouncerRow{n: n, v4: n * 70 / 100, v6: n * 20 / 100, r4: n * 8 / 100}
	row.r6 = n - row.v4 - row.v6 - row.r4
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return row, err
	}
	ns, err := nss.add(ctx, "cs")
	if err != nil {
		return row, err
	}
	defer func() { _ = nss.del(ns) }()
	lapi, keys, err := startLAPI(ctx, ns, filepath.Join(dir, "lapi"))
	if err != nil {
		return row, err
	}
	bouncerKey, synbanKey := keys[0], keys[1]
	defer lapi.stop()
	row.bouncerVer = pkgVersion(ctx, "crowdsec-firewall-bouncer")
	row.lapiVer = pkgVersion(ctx, "crowdsec")

	// The decisions, imported with cscli: one call per scope (cscli 1.4.6
	// takes the scope from --scope, not from the file's column).
	var ips, ranges strings.Builder
	ips.WriteString("duration,value,reason\n")
	ranges.WriteString("duration,value,reason\n")
	for i := range n {
		scope, value := decisionValue(i, n)
		w := &ips
		if scope == "range" {
			w = &ranges
		}
		fmt.Fprintf(w, "%s,%s,bench\n", decisionDuration(i), value)
	}
	start := time.Now()
	for _, imp := range []struct {
		scope string
		text  *strings.Builder
	}{{"Ip", &ips}, {"Range", &ranges}} { // spelled as the LAPI's stream filter matches them
		file := filepath.Join(dir, "decisions-"+strings.ToLower(imp.scope)+".csv")
		if err := os.WriteFile(file, []byte(imp.text.String()), 0o600); err != nil {
			return row, err
		}
		if out, err := lapi.cscli(ctx, "decisions", "import", "-i", file, "--type", "ban", "--scope", imp.scope); err != nil {
			return row, fmt.Errorf("cscli decisions import: %w: %s", err, out)
		}
	}
	row.insert = time.Since(start)
	imported := time.Now()
	log.Info("decisions imported", "n", n, "took", row.insert.Round(time.Millisecond))

	// The floor: the LAPI's own answer to a full stream pull (what both
	// tools wait for before they can enforce anything), read and dropped.
	if row.lapiFloor, err = streamFloor(ctx, ns, lapi.url(), keys[2]); err != nil {
		return row, err
	}
	log.Info("LAPI answer", "took", row.lapiFloor.Round(time.Millisecond))

	// synban alone first, then flushed: its sets empty, the LAPI as it was.
	keyFile := filepath.Join(dir, "synban-key")
	if err := os.WriteFile(keyFile, []byte(synbanKey+"\n"), 0o600); err != nil {
		return row, err
	}
	pol := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(pol, []byte(fmt.Sprintf(synbanBouncerPolicy, max(65536, n), lapi.url(), keyFile, n)), 0o600); err != nil {
		return row, err
	}
	{
		aloneDir := filepath.Join(dir, "alone")
		enforce, wall, cpu, rss, err := timedSynban(ctx, ns, synban, dir, n, "run", "-c", pol, "--state-dir", aloneDir)
		if err != nil {
			return row, err
		}
		row.synbanAlone = toolRun{enforce: enforce, exit: wall, cpu: cpu, rssKiB: rss, enforced: countElems(ctx, ns, "inet", "synban")}
		if _, _, _, _, err := timedSynban(ctx, ns, synban, dir, 0, "flush", "-c", pol, "--state-dir", aloneDir); err != nil {
			return row, err
		}
		log.Info("synban alone", "enforced", row.synbanAlone.enforced, "of", n, "took", enforce.Round(time.Millisecond), "exit", wall.Round(time.Millisecond))
	}

	// The bouncer, with synban's table gone.
	cfg := filepath.Join(dir, "bouncer.yaml")
	if err := os.WriteFile(cfg, []byte(lapitest.FirewallBouncerConfig(dir, lapi.url(), bouncerKey)), 0o600); err != nil {
		return row, err
	}
	blog, err := os.Create(filepath.Join(dir, "bouncer.out"))
	if err != nil {
		return row, err
	}
	defer blog.Close()
	bcmd := exec.Command("crowdsec-firewall-bouncer", "-c", cfg)
	bcmd.Stdout, bcmd.Stderr = blog, blog
	start = time.Now()
	if err := nsenter.Do(ns.path(), bcmd.Start); err != nil {
		return row, fmt.Errorf("start crowdsec-firewall-bouncer: %w", err)
	}
	bdone := make(chan struct{})
	go func() { _ = bcmd.Wait(); close(bdone) }()
	defer func() {
		_ = bcmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-bdone:
		case <-time.After(15 * time.Second):
			_ = bcmd.Process.Kill()
			<-bdone
		}
	}()
	deadline := start.Add(time.Duration(n/1000+60) * 3 * time.Second) // bounded even if it never finishes
	last, lastChange := -1, time.Now()
	for {
		select {
		case <-bdone:
			return row, fmt.Errorf("crowdsec-firewall-bouncer exited; see %s", blog.Name())
		case <-ctx.Done():
			return row, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		c := countElems(ctx, ns, "ip", "crowdsec") + countElems(ctx, ns, "ip6", "crowdsec6")
		now := time.Now()
		if c != last {
			last, lastChange = c, now
			row.bouncer.enforce, row.bouncer.enforced = now.Sub(start), c
			row.bouncer.cpu, row.bouncer.rssKiB = procUsage(bcmd.Process.Pid)
		}
		if c >= n || now.Sub(lastChange) > bouncerStall || now.After(deadline) {
			break
		}
	}
	log.Info("bouncer", "enforced", row.bouncer.enforced, "of", n, "took", row.bouncer.enforce.Round(time.Millisecond))

	// synban, with the bouncer running beside it.
	bouncerBefore := tableText(ctx, ns)
	stateDir := filepath.Join(dir, "state")
	enforce, wall, cpu, rss, err := timedSynban(ctx, ns, synban, dir, n, "run", "--log-level", "info", "-c", pol, "--state-dir", stateDir)
	if err != nil {
		return row, err
	}
	row.synban.enforce, row.synban.exit, row.synban.cpu, row.synban.rssKiB = enforce, wall, cpu, rss
	row.synban.enforced = countElems(ctx, ns, "inet", "synban")
	log.Info("synban", "enforced", row.synban.enforced, "of", n, "took", enforce.Round(time.Millisecond), "exit", wall.Round(time.Millisecond))
	if b, err := os.ReadFile(filepath.Join(dir, "synban.log")); err == nil {
		if row.synban.enforced != n {
			log.Warn("synban enforced fewer than all decisions", "log", string(b[:min(len(b), 3000)]))
		} else {
			log.Debug("synban's log", "log", string(b))
		}
	}

	// Neither disturbs the other: the bouncer's tables are as they were
	// across the synban run, and synban's sets hold after two more bouncer
	// polls.
	// (A bouncer still adding at its bound changes its own tables: then
	// only synban's side is compared.)
	var notes []string
	finished := row.bouncer.enforced >= n
	if after := tableText(ctx, ns); finished && after != bouncerBefore {
		notes = append(notes, "the bouncer's tables changed during the synban run")
	}
	time.Sleep(3 * time.Second)
	if c := countElems(ctx, ns, "inet", "synban"); c != row.synban.enforced {
		notes = append(notes, fmt.Sprintf("synban's sets went from %d to %d elements beside the bouncer", row.synban.enforced, c))
	}
	if c := countElems(ctx, ns, "ip", "crowdsec") + countElems(ctx, ns, "ip6", "crowdsec6"); finished && c != row.bouncer.enforced {
		notes = append(notes, fmt.Sprintf("the bouncer's sets went from %d to %d elements beside synban", row.bouncer.enforced, c))
	}
	switch {
	case len(notes) > 0:
		row.undisturbed = strings.Join(notes, "; ")
	case finished:
		row.undisturbed = "yes"
	default:
		row.undisturbed = "synban's sets: yes; the bouncer was still adding at its bound, so its tables were not compared"
	}

	// Ranges: an address inside the first IPv4 /24 decision, not its
	// network address; remaining time: a sample of IPv4 address decisions.
	_, firstRange := decisionValue(row.v4+row.v6, n)
	sample := []int{0, 1, 2, 97, 179}
	bouncerEls := append(tableElems(ctx, ns, "ip", "crowdsec"), tableElems(ctx, ns, "ip6", "crowdsec6")...)
	synbanEls := tableElems(ctx, ns, "inet", "synban")
	row.bouncer.ranges, row.synban.ranges = rangeVerdict(bouncerEls, firstRange), rangeVerdict(synbanEls, firstRange)
	row.bouncer.timeouts = timeoutVerdict(bouncerEls, sample, n, imported)
	row.synban.timeouts = timeoutVerdict(synbanEls, sample, n, imported)

	// Extend the sample to 20h in the LAPI, let the bouncer poll, run synban.
	var ext strings.Builder
	ext.WriteString("duration,value,reason\n")
	for _, i := range sample {
		_, v := decisionValue(i, n)
		fmt.Fprintf(&ext, "20h,%s,bench-extend\n", v)
	}
	extFile := filepath.Join(dir, "extend.csv")
	if err := os.WriteFile(extFile, []byte(ext.String()), 0o600); err != nil {
		return row, err
	}
	if out, err := lapi.cscli(ctx, "decisions", "import", "-i", extFile, "--type", "ban", "--scope", "Ip"); err != nil {
		return row, fmt.Errorf("cscli decisions import (extend): %w: %s", err, out)
	}
	time.Sleep(5 * time.Second) // five bouncer polls
	if _, _, _, _, err := timedSynban(ctx, ns, synban, dir, 0, "run", "-c", pol, "--state-dir", stateDir); err != nil {
		return row, err
	}
	bouncerEls = append(tableElems(ctx, ns, "ip", "crowdsec"), tableElems(ctx, ns, "ip6", "crowdsec6")...)
	row.bouncer.refresh = refreshVerdict(bouncerEls, sample, n)
	row.synban.refresh = refreshVerdict(tableElems(ctx, ns, "inet", "synban"), sample, n)
	return row, nil
}

// timedSynban runs synban in ns under GNU time (when installed) and returns
// when the kernel held want elements in synban's ban sets (polled every
// 0.5 s while it runs, as the bouncer's are; the exit time when want is 0
// or never reached), its wall time to exit, CPU time and peak RSS.
func timedSynban(ctx context.Context, ns *netns, synban, dir string, want int, args ...string) (enforce, wall, cpu time.Duration, rss int64, err error) {
	argv := append([]string{synban}, args...)
	usage := filepath.Join(dir, "usage")
	timed := false
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		argv = append([]string{"/usr/bin/time", "-f", "%M %U %S", "-o", usage}, argv...)
		timed = true
	}
	var errb strings.Builder
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stderr = &errb
	start := time.Now()
	if err := nsenter.Do(ns.path(), cmd.Start); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("start synban: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
poll:
	for {
		select {
		case werr = <-done:
			break poll
		case <-time.After(500 * time.Millisecond):
			if want > 0 && enforce == 0 && countElems(ctx, ns, "inet", "synban") >= want {
				enforce = time.Since(start)
			}
		}
	}
	wall = time.Since(start)
	if enforce == 0 {
		enforce = wall
	}
	if werr != nil {
		return 0, 0, 0, 0, fmt.Errorf("synban %s: %w: %s", strings.Join(args, " "), werr, errb.String())
	}
	_ = os.WriteFile(filepath.Join(dir, "synban.log"), []byte(errb.String()), 0o600)
	if !timed {
		return enforce, wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), maxRSS(cmd), nil
	}
	data, err := os.ReadFile(usage)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return 0, 0, 0, 0, fmt.Errorf("GNU time's output %q", data)
	}
	rss, _ = strconv.ParseInt(f[0], 10, 64)
	u, _ := strconv.ParseFloat(f[1], 64)
	sy, _ := strconv.ParseFloat(f[2], 64)
	return enforce, wall, time.Duration((u + sy) * float64(time.Second)), rss, nil
}

// procUsage is a running process's CPU time (utime+stime) and peak RSS
// (VmHWM) in KiB, from /proc.
func procUsage(pid int) (time.Duration, int64) {
	var cpu time.Duration
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(data)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 13 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				cpu = time.Duration(u+st) * time.Second / 100 // USER_HZ
			}
		}
	}
	var rss int64
	if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
				rss, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			}
		}
		f.Close()
	}
	return cpu, rss
}

// countElems counts the elements of every set of a table (0 when it does
// not exist), from `nft -j list table`.
func countElems(ctx context.Context, ns *netns, family, table string) int {
	out, err := ns.run(ctx, "nft", "-j", "list", "table", family, table)
	if err != nil {
		return 0
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Name string            `json:"name"`
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if json.Unmarshal([]byte(out), &doc) != nil {
		return 0
	}
	n := 0
	for _, o := range doc.Nftables {
		if o.Set != nil && (table != "synban" || strings.HasPrefix(o.Set.Name, "ban_")) {
			n += len(o.Set.Elem)
		}
	}
	return n
}

// tableText is the bouncer's two tables as nft prints them, without the
// elements' remaining time (which moves with the clock).
func tableText(ctx context.Context, ns *netns) string {
	a, _ := ns.run(ctx, "nft", "list", "table", "ip", "crowdsec")
	b, _ := ns.run(ctx, "nft", "list", "table", "ip6", "crowdsec6")
	return expiresText.ReplaceAllString(a+b, "")
}

var expiresText = regexp.MustCompile(` expires [0-9hmsd.]+`)

// elem is one set element of a table: an address (/32, /128) or a range,
// and its remaining seconds (-1 without a timeout).
type elem struct {
	prefix  netip.Prefix
	expires int
}

// tableElems reads every element of table's sets with one `nft -j list
// table` (each nft command reads the whole ruleset into its cache anyway, so
// one listing is as cheap as one lookup).
func tableElems(ctx context.Context, ns *netns, family, table string) []elem {
	out, err := ns.run(ctx, "nft", "-j", "list", "table", family, table)
	if err != nil {
		return nil
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if json.Unmarshal([]byte(out), &doc) != nil {
		return nil
	}
	var els []elem
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, raw := range o.Set.Elem {
			if e, ok := parseElem(raw); ok {
				els = append(els, e)
			}
		}
	}
	return els
}

// parseElem reads one element of nft's JSON: "1.2.3.4", {"prefix": {"addr",
// "len"}}, {"range": [lo, hi]}, or any of these wrapped in {"elem": {"val",
// "timeout", "expires"}}.
func parseElem(raw json.RawMessage) (elem, bool) {
	e := elem{expires: -1}
	var wrapped struct {
		Elem *struct {
			Val     json.RawMessage `json:"val"`
			Expires *int            `json:"expires"`
		} `json:"elem"`
	}
	if json.Unmarshal(raw, &wrapped) == nil && wrapped.Elem != nil {
		raw = wrapped.Elem.Val
		if wrapped.Elem.Expires != nil {
			e.expires = *wrapped.Elem.Expires
		}
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return e, false
		}
		e.prefix = netip.PrefixFrom(a, a.BitLen())
		return e, true
	}
	var pfx struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
		Range []string `json:"range"`
	}
	if json.Unmarshal(raw, &pfx) != nil {
		return e, false
	}
	switch {
	case pfx.Prefix != nil:
		a, err := netip.ParseAddr(pfx.Prefix.Addr)
		if err != nil {
			return e, false
		}
		e.prefix = netip.PrefixFrom(a, pfx.Prefix.Len)
		return e, true
	case len(pfx.Range) == 2:
		lo, err1 := netip.ParseAddr(pfx.Range[0])
		hi, err2 := netip.ParseAddr(pfx.Range[1])
		if err1 != nil || err2 != nil {
			return e, false
		}
		// The smallest prefix from lo that covers hi.
		for bits := lo.BitLen(); bits >= 0; bits-- {
			p := netip.PrefixFrom(lo, bits).Masked()
			if p.Contains(hi) {
				e.prefix = p
				return e, true
			}
		}
	}
	return e, false
}

// match is the element that covers addr, if any.
func match(els []elem, addr netip.Addr) (elem, bool) {
	for _, e := range els {
		if e.prefix.Contains(addr) {
			return e, true
		}
	}
	return elem{}, false
}

func rangeVerdict(els []elem, prefix string) string {
	p := netip.MustParsePrefix(prefix)
	inside := p.Addr().Next().Next() // .2 of the /24
	if e, ok := match(els, inside); ok {
		if e.prefix.Bits() <= p.Bits() {
			return fmt.Sprintf("as ranges (%s matches %s)", inside, e.prefix)
		}
	}
	if _, ok := match(els, p.Addr()); ok {
		return fmt.Sprintf("cut to one address (%s only; %s passes)", p.Addr(), inside)
	}
	return "not enforced (" + prefix + " is in no set)"
}

func timeoutVerdict(els []elem, sample []int, n int, imported time.Time) string {
	ok := 0
	var worst time.Duration
	for _, i := range sample {
		_, v := decisionValue(i, n)
		e, found := match(els, netip.MustParseAddr(v))
		if !found || e.expires < 0 {
			continue
		}
		want := decisionDuration(i) - time.Since(imported)
		diff := (time.Duration(e.expires)*time.Second - want).Abs()
		worst = max(worst, diff)
		if diff <= 2*time.Minute {
			ok++
		}
	}
	return fmt.Sprintf("%d of %d sampled elements within 2 min of the decision's remaining time (worst off by %s)", ok, len(sample), worst.Round(time.Second))
}

func refreshVerdict(els []elem, sample []int, n int) string {
	ok := 0
	for _, i := range sample {
		_, v := decisionValue(i, n)
		if e, found := match(els, netip.MustParseAddr(v)); found && e.expires > int((19*time.Hour).Seconds()) {
			ok++
		}
	}
	return fmt.Sprintf("%d of %d extended to 20h", ok, len(sample))
}

// pkgVersion is a Debian package's installed version.
func pkgVersion(ctx context.Context, pkg string) string {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// bouncerMarkdown renders the side-by-side as a BENCHMARKS.md section.
func bouncerMarkdown(rows []bouncerRow) string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("## CrowdSec decisions: synban's pull beside cs-firewall-bouncer\n\n")
	if len(rows) == 0 {
		return w.String()
	}
	p("crowdsec-firewall-bouncer %s (nftables mode, `update_frequency: 1s`) and synban's `[crowdsec] pull = true` (hooks = [\"prerouting\"]) "+
		"on one host (one network namespace) with one CrowdSec LAPI (crowdsec %s, `-no-cs -no-capi`, sqlite). "+
		"Each size's decisions are imported with `cscli decisions import`, one call per scope (70%% IPv4 addresses, 20%% IPv6 addresses, 8%% IPv4 /24 ranges, "+
		"2%% IPv6 /48 ranges; lengths spread over 1h–4h). Then the bouncer starts and the harness polls the kernel (`nft -j list table`, every 0.5 s) "+
		"until its sets hold every decision or stop growing for %s; then, the bouncer still running, one `synban run` enforces the same decisions "+
		"(before the bouncer started, one `synban run` alone did the same, then `synban flush`). "+
		"Time: from the tool's start, the decisions already in the LAPI, to the last one in the kernel, "+
		"polled the same way for both (synban's apply is one transaction; its process exits later, after writing its state store: last column). "+
		"CPU: user+system of the bouncer's process until then, of synban's whole run; peak RSS: VmHWM (the bouncer) or GNU time's maximum resident set (synban).\n\n",
		rows[0].bouncerVer, rows[0].lapiVer, bouncerStall)
	p("| decisions | import | tool | enforced | time | ratio | CPU | ratio | peak RSS | process exit |\n")
	p("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	x := func(a, b time.Duration) string {
		if b <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f×", float64(a)/float64(b))
	}
	for _, r := range rows {
		for _, t := range []struct {
			name string
			run  toolRun
		}{{"cs-firewall-bouncer", r.bouncer}, {"synban, alone", r.synbanAlone}, {"synban, beside the running bouncer", r.synban}} {
			// A tool still short of n at its bound: its time is a lower
			// bound, and so is every ratio against it.
			bound, ratioBound := "", ""
			if r.bouncer.enforced < r.n {
				ratioBound = "> "
			}
			if t.run.enforced < r.n {
				bound = "> "
			}
			exit := "— (daemon)"
			if t.run.exit > 0 {
				exit = fmtDur(t.run.exit)
			}
			p("| %d | %s | %s | %d | %s%s | %s%s | %s%s | %s%s | %s | %s |\n", r.n, fmtDur(r.insert), t.name, t.run.enforced,
				bound, fmtDur(t.run.enforce), ratioBound, x(r.bouncer.enforce, t.run.enforce),
				bound, fmtDur(t.run.cpu), ratioBound, x(r.bouncer.cpu, t.run.cpu), fmtKiB(t.run.rssKiB), exit)
		}
	}
	p("\nRatios: the bouncer's figure over the row's (the bouncer's row is 1.0×). \"> \": the bouncer had not enforced every decision when its wait ended "+
		"(bounded at 3 s per 1,000 decisions plus 3 min, or %s without growth): its time and CPU are lower bounds, and so are the ratios.\n\n", bouncerStall)
	p("Both wait for the LAPI's answer to a full pull before they can enforce anything. Timed on its own (one `GET /v1/decisions/stream?startup=true`, body read and dropped, before either tool ran): ")
	for i, r := range rows {
		if i > 0 {
			p("; ")
		}
		p("%s at %d decisions", fmtDur(r.lapiFloor), r.n)
	}
	p(". Time after that answer (the tool's time minus it): ")
	for i, r := range rows {
		if i > 0 {
			p("; ")
		}
		p("at %d, the bouncer %s, synban alone %s", r.n, fmtDur(r.bouncer.enforce-r.lapiFloor), fmtDur(r.synbanAlone.enforce-r.lapiFloor))
	}
	p(".\n")
	p("\nCorrectness, per size:\n\n")
	p("| decisions | tool | /24 decision | remaining time | extended in the LAPI to 20h | the other undisturbed |\n|---:|---|---|---|---|---|\n")
	for _, r := range rows {
		p("| %d | bouncer | %s | %s | %s | %s |\n", r.n, r.bouncer.ranges, r.bouncer.timeouts, r.bouncer.refresh, r.undisturbed)
		p("| %d | synban | %s | %s | %s | %s |\n", r.n, r.synban.ranges, r.synban.timeouts, r.synban.refresh, r.undisturbed)
	}
	return w.String()
}

// runBouncer is `bench -bouncer SIZES`: only the side-by-side, printed, and
// with -out spliced into that file in place of its previous section of the
// same title (or appended), leaving the other sections as they were.
func runBouncer(ctx context.Context, cfg *config, sizesFlag string, stdout, stderr io.Writer) int {
	sizes, err := parseSizes(sizesFlag)
	if err != nil || len(sizes) == 0 {
		fmt.Fprintln(stderr, "bench: -bouncer: want sizes such as 10000,50000,100000:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	tmp, err := os.MkdirTemp("", "synban-bench-bouncer-")
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	synban := cfg.synban
	if synban == "" {
		synban = filepath.Join(tmp, "synban")
		if out, err := execCommand(ctx, "go", "build", "-o", synban, "./cmd/synban").CombinedOutput(); err != nil {
			fmt.Fprintf(stderr, "bench: go build ./cmd/synban: %v: %s\n", err, out)
			return 1
		}
	}
	began := time.Now()
	section, err := bouncerBench(ctx, log, synban, tmp, sizes)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	section += fmt.Sprintf("\nProduced by `%s` on %s (%s, synban %s); the whole run took %s.\n",
		cfg.commandLine, began.UTC().Format("2006-01-02 15:04 MST"), strings.Join(describeMachine(ctx)[:3], "; "), cfg.rev,
		time.Since(began).Round(time.Second))
	fmt.Fprint(stdout, section)
	if cfg.out != "" {
		if err := spliceSection(cfg.out, section); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		log.Info("wrote", "file", cfg.out)
	}
	return 0
}

// spliceSection replaces the section of file whose first line is section's
// (up to the next "## " heading) with section, or appends it.
func spliceSection(file, section string) error {
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	text := string(data)
	title, _, _ := strings.Cut(section, "\n")
	if i := strings.Index(text, title+"\n"); i >= 0 {
		rest := text[i+len(title):]
		end := len(text)
		if j := strings.Index(rest, "\n## "); j >= 0 {
			end = i + len(title) + j + 1
		}
		text = text[:i] + section + text[end:]
	} else {
		if text != "" && !strings.HasSuffix(text, "\n\n") {
			text = strings.TrimRight(text, "\n") + "\n\n"
		}
		text += section
	}
	return os.WriteFile(file, []byte(text), 0o644)
}
