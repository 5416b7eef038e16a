package detect

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// WindowResult is what one sampling window read.
type WindowResult struct {
	// Samples holds one merged sample per round, oldest first.
	Samples []Sample
	// Start and End are the TcpExt counters read before the first and after
	// the last round; nil when no counters function was given.
	Start, End *TcpExt
	// Delta is End minus Start (zero without counters).
	Delta TcpExt
	// Elapsed is the time from the start snapshot to the end snapshot.
	Elapsed time.Duration
	// Began is when the window began, just before the start snapshot.
	Began time.Time
}

// Window takes count rounds of samples, interval apart (measured from the
// start of one round to the start of the next), reading every sampler in
// each round and merging their readings into one Sample: a flow seen by
// more than one sampler (the same local and remote address and port, as
// when conntrack and sock_diag both see a half-open connection) counts
// once, with the state the first sampler that saw it reported, so list the
// socket sampler before conntrack. counters, when not nil, is read before
// the first round and after the last; the end snapshot is also attached to
// the last sample. Cancelling ctx stops the window with ctx's error; a
// sampler's error ends it too.
func Window(ctx context.Context, samplers []Sampler, count int, interval time.Duration, counters func() (TcpExt, error)) (WindowResult, error) {
	if count < 1 {
		return WindowResult{}, fmt.Errorf("window: count %d, want at least 1", count)
	}
	if len(samplers) == 0 {
		return WindowResult{}, fmt.Errorf("window: no samplers")
	}
	var res WindowResult
	began := time.Now()
	res.Began = began
	if counters != nil {
		c, err := counters()
		if err != nil {
			return WindowResult{}, fmt.Errorf("window: counters at start: %w", err)
		}
		res.Start = &c
	}
	var timer *time.Timer
	next := time.Now()
	for i := 0; i < count; i++ {
		if i > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
					defer timer.Stop()
				} else {
					timer.Reset(d)
				}
				select {
				case <-ctx.Done():
					return WindowResult{}, fmt.Errorf("window: %w", ctx.Err())
				case <-timer.C:
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return WindowResult{}, fmt.Errorf("window: %w", err)
		}
		s, err := sampleRound(ctx, samplers)
		if err != nil {
			return WindowResult{}, fmt.Errorf("window: sample %d of %d: %w", i+1, count, err)
		}
		res.Samples = append(res.Samples, s)
	}
	if counters != nil {
		c, err := counters()
		if err != nil {
			return WindowResult{}, fmt.Errorf("window: counters at end: %w", err)
		}
		res.End = &c
		res.Delta = Delta(*res.Start, c)
		res.Samples[len(res.Samples)-1].Counters = res.End
	}
	res.Elapsed = time.Since(began)
	return res, nil
}

// sampleRound reads every sampler once and merges the readings.
func sampleRound(ctx context.Context, samplers []Sampler) (Sample, error) {
	var parts []Sample
	for _, sm := range samplers {
		s, err := sm.Sample(ctx)
		if err != nil {
			return Sample{}, fmt.Errorf("%s: %w", sm.Name(), err)
		}
		if s.Source == "" {
			s.Source = sm.Name()
		}
		parts = append(parts, s)
	}
	return MergeSamples(parts...), nil
}

// connKey identifies a flow by its two endpoints: addresses as 16 bytes
// (IPv4 as IPv4-mapped) and ports.
type connKey struct {
	local, remote [18]byte
}

// connKey4 identifies a flow between IPv4 endpoints (or their IPv4-mapped
// forms, which connKey does not tell apart from them either) in 12 bytes:
// a third of connKey, so a million flows hash faster and hold less.
type connKey4 [12]byte

// keyOf returns c's key: a connKey4 when both ends are IPv4, else a connKey.
func keyOf(c *Conn) (k4 connKey4, k connKey, is4 bool) {
	l, r := c.Local.Addr().Unmap(), c.Remote.Addr().Unmap()
	if l.Is4() && r.Is4() {
		a, b := l.As4(), r.As4()
		copy(k4[0:4], a[:])
		k4[4], k4[5] = byte(c.Local.Port()>>8), byte(c.Local.Port())
		copy(k4[6:10], b[:])
		k4[10], k4[11] = byte(c.Remote.Port()>>8), byte(c.Remote.Port())
		return k4, k, true
	}
	a := c.Local.Addr().As16()
	copy(k.local[:], a[:])
	k.local[16], k.local[17] = byte(c.Local.Port()>>8), byte(c.Local.Port())
	a = c.Remote.Addr().As16()
	copy(k.remote[:], a[:])
	k.remote[16], k.remote[17] = byte(c.Remote.Port()>>8), byte(c.Remote.Port())
	return k4, k, false
}

// MergeSamples merges readings of the same moment by different samplers
// into one Sample: Source joins their names with "+", Time is the earliest,
// Malformed and Errors add up, and a flow (same local and remote address
// and port) that an earlier reading holds is dropped from the later ones.
// The first reading's entries are kept as they are, not copied (a socket
// table lists each flow once); the later readings' other flows follow
// them, in Conns. A single reading is returned unchanged.
func MergeSamples(parts ...Sample) Sample {
	if len(parts) == 1 {
		return parts[0]
	}
	out := Sample{Table: parts[0].Table, Conns: parts[0].Conns}
	var names []string
	for _, p := range parts {
		names = append(names, p.Source)
		if out.Time.IsZero() || (!p.Time.IsZero() && p.Time.Before(out.Time)) {
			out.Time = p.Time
		}
		out.Malformed += p.Malformed
		for _, e := range p.Errors {
			if len(out.Errors) < 10 {
				out.Errors = append(out.Errors, p.Source+": "+e)
			}
		}
		if p.Counters != nil {
			out.Counters = p.Counters
		}
	}
	out.Source = strings.Join(names, "+")
	later := 0
	for _, p := range parts[1:] {
		later += p.Len()
	}
	if later == 0 {
		return out
	}
	// The later readings' flows, each marked once a reading before it
	// holds it: the first reading is looked up in this set (as small as
	// the later readings), not the other way round.
	held4 := make(map[connKey4]bool, later)
	var held map[connKey]bool
	for _, p := range parts[1:] {
		for c := range p.All() {
			k4, k, is4 := keyOf(&c)
			if is4 {
				held4[k4] = false
			} else {
				if held == nil {
					held = make(map[connKey]bool)
				}
				held[k] = false
			}
		}
	}
	for c := range parts[0].All() {
		k4, k, is4 := keyOf(&c)
		if is4 {
			if _, ok := held4[k4]; ok {
				held4[k4] = true
			}
		} else if _, ok := held[k]; ok {
			held[k] = true
		}
	}
	out.Conns = slices.Clip(out.Conns)
	for _, p := range parts[1:] {
		for c := range p.All() {
			k4, k, is4 := keyOf(&c)
			if is4 {
				if held4[k4] {
					continue
				}
				held4[k4] = true
			} else {
				if held[k] {
					continue
				}
				held[k] = true
			}
			out.Conns = append(out.Conns, c)
		}
	}
	return out
}

// MinCounterSpan is the shortest span a window's TcpExt counters are read
// over when SYN cookies or dropped SYNs are going on (see StretchCounters):
// a one-sample window lasts a few milliseconds, in which a flood of a
// thousand SYNs a second, sent in bursts, may show no cookie at all. It is
// also MinSensorSpan, so the firewall sensor's readings around the window
// then span enough to give a rate.
const MinCounterSpan = time.Second

// Stormy reports whether d, a TcpExt delta, shows the kernel dealing with
// more SYNs than its queues hold: SYN cookies sent, SYNs dropped with a
// full SYN queue, or listen overflows and drops.
func Stormy(d TcpExt) bool {
	return d.SyncookiesSent > 0 || d.TCPReqQFullDoCookies > 0 || d.TCPReqQFullDrop > 0 ||
		d.ListenOverflows > 0 || d.ListenDrops > 0
}

// StretchCounters makes res's counters span at least span from the start
// reading: when the window was shorter, it waits out the rest (ctx
// cancels the wait) and reads the end counters again, moving End, Delta,
// Elapsed and the last sample's Counters. The samples stay as taken. A
// window without counters, or already long enough, is left alone.
func StretchCounters(ctx context.Context, res *WindowResult, span time.Duration, counters func() (TcpExt, error)) error {
	if res.Start == nil || counters == nil || res.Elapsed >= span {
		return nil
	}
	began := res.Began
	if began.IsZero() {
		began = time.Now().Add(-res.Elapsed)
	}
	t := time.NewTimer(time.Until(began.Add(span)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("window: %w", ctx.Err())
	case <-t.C:
	}
	c, err := counters()
	if err != nil {
		return fmt.Errorf("window: counters at end: %w", err)
	}
	res.End = &c
	res.Delta = Delta(*res.Start, c)
	res.Elapsed = time.Since(began)
	if n := len(res.Samples); n > 0 {
		res.Samples[n-1].Counters = res.End
	}
	return nil
}
