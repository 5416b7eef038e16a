// Package lapitest runs a real CrowdSec Local API (Debian's crowdsec package,
// LAPI only: `crowdsec -c CONFIG -no-cs -no-capi`) for tests, in a network
// namespace of its own, with a private configuration, database and data
// directory under t.TempDir(). Nothing is read from or written to
// /etc/crowdsec or /var/lib/crowdsec, and the central API is never contacted.
//
// A test attaches other namespaces (its "hosts") to the LAPI's namespace with
// veth pairs (Attach), so programs run inside those namespaces reach the LAPI
// by address; Go code in the test process reaches it through HTTPClient,
// whose connections are opened inside a host namespace.
package lapitest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/nsenter"
)

// Port is the TCP port the LAPI listens on inside its namespace, on every
// address ([::]:Port, IPv4 and IPv6).
const Port = 8080

// LAPI is one running (or stopped) CrowdSec Local API.
type LAPI struct {
	t testing.TB
	// NS is the LAPI's own network namespace.
	NS *netnstest.NS
	// Dir holds the configuration, database and log.
	Dir string
	// ConfigPath is the crowdsec/cscli configuration file (-c).
	ConfigPath string
	// MachineID and Password are a watcher (machine) login, for pushing
	// alerts and deleting decisions.
	MachineID, Password string
	// BouncerKey is a bouncer's API key, for the decision stream.
	BouncerKey string

	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	waitErr chan error
}

// linkSeq numbers the subnets of Attach across all LAPIs of the process, so
// two LAPIs in one test never hand out the same addresses.
var linkSeq atomic.Uint32

// Start creates a namespace, writes a private configuration, makes a machine
// and a bouncer with cscli, starts the LAPI and waits until /health answers.
// The LAPI is stopped and its namespace deleted when the test ends. It needs
// root, crowdsec and cscli (a missing one skips, or fails under CI=true).
func Start(t testing.TB) *LAPI {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "crowdsec")
	netnstest.RequireCommand(t, "cscli")
	l := &LAPI{
		t:          t,
		NS:         netnstest.New(t, "lapi"),
		Dir:        t.TempDir(),
		MachineID:  "synban-test",
		Password:   randomHex(t, 16),
		BouncerKey: randomHex(t, 16),
	}
	l.logPath = filepath.Join(l.Dir, "crowdsec.log")
	var err error
	l.ConfigPath, err = WriteConfig(l.Dir, ConfigOptions{
		ListenURI:  fmt.Sprintf("[::]:%d", Port),
		TrustedIPs: []string{"127.0.0.1", "::1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// cscli writes machines and bouncers straight into the database, so
	// credentials exist before the server starts. The "cscli" machine's file
	// is the client credential cscli itself uses for `decisions list`.
	l.mustCscli("machines", "add", "cscli", "--password", randomHex(t, 16),
		"--url", fmt.Sprintf("http://127.0.0.1:%d/", Port),
		"-f", filepath.Join(l.Dir, "local_api_credentials.yaml"))
	l.mustCscli("machines", "add", l.MachineID, "--password", l.Password,
		"-f", filepath.Join(l.Dir, "machine_credentials.yaml"))
	l.mustCscli("bouncers", "add", "synban-test", "-k", l.BouncerKey)
	l.start()
	t.Cleanup(l.Stop)
	return l
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

// Cscli runs cscli with the LAPI's configuration inside its namespace (the
// commands that go through the API, such as `decisions list`, reach it at
// 127.0.0.1) and returns its standard output; standard error is in the error.
func (l *LAPI) Cscli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := append([]string{"cscli", "-c", l.ConfigPath}, args...)
	cmd := l.NS.Command(ctx, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func (l *LAPI) mustCscli(args ...string) string {
	l.t.Helper()
	out, err := l.Cscli(args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

// AddBouncer registers one more bouncer and returns its API key (each bouncer
// has its own stream cursor in the LAPI).
func (l *LAPI) AddBouncer(name string) string {
	l.t.Helper()
	key := randomHex(l.t, 16)
	l.mustCscli("bouncers", "add", name, "-k", key)
	return key
}

// CscliDecision is one decision as `cscli decisions list -o json` shows it.
type CscliDecision struct {
	ID       int64  `json:"id"`
	Origin   string `json:"origin"`
	Scenario string `json:"scenario"`
	Scope    string `json:"scope"`
	Type     string `json:"type"`
	Value    string `json:"value"`
	Duration string `json:"duration"`
}

// Decisions lists the active decisions with `cscli decisions list -a -o json`
// (the LAPI's own view, independent of synban's client). -a is needed with
// crowdsec 1.4.6: without it cscli hides decisions whose origin is not one of
// its own (crowdsec, cscli), which includes origin "synban".
func (l *LAPI) Decisions() ([]CscliDecision, error) {
	out, err := l.Cscli("decisions", "list", "-a", "-o", "json")
	if err != nil {
		return nil, err
	}
	var alerts []struct {
		Decisions []CscliDecision `json:"decisions"`
	}
	if err := json.Unmarshal([]byte(out), &alerts); err != nil {
		return nil, fmt.Errorf("cscli decisions list: %w: %.200s", err, out)
	}
	var ds []CscliDecision
	for _, a := range alerts {
		ds = append(ds, a.Decisions...)
	}
	return ds, nil
}

func (l *LAPI) start() {
	l.t.Helper()
	logf, err := os.OpenFile(l.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := l.NS.Command(context.Background(), "crowdsec", "-c", l.ConfigPath, "-no-cs", "-no-capi")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		l.t.Fatalf("start crowdsec: %v", err)
	}
	logf.Close()
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	l.mu.Lock()
	l.cmd, l.waitErr = cmd, waitErr
	l.mu.Unlock()
	if err := l.waitHealthy(30 * time.Second); err != nil {
		l.Stop()
		l.t.Fatalf("crowdsec LAPI did not become healthy: %v\n%s", err, l.Log())
	}
}

// waitHealthy polls /health from inside the LAPI's namespace until it answers
// {"status":"up"}, the process exits, or the deadline passes.
func (l *LAPI) waitHealthy(timeout time.Duration) error {
	client := HTTPClient(l.NS)
	defer client.CloseIdleConnections()
	url := fmt.Sprintf("http://127.0.0.1:%d/health", Port)
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-l.waitErr:
			l.waitErr <- err
			return fmt.Errorf("crowdsec exited: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			var body struct {
				Status string `json:"status"`
			}
			derr := json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			cancel()
			if resp.StatusCode == http.StatusOK && derr == nil && body.Status == "up" {
				return nil
			}
			last = fmt.Errorf("health: HTTP %d status %q (%v)", resp.StatusCode, body.Status, derr)
		} else {
			cancel()
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no answer within %s: %v", timeout, last)
}

// Stop ends the LAPI (SIGTERM, then SIGKILL after 10 s) and waits for it. It
// is safe to call more than once; the test's cleanup calls it too.
func (l *LAPI) Stop() {
	l.mu.Lock()
	cmd, waitErr := l.cmd, l.waitErr
	l.cmd = nil
	l.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-waitErr:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-waitErr
	}
}

// Restart starts the LAPI again after Stop, on the same database and
// credentials, and waits until it is healthy.
func (l *LAPI) Restart() {
	l.t.Helper()
	l.Stop()
	l.start()
}

// Pause freezes the LAPI process (SIGSTOP): its socket still accepts
// connections in the kernel, but nothing answers — a hung server.
func (l *LAPI) Pause() {
	l.t.Helper()
	l.signal(syscall.SIGSTOP)
}

// Resume undoes Pause.
func (l *LAPI) Resume() {
	l.t.Helper()
	l.signal(syscall.SIGCONT)
}

func (l *LAPI) signal(sig syscall.Signal) {
	l.t.Helper()
	l.mu.Lock()
	cmd := l.cmd
	l.mu.Unlock()
	if cmd == nil {
		l.t.Fatal("LAPI is not running")
	}
	if err := cmd.Process.Signal(sig); err != nil {
		l.t.Fatalf("signal crowdsec: %v", err)
	}
}

// Log returns what the LAPI process printed so far.
func (l *LAPI) Log() string {
	b, _ := os.ReadFile(l.logPath)
	return string(b)
}

// Link is one veth pair between the LAPI's namespace and a host namespace.
type Link struct {
	// LAPI4, LAPI6 are the LAPI's addresses on this link; Host4, Host6
	// the host's.
	LAPI4, LAPI6, Host4, Host6 netip.Addr
	// URL4 and URL6 are the LAPI's base URLs over IPv4 and IPv6, with a
	// trailing slash.
	URL4, URL6 string
}

// Attach joins host to the LAPI's namespace with a veth pair on a subnet of
// its own (10.231.N.0/24 and fd00:231:N::/64) and returns the addresses and
// URLs. Several hosts may be attached to one LAPI.
func (l *LAPI) Attach(t testing.TB, host *netnstest.NS) Link {
	t.Helper()
	n := linkSeq.Add(1)
	if n > 250 {
		t.Fatal("lapitest: more than 250 links in one test process")
	}
	lk := Link{
		LAPI4: netip.MustParseAddr(fmt.Sprintf("10.231.%d.1", n)),
		Host4: netip.MustParseAddr(fmt.Sprintf("10.231.%d.2", n)),
		LAPI6: netip.MustParseAddr(fmt.Sprintf("fd00:231:%x::1", n)),
		Host6: netip.MustParseAddr(fmt.Sprintf("fd00:231:%x::2", n)),
	}
	netnstest.Link(t, l.NS, host,
		[]string{lk.LAPI4.String() + "/24", lk.LAPI6.String() + "/64"},
		[]string{lk.Host4.String() + "/24", lk.Host6.String() + "/64"})
	lk.URL4 = fmt.Sprintf("http://%s/", netip.AddrPortFrom(lk.LAPI4, Port))
	lk.URL6 = fmt.Sprintf("http://%s/", netip.AddrPortFrom(lk.LAPI6, Port))
	return lk
}

// HTTPClient returns an HTTP client whose connections are opened inside ns,
// for Go code in the test process (which itself stays in its own
// namespace). Dial only IP literals with it: the socket is made on a thread
// switched into ns, and name resolution would run elsewhere.
func HTTPClient(ns *netnstest.NS) *http.Client {
	path := ns.Path()
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := nsenter.Do(path, func() error {
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	return &http.Client{Transport: tr}
}
