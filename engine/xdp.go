package engine

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/synban/synban/internal/metrics"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/xdp"
)

// XDPReport is what a cycle did with the XDP fast path ([xdp]).
type XDPReport struct {
	// Entries is how many bans the maps hold after the sync.
	Entries int
	// Added, Updated and Removed count map entries changed.
	Added, Updated, Removed int
	// Attached names the interfaces the drop program is on.
	Attached []string
	// Warning says why the program is not (everywhere) in use; the
	// firewall backend keeps enforcing there.
	Warning string
}

// xdpRoot is the bpffs the fast path pins under.
func (e *Engine) xdpRoot() string { return e.opts.XDPRoot }

// syncXDP mirrors the backend's active bans (the kernel table is the
// source of truth) into the XDP maps and keeps the drop program attached
// to [xdp] interfaces; with [xdp] off it removes whatever an earlier run
// left. It never fails the cycle: whatever goes wrong is one warning, and
// the backend's table keeps enforcing. A ban the guard protects never
// reaches the map (bans passed the guard already: this is an assertion).
func (e *Engine) syncXDP(ctx context.Context, p *policy.Policy, b rules.Backend) *XDPReport {
	if !p.XDP.Enabled {
		if found, err := xdp.Flush(e.xdpRoot()); err != nil {
			e.log.Warn("cannot remove the XDP fast path [xdp] turned off", "err", err)
		} else if found {
			e.log.Info("XDP fast path removed: [xdp] is off")
		}
		return nil
	}
	rep := &XDPReport{}
	warn := func(err error) *XDPReport {
		rep.Warning = err.Error()
		e.log.Warn("XDP fast path not in use; the firewall table keeps enforcing", "reason", err, "interfaces", p.XDP.Interfaces, "mode", p.XDP.Mode)
		return rep
	}
	active, err := b.Bans(ctx)
	if err != nil {
		return warn(err)
	}
	bans, err := e.xdpBans(p, active, time.Now())
	if err != nil {
		return warn(err)
	}
	res, err := xdp.Sync(xdp.Config{Interfaces: p.XDP.Interfaces, Mode: p.XDP.Mode, MaxEntries: p.Ban.MaxEntries, Root: e.xdpRoot()}, bans)
	if res != nil && res.Mounted {
		e.log.Warn("mounted bpffs for the XDP fast path's pins; if synban runs in a mount namespace of its own (ip netns exec makes one), the pins and the program end with it: enter a network namespace with nsenter --net instead",
			"path", cmp.Or(e.xdpRoot(), xdp.DefaultRoot))
	}
	if res != nil {
		rep.Entries, rep.Added, rep.Updated, rep.Removed = len(bans), res.Added, res.Updated, res.Removed
		for _, a := range res.Attached {
			rep.Attached = append(rep.Attached, a.Interface)
		}
		e.log.Info("XDP maps synced", "entries", rep.Entries, "added", res.Added, "updated", res.Updated, "removed", res.Removed, "attached", rep.Attached)
	}
	if err != nil {
		return warn(err)
	}
	return rep
}

// xdpBans turns the backend's active bans into map entries: canonical
// prefixes with an absolute expiry, the guard's prefixes left out (and
// logged as the error they are), at most ban.max_entries per family.
func (e *Engine) xdpBans(p *policy.Policy, active []rules.ActiveBan, now time.Time) ([]xdp.Ban, error) {
	g, err := e.Guard(p)
	if err != nil {
		return nil, err
	}
	out := make([]xdp.Ban, 0, len(active))
	seen := make(map[netip.Prefix]bool, len(active))
	n4, n6, over := 0, 0, 0
	for _, a := range active {
		pfx := policy.Canonical(a.Prefix).Masked()
		if seen[pfx] {
			continue
		}
		if why, protected := g.Protects(pfx); protected {
			e.log.Error("a ban in the firewall touches a protected address: kept out of the XDP map", "subject", pfx, "reason", why)
			continue
		}
		n := &n6
		if pfx.Addr().Is4() {
			n = &n4
		}
		if *n >= p.Ban.MaxEntries {
			over++
			continue
		}
		*n++
		seen[pfx] = true
		b := xdp.Ban{Prefix: pfx}
		if a.Expires > 0 {
			b.Expires = now.Add(a.Expires)
		}
		out = append(out, b)
	}
	if over > 0 {
		e.log.Warn("more bans than the XDP maps hold (ban.max_entries per family): the rest are enforced by the firewall table only", "left_out", over, "max_entries", p.Ban.MaxEntries)
	}
	return out, nil
}

// flushXDP detaches the drop program and removes the maps and pins.
func (e *Engine) flushXDP() error {
	if _, err := xdp.Flush(e.xdpRoot()); err != nil {
		return err
	}
	return nil
}

// XDPDrop is one XDP map entry with its drop counter.
type XDPDrop struct {
	Prefix  netip.Prefix
	Packets uint64
	// Expires is when the entry stops dropping (zero: never).
	Expires time.Time
}

// XDPState is what status and explain show of the fast path.
type XDPState struct {
	// Attached names the interfaces the program is on, with the mode.
	Attached []string
	Mode     string
	Entries  []XDPDrop
}

// ReadXDP reads the pinned XDP maps and attachments; nil when nothing is
// pinned. It writes nothing.
func (e *Engine) ReadXDP(p *policy.Policy) (*XDPState, error) {
	st, err := xdp.Read(e.xdpRoot())
	if err != nil || st == nil {
		return nil, err
	}
	out := &XDPState{Mode: p.XDP.Mode}
	for _, a := range st.Attached {
		out.Attached = append(out.Attached, a.Interface)
		out.Mode = a.Mode
	}
	for _, en := range st.Entries {
		out.Entries = append(out.Entries, XDPDrop{Prefix: en.Prefix, Packets: en.Packets, Expires: en.Expires})
	}
	slices.SortFunc(out.Entries, func(a, b XDPDrop) int { return policy.ComparePrefixes(a.Prefix, b.Prefix) })
	return out, nil
}

// lookup returns the entry that matches subject, the longest prefix
// containing it (as the program's lookup does), if any.
func (s *XDPState) lookup(subject netip.Prefix) (XDPDrop, bool) {
	if s == nil {
		return XDPDrop{}, false
	}
	best, found := XDPDrop{}, false
	for _, en := range s.Entries {
		if en.Prefix.Addr().Is4() == subject.Addr().Is4() && en.Prefix.Bits() <= subject.Bits() && en.Prefix.Contains(subject.Addr()) {
			if !found || en.Prefix.Bits() > best.Prefix.Bits() {
				best, found = en, true
			}
		}
	}
	return best, found
}

// xdpMetrics is the fast path's part of the metrics file: what the run
// did, and the entries' counters as the maps hold them now.
func (e *Engine) xdpMetrics(rep *XDPReport) *metrics.XDP {
	if rep == nil {
		return nil
	}
	m := &metrics.XDP{Up: rep.Warning == "", Attached: rep.Attached, Entries: rep.Entries}
	st, err := xdp.Read(e.xdpRoot())
	if err != nil {
		e.log.Warn("metrics: cannot read the XDP maps", "err", err)
		return m
	}
	if st != nil {
		for _, en := range st.Entries {
			m.Drops = append(m.Drops, metrics.XDPDrop{Prefix: en.Prefix.String(), Packets: en.Packets})
		}
	}
	return m
}

// explainXDP adds the XDP map entry matching x's subject, and a sentence,
// to x; nothing when the fast path is off and nothing is pinned. A map
// that cannot be read is said in the sentence.
func (e *Engine) explainXDP(p *policy.Policy, x *Explanation) {
	st, err := e.ReadXDP(p)
	switch {
	case err != nil:
		x.Summary = append(x.Summary, "xdp: cannot read the maps: "+err.Error())
		return
	case st == nil && !p.XDP.Enabled:
		return
	case st == nil:
		x.Summary = append(x.Summary, "xdp: enabled, but no map is pinned yet (the next run makes them)")
		return
	}
	x.XDPRead = true
	en, ok := st.lookup(x.Subject)
	if !ok {
		x.Summary = append(x.Summary, "xdp: not in the maps")
		return
	}
	x.XDP = &en
	left := "never expires"
	if !en.Expires.IsZero() {
		left = time.Until(en.Expires).Round(time.Second).String() + " left"
	}
	on := "attached nowhere"
	if len(st.Attached) > 0 {
		on = "on " + strings.Join(st.Attached, ", ") + " (" + st.Mode + ")"
	}
	x.Summary = append(x.Summary, fmt.Sprintf("xdp: dropped as %s, %s, %d packets dropped in the driver, %s", en.Prefix, left, en.Packets, on))
}
