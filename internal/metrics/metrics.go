// Package metrics writes what one synban run saw and did as a Prometheus
// text-exposition file for node_exporter's textfile collector. Each run
// builds its families afresh (no global state) and replaces the file
// atomically (internal/atomicfile), so the collector never reads half a
// file.
//
// The file is written by hand, not with client_golang: its package init
// builds a default registry with Go and process collectors and pulls in
// procfs and protobuf, a cost every cron start of synban paid for a file of
// some thirty samples (issue 24: `synban version` within 3 ms of package
// init). The format is the stable Prometheus text format 0.0.4 (HELP and
// TYPE lines, escaped label values, one sample per line), written byte for
// byte as client_golang's Gather and expfmt wrote it: the goldens in
// testdata pin that output, and the tests read every file back with
// Prometheus' own parser (expfmt, a test-only import; see metricstest).
package metrics

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/synban/synban/internal/atomicfile"
	"github.com/synban/synban/internal/trust"
)

// Metric names that other code (and tests) look up.
const (
	LastSuccess = "synban_last_success_timestamp_seconds"
	LastRun     = "synban_last_run_timestamp_seconds"
	Success     = "synban_last_run_success"
	Duration    = "synban_run_duration_seconds"
	Samples     = "synban_samples_taken"
	Sources     = "synban_sources_seen"
	Verdicts    = "synban_verdicts"
	Bans        = "synban_bans"
	BansAdded   = "synban_bans_added"
	BansExpired = "synban_bans_expired"
	Flood       = "synban_flood"
	HalfOpen    = "synban_half_open_entries"
	HalfOpenSrc = "synban_half_open_sources"
	CookiesSent = "synban_syncookies_sent"
	CookiesRecv = "synban_syncookies_recv"
	DropPackets = "synban_dropped_packets_total"
	DropBytes   = "synban_dropped_bytes_total"
	SysctlSet   = "synban_sysctl_changes"

	CrowdSecUp     = "synban_crowdsec_up"
	CrowdSecPulled = "synban_crowdsec_pulled_bans"
	CrowdSecPushed = "synban_crowdsec_pushed_bans"

	UpstreamUp            = "synban_upstream_up"
	UpstreamAnnouncements = "synban_upstream_announcements"
	UpstreamRefused       = "synban_upstream_refused"
	UpstreamEstablished   = "synban_upstream_neighbors_established"
	UpstreamUplinkBps     = "synban_upstream_uplink_bps"

	XDPUp       = "synban_xdp_up"
	XDPAttached = "synban_xdp_attached"
	XDPEntries  = "synban_xdp_entries"
	XDPDropped  = "synban_xdp_dropped_packets_total"
)

// MaxXDPDrops bounds the entries synban_xdp_dropped_packets_total has a
// sample for: the busiest ones (a ban set of 65,536 entries would be as
// many series).
const MaxXDPDrops = 100

// Ban is one active ban, as counted in synban_bans.
type Ban struct {
	// Backend applied it ("nftables", "iptables", "route").
	Backend string
	// Reason is the detection rule's name, "manual", the origin of a ban
	// pulled from CrowdSec ("crowdsec:cscli"), or "restored" when unknown.
	Reason string
	// Count is how many bans this is (0 counts as 1).
	Count int
}

// FloodClass is a run's flood classification, in plain values.
type FloodClass struct {
	// Kind is the kind found ("none", "real", "prefix", "spoofed").
	Kind string
	// Kinds lists every kind there is, in a fixed order: each gets a
	// synban_flood sample, 1 for Kind and 0 for the others.
	Kinds []string
	// HalfOpenEntries and HalfOpenSources count half-open entries and their
	// distinct sources in the fullest sample.
	HalfOpenEntries, HalfOpenSources int
	// CookiesSent and CookiesRecv are the SYN cookie counters' change over
	// the window.
	CookiesSent, CookiesRecv int64
}

// Counter is one of the backend's drop counters.
type Counter struct {
	// Chain and Rule name the rule, e.g. "input" and "ban_v4".
	Chain, Rule    string
	Packets, Bytes uint64
}

// Run is what one run saw and did. A failed run (Err set) writes only the
// run-level metrics; the last success time is then carried over from the
// file being replaced.
type Run struct {
	// Start is when the run began; Elapsed how long it took.
	Start   time.Time
	Elapsed time.Duration
	// Err is the run's error; nil for a successful run.
	Err error
	// Backend is the firewall backend used.
	Backend string
	// Samples is the number of samples taken; Sources the distinct sources
	// seen in them.
	Samples, Sources int
	// Verdicts is the number of offenders decided this run; Added and
	// Expired count bans newly added and expired.
	Verdicts, Added, Expired int
	// Flood is the window's flood classification.
	Flood FloodClass
	// Bans are the active bans after the run.
	Bans []Ban
	// Drops are the backend's drop counters.
	Drops []Counter
	// SysctlChanges counts kernel settings changed this run.
	SysctlChanges int
	// CrowdSec is the run's exchange with a CrowdSec LAPI; nil when the
	// policy has none.
	CrowdSec *CrowdSec
	// Upstream is what the run decided for the upstream routers; nil when
	// the policy's [upstream] is off.
	Upstream *Upstream
	// XDP is the XDP fast path after the run; nil when [xdp] is off.
	XDP *XDP
}

// XDP is the XDP fast path's state after a run.
type XDP struct {
	// Up is false when the program is not on every interface asked for.
	Up bool
	// Attached names the interfaces the program is on.
	Attached []string
	// Entries counts the bans in the maps.
	Entries int
	// Drops are the entries' drop counters; the MaxXDPDrops busiest get a
	// sample.
	Drops []XDPDrop
}

// XDPDrop is one XDP map entry's drop counter.
type XDPDrop struct {
	// Prefix is the banned prefix, e.g. "192.0.2.0/24".
	Prefix  string
	Packets uint64
}

// Upstream is what a run decided for the upstream routers over BGP.
type Upstream struct {
	// Up is false when measuring the uplink or handing the decision to
	// the speaker failed this run.
	Up bool
	// Announcements counts the announcements handed to the speaker, by
	// kind (flowspec, rtbh; every kind present, 0 included).
	Announcements map[string]int
	// Refused counts the announcements the safety checks refused.
	Refused int
	// Established counts the speaker's established BGP sessions.
	Established int
	// UplinkBps is the uplink's measured inbound rate in bits per second.
	UplinkBps float64
}

// CrowdSec is what a run exchanged with a CrowdSec LAPI.
type CrowdSec struct {
	// Up is false when a call to the LAPI failed this run.
	Up bool
	// Pulled counts the pulled bans enforced; Pushed the bans pushed.
	Pulled, Pushed int
}

// Write replaces the file at path with r's metrics, atomically (a
// temporary file in the same directory renamed over it, never written
// through a symbolic link), mode 0644 so node_exporter can read it.
func Write(path string, r Run) error {
	text, err := Text(r, previousSuccess(path))
	if err != nil {
		return err
	}
	if err := atomicfile.WriteMode(filepath.Dir(path), filepath.Base(path), text, 0o644, false); err != nil {
		return fmt.Errorf("write metrics to %s: %w", path, err)
	}
	return nil
}

// Text returns r's metrics as a text-exposition file. lastSuccess is the
// previous success time, used when r failed (zero: none known).
func Text(r Run, lastSuccess time.Time) ([]byte, error) {
	t := newTextfile()
	ok := 0.0
	if r.Err == nil {
		ok = 1
		lastSuccess = r.Start.Add(r.Elapsed)
	}
	end := r.Start.Add(r.Elapsed)
	t.gauge(Success, "1 if the last synban run succeeded, else 0.", ok)
	t.gauge(LastRun, "When the last synban run ended, in seconds since the epoch.", unix(end))
	t.gauge(Duration, "How long the last synban run took.", r.Elapsed.Seconds())
	if !lastSuccess.IsZero() {
		t.gauge(LastSuccess, "When the last successful synban run ended, in seconds since the epoch.", unix(lastSuccess))
	}
	if r.Err == nil {
		addRun(t, r)
	}
	text, err := t.bytes()
	if err != nil {
		return nil, fmt.Errorf("build metrics: %w", err)
	}
	return text, nil
}

// addRun adds what only a successful run reports.
func addRun(t *textfile, r Run) {
	c := r.Flood
	t.gauge(Samples, "Connection-table samples taken in the last run.", float64(r.Samples))
	t.gauge(Sources, "Distinct remote addresses seen in the last run's samples.", float64(r.Sources))
	t.gauge(Verdicts, "Offending sources and prefixes decided in the last run.", float64(r.Verdicts))
	t.gauge(BansAdded, "Bans newly added in the last run.", float64(r.Added))
	t.gauge(BansExpired, "Bans expired in the last run.", float64(r.Expired))
	t.gauge(HalfOpen, "Half-open (SYN_RECV) entries in the last run's fullest sample.", float64(c.HalfOpenEntries))
	t.gauge(HalfOpenSrc, "Distinct sources holding half-open entries in the last run's fullest sample.", float64(c.HalfOpenSources))
	t.gauge(CookiesSent, "SYN cookies sent over the last run's window (TcpExt SyncookiesSent).", float64(c.CookiesSent))
	t.gauge(CookiesRecv, "SYN cookies answered over the last run's window (TcpExt SyncookiesRecv).", float64(c.CookiesRecv))
	t.gauge(SysctlSet, "Kernel settings changed by the last run.", float64(r.SysctlChanges))

	flood := t.family(Flood, "The last run's flood classification: 1 for the kind found (none, real, prefix or spoofed), 0 for the others.", gauge, "kind")
	for _, k := range c.Kinds {
		v := 0.0
		if k == c.Kind {
			v = 1
		}
		flood.set(v, k)
	}

	bans := t.family(Bans, "Active bans after the last run, by backend and reason (the detection rule, manual or restored).", gauge, "backend", "reason")
	for _, b := range r.Bans {
		reason := b.Reason
		if reason == "" {
			reason = "restored"
		}
		bans.add(float64(max(b.Count, 1)), b.Backend, reason)
	}

	packets := t.family(DropPackets, "Packets dropped by synban's firewall rules, as the kernel counts them.", counter, "backend", "chain", "rule")
	bytes := t.family(DropBytes, "Bytes dropped by synban's firewall rules, as the kernel counts them.", counter, "backend", "chain", "rule")
	for _, d := range r.Drops {
		packets.count(d.Packets, r.Backend, d.Chain, d.Rule)
		bytes.count(d.Bytes, r.Backend, d.Chain, d.Rule)
	}
	if cs := r.CrowdSec; cs != nil {
		t.gauge(CrowdSecUp, "1 if every call of the last run to the CrowdSec LAPI succeeded, else 0.", one(cs.Up))
		t.gauge(CrowdSecPulled, "Bans pulled from the CrowdSec LAPI enforced after the last run.", float64(cs.Pulled))
		t.gauge(CrowdSecPushed, "Bans pushed to the CrowdSec LAPI in the last run.", float64(cs.Pushed))
	}
	if up := r.Upstream; up != nil {
		anns := t.family(UpstreamAnnouncements, "Announcements the last run handed the upstream BGP speaker, by kind (flowspec, rtbh).", gauge, "kind")
		for k, n := range up.Announcements {
			anns.set(float64(n), k)
		}
		t.gauge(UpstreamUp, "1 if the last run measured the uplink and handed its decision to the upstream speaker, else 0.", one(up.Up))
		t.gauge(UpstreamRefused, "Upstream announcements the last run's safety checks refused.", float64(up.Refused))
		t.gauge(UpstreamEstablished, "BGP sessions of the upstream speaker established, as its status file said at the last run.", float64(up.Established))
		t.gauge(UpstreamUplinkBps, "The uplink's inbound rate in bits per second measured by the last run.", up.UplinkBps)
	}
	if x := r.XDP; x != nil {
		addXDP(t, x)
	}
}

// addXDP adds the XDP fast path's metrics.
func addXDP(t *textfile, x *XDP) {
	t.gauge(XDPUp, "1 if the XDP drop program is on every interface [xdp] names, else 0.", one(x.Up))
	t.gauge(XDPEntries, "Bans in the XDP maps after the last run.", float64(x.Entries))
	attached := t.family(XDPAttached, "1 for each interface the XDP drop program is on.", gauge, "interface")
	for _, ifc := range x.Attached {
		attached.set(1, ifc)
	}
	dropped := t.family(XDPDropped, "Packets the XDP drop program dropped, per ban entry (the busiest entries only).", counter, "prefix")
	drops := slices.Clone(x.Drops)
	slices.SortStableFunc(drops, func(a, b XDPDrop) int { return cmp.Compare(b.Packets, a.Packets) })
	for _, d := range drops[:min(len(drops), MaxXDPDrops)] {
		dropped.count(d.Packets, d.Prefix)
	}
}

// one is 1 for true, 0 for false.
func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// previousMax bounds how much of the file being replaced previousSuccess
// reads: synban writes well under 64 KiB (MaxXDPDrops bounds the largest
// family), so a bigger file is not one of its own.
const previousMax = 1 << 20

// previousSuccess reads the last success time from the file a run is about
// to replace; zero when there is none or it cannot be read. Only a regular
// file is read, never through a symbolic link: a FIFO planted there must not
// hang a run. It scans for the one line Text writes for LastSuccess, the
// name, a space and the value, instead of parsing the whole exposition.
func previousSuccess(path string) time.Time {
	f, err := trust.OpenRegular(path, false)
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, previousMax))
	for sc.Scan() {
		value, ok := strings.CutPrefix(sc.Text(), LastSuccess+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		// Reject what cannot be a time after the epoch in nanoseconds.
		if err != nil || !(v > 0 && v < math.MaxInt64/1e9) {
			return time.Time{}
		}
		return time.Unix(0, int64(v*1e9))
	}
	return time.Time{}
}
