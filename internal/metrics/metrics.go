// Package metrics writes what one synban run saw and did as a Prometheus
// text-exposition file for node_exporter's textfile collector. Each run
// builds a fresh registry (no global state) and replaces the file atomically
// with prometheus.WriteToTextfile, so the collector never reads half a file.
package metrics

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

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

// Write replaces the file at path with r's metrics.
func Write(path string, r Run) error {
	reg, err := Registry(r, previousSuccess(path))
	if err != nil {
		return err
	}
	if err := prometheus.WriteToTextfile(path, reg); err != nil {
		return fmt.Errorf("write metrics to %s: %w", path, err)
	}
	return nil
}

// Registry builds a fresh registry holding r's metrics. lastSuccess is the
// previous success time, used when r failed (zero: none known).
func Registry(r Run, lastSuccess time.Time) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, v float64) error {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		g.Set(v)
		return reg.Register(g)
	}
	ok := 0.0
	if r.Err == nil {
		ok = 1
		lastSuccess = r.Start.Add(r.Elapsed)
	}
	end := r.Start.Add(r.Elapsed)
	errs := []error{
		gauge(Success, "1 if the last synban run succeeded, else 0.", ok),
		gauge(LastRun, "When the last synban run ended, in seconds since the epoch.", unix(end)),
		gauge(Duration, "How long the last synban run took.", r.Elapsed.Seconds()),
	}
	if !lastSuccess.IsZero() {
		errs = append(errs, gauge(LastSuccess, "When the last successful synban run ended, in seconds since the epoch.", unix(lastSuccess)))
	}
	if r.Err != nil {
		return reg, errors.Join(errs...)
	}
	c := r.Flood
	errs = append(errs,
		gauge(Samples, "Connection-table samples taken in the last run.", float64(r.Samples)),
		gauge(Sources, "Distinct remote addresses seen in the last run's samples.", float64(r.Sources)),
		gauge(Verdicts, "Offending sources and prefixes decided in the last run.", float64(r.Verdicts)),
		gauge(BansAdded, "Bans newly added in the last run.", float64(r.Added)),
		gauge(BansExpired, "Bans expired in the last run.", float64(r.Expired)),
		gauge(HalfOpen, "Half-open (SYN_RECV) entries in the last run's fullest sample.", float64(c.HalfOpenEntries)),
		gauge(HalfOpenSrc, "Distinct sources holding half-open entries in the last run's fullest sample.", float64(c.HalfOpenSources)),
		gauge(CookiesSent, "SYN cookies sent over the last run's window (TcpExt SyncookiesSent).", float64(c.CookiesSent)),
		gauge(CookiesRecv, "SYN cookies answered over the last run's window (TcpExt SyncookiesRecv).", float64(c.CookiesRecv)),
		gauge(SysctlSet, "Kernel settings changed by the last run.", float64(r.SysctlChanges)),
	)

	flood := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: Flood,
		Help: "The last run's flood classification: 1 for the kind found (none, real, prefix or spoofed), 0 for the others."}, []string{"kind"})
	for _, k := range c.Kinds {
		v := 0.0
		if k == c.Kind {
			v = 1
		}
		flood.WithLabelValues(k).Set(v)
	}

	bans := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: Bans,
		Help: "Active bans after the last run, by backend and reason (the detection rule, manual or restored)."}, []string{"backend", "reason"})
	for _, b := range r.Bans {
		reason := b.Reason
		if reason == "" {
			reason = "restored"
		}
		bans.WithLabelValues(b.Backend, reason).Add(float64(max(b.Count, 1)))
	}

	packets := prometheus.NewCounterVec(prometheus.CounterOpts{Name: DropPackets,
		Help: "Packets dropped by synban's firewall rules, as the kernel counts them."}, []string{"backend", "chain", "rule"})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: DropBytes,
		Help: "Bytes dropped by synban's firewall rules, as the kernel counts them."}, []string{"backend", "chain", "rule"})
	for _, d := range r.Drops {
		packets.WithLabelValues(r.Backend, d.Chain, d.Rule).Add(float64(d.Packets))
		bytes.WithLabelValues(r.Backend, d.Chain, d.Rule).Add(float64(d.Bytes))
	}
	if cs := r.CrowdSec; cs != nil {
		up := 0.0
		if cs.Up {
			up = 1
		}
		errs = append(errs,
			gauge(CrowdSecUp, "1 if every call of the last run to the CrowdSec LAPI succeeded, else 0.", up),
			gauge(CrowdSecPulled, "Bans pulled from the CrowdSec LAPI enforced after the last run.", float64(cs.Pulled)),
			gauge(CrowdSecPushed, "Bans pushed to the CrowdSec LAPI in the last run.", float64(cs.Pushed)))
	}
	if up := r.Upstream; up != nil {
		ok := 0.0
		if up.Up {
			ok = 1
		}
		anns := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: UpstreamAnnouncements,
			Help: "Announcements the last run handed the upstream BGP speaker, by kind (flowspec, rtbh)."}, []string{"kind"})
		for k, n := range up.Announcements {
			anns.WithLabelValues(k).Set(float64(n))
		}
		errs = append(errs, reg.Register(anns),
			gauge(UpstreamUp, "1 if the last run measured the uplink and handed its decision to the upstream speaker, else 0.", ok),
			gauge(UpstreamRefused, "Upstream announcements the last run's safety checks refused.", float64(up.Refused)),
			gauge(UpstreamEstablished, "BGP sessions of the upstream speaker established, as its status file said at the last run.", float64(up.Established)),
			gauge(UpstreamUplinkBps, "The uplink's inbound rate in bits per second measured by the last run.", up.UplinkBps))
	}
	if x := r.XDP; x != nil {
		errs = append(errs, registerXDP(reg, x)...)
	}
	for _, col := range []prometheus.Collector{flood, bans, packets, bytes} {
		errs = append(errs, reg.Register(col))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("build metrics: %w", err)
	}
	return reg, nil
}

// registerXDP adds the XDP fast path's metrics to reg.
func registerXDP(reg *prometheus.Registry, x *XDP) []error {
	up := 0.0
	if x.Up {
		up = 1
	}
	upG := prometheus.NewGauge(prometheus.GaugeOpts{Name: XDPUp,
		Help: "1 if the XDP drop program is on every interface [xdp] names, else 0."})
	upG.Set(up)
	entries := prometheus.NewGauge(prometheus.GaugeOpts{Name: XDPEntries, Help: "Bans in the XDP maps after the last run."})
	entries.Set(float64(x.Entries))
	attached := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: XDPAttached,
		Help: "1 for each interface the XDP drop program is on."}, []string{"interface"})
	for _, ifc := range x.Attached {
		attached.WithLabelValues(ifc).Set(1)
	}
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: XDPDropped,
		Help: "Packets the XDP drop program dropped, per ban entry (the busiest entries only)."}, []string{"prefix"})
	drops := slices.Clone(x.Drops)
	slices.SortStableFunc(drops, func(a, b XDPDrop) int { return cmp.Compare(b.Packets, a.Packets) })
	for _, d := range drops[:min(len(drops), MaxXDPDrops)] {
		dropped.WithLabelValues(d.Prefix).Add(float64(d.Packets))
	}
	return []error{reg.Register(upG), reg.Register(entries), reg.Register(attached), reg.Register(dropped)}
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// previousSuccess reads the last success time from the file a run is about
// to replace; zero when there is none or it cannot be read. Only a regular
// file is read, never through a symbolic link: a FIFO planted there must not
// hang a run.
func previousSuccess(path string) time.Time {
	f, err := trust.OpenRegular(path, false)
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	fams, err := Parse(f)
	if err != nil {
		return time.Time{}
	}
	v, ok := Value(fams, LastSuccess, nil)
	if !ok || v <= 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(v*1e9))
}

// Parse reads a text-exposition file with Prometheus' own parser.
func Parse(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return fams, nil
}

// Value returns the value of the sample of family name whose labels include
// every pair in labels (nil: the first sample).
func Value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	mf, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if !matches(m, labels) {
			continue
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func matches(m *dto.Metric, labels map[string]string) bool {
	for k, want := range labels {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == want {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
