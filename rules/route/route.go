// Package route is synban's last-resort backend: it bans addresses and
// prefixes with reject routes (prohibit by default; blackhole or unreachable
// by option) in the main routing table, IPv4 and IPv6, tagged with synban's
// own route protocol number (default 211). Only routes carrying that number
// are ever listed, changed or removed; everyone else's routes are left alone,
// and a ban whose destination already has someone else's route is skipped
// with a warning rather than replacing it.
//
// What this backend cannot do, plainly:
//
//   - No SYN meter and no per-source connection cap: a Ruleset's Meter and
//     ConnLimit are ignored with a logged warning.
//   - A reject route only stops the host's replies to the banned source. The
//     source's packets still arrive: its SYNs still reach the TCP stack, which
//     still creates half-open (SYN_RECV) entries and tries to answer, and
//     packets on established connections are still received. It ends
//     connection floods from real hosts (they never complete a handshake);
//     it does not relieve a host from a spoofed SYN flood.
//   - Routes do not match the source's port or protocol; all traffic to the
//     banned prefix (including connections this host opens) is rejected.
//   - There are no kernel timeouts and no counters. Each ban's end time is
//     kept in the state store (package state), which this backend only reads:
//     the caller (the run cycle) records bans and is the store's only
//     writer. Expire removes routes whose time has passed; Apply removes
//     them too. Bans only reads (synban status must write nothing): a route
//     whose time has passed stays listed until the next run. Counters
//     returns nothing.
//   - Forwarded traffic is affected only in its reply direction as well.
//
// Reconciling is split in two: Diff, a pure function of the observed
// routes, the store's bans and the desired Ruleset, decides a list of
// operations (Op); Apply and Expire observe, call Diff and carry the
// operations out.
package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/state"
)

// Name is the backend's name, also stored as the Backend of its bans.
const Name = "route"

// DefaultProtocol is the route protocol number synban tags its routes with
// (iproute2 shows it as "proto 211"). Numbers up to 4 belong to the kernel
// and the boot and static routes of others, and are refused.
const DefaultProtocol = 211

// Route types accepted by Options.Type.
const (
	TypeProhibit    = "prohibit"    // ICMP "administratively prohibited" / EACCES locally (default)
	TypeBlackhole   = "blackhole"   // silently discarded
	TypeUnreachable = "unreachable" // ICMP "host unreachable" / EHOSTUNREACH locally
)

// Options configures the route backend.
type Options struct {
	// NetNS is the path of the network namespace to work in (e.g.
	// /run/netns/NAME); empty means the current one.
	NetNS string
	// Store keeps each ban's end time and reason, and is only read here;
	// required unless ReadOnly.
	Store *state.Store
	// ReadOnly makes a backend that only lists (for synban status): Apply,
	// Expire, Unban and Flush refuse, and Store may be nil (Bans then lists
	// the routes without reasons or times).
	ReadOnly bool
	// Type is the route type: TypeProhibit (default), TypeBlackhole or TypeUnreachable.
	Type string
	// Protocol is the route protocol number synban's routes carry
	// (default DefaultProtocol; 5..255).
	Protocol int
	// Logger receives warnings and changes; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Backend bans with tagged reject routes. It implements rules.Backend.
type Backend struct {
	ns       string
	store    *state.Store
	readOnly bool
	typ      int
	typName  string
	protocol int
	log      *slog.Logger
	now      func() time.Time
}

var (
	_ rules.Backend = (*Backend)(nil)
	_ rules.Expirer = (*Backend)(nil)
)

// New returns a route backend. It checks the options but not the kernel; use
// Probe for that.
func New(o Options) (*Backend, error) {
	if o.Store == nil && !o.ReadOnly {
		return nil, errors.New("route backend: a state store is required (routes have no kernel timeouts)")
	}
	typ, name, err := ParseType(o.Type)
	if err != nil {
		return nil, fmt.Errorf("route backend: %w", err)
	}
	proto := o.Protocol
	if proto == 0 {
		proto = DefaultProtocol
	}
	if proto < 5 || proto > 255 {
		return nil, fmt.Errorf("route backend: protocol %d out of range 5..255 (0-4 are the kernel's, boot and static routes)", proto)
	}
	b := &Backend{ns: o.NetNS, store: o.Store, readOnly: o.ReadOnly, typ: typ, typName: name, protocol: proto, log: o.Logger, now: o.Now}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	return b, nil
}

// ParseType turns a route type name ("" means TypeProhibit) into its kernel
// value (unix.RTN_*) and canonical name.
func ParseType(s string) (int, string, error) {
	switch strings.ToLower(s) {
	case "", TypeProhibit:
		return unix.RTN_PROHIBIT, TypeProhibit, nil
	case TypeBlackhole:
		return unix.RTN_BLACKHOLE, TypeBlackhole, nil
	case TypeUnreachable:
		return unix.RTN_UNREACHABLE, TypeUnreachable, nil
	}
	return 0, "", fmt.Errorf("unknown route type %q (want %s, %s or %s)", s, TypeProhibit, TypeBlackhole, TypeUnreachable)
}

// Probe checks that routes can be listed in the namespace.
func Probe(o Options) error {
	h, err := handle(o.NetNS)
	if err != nil {
		return err
	}
	defer h.Close()
	if _, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: netlink.RouteProtocol(DefaultProtocol)}, netlink.RT_FILTER_PROTOCOL); err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	return nil
}

// Name returns "route".
func (b *Backend) Name() string { return Name }

// ErrReadOnly is returned (wrapped) by the methods that change routes or the
// store when the backend was made with Options.ReadOnly.
var ErrReadOnly = errors.New("route backend opened read-only")

// writable refuses op on a read-only backend.
func (b *Backend) writable(op string) error {
	if b.readOnly {
		return fmt.Errorf("route %s: %w", op, ErrReadOnly)
	}
	return nil
}

// handle opens a netlink handle in the namespace at path ("" = current).
func handle(path string) (*netlink.Handle, error) {
	if path == "" {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("open netlink: %w", err)
		}
		return h, nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink in %s: %w", path, err)
	}
	return h, nil
}

// ours lists synban's routes (our protocol, main table), both families, by prefix.
func (b *Backend) ours(h *netlink.Handle) (map[netip.Prefix]netlink.Route, error) {
	out := make(map[netip.Prefix]netlink.Route)
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := h.RouteListFiltered(fam, &netlink.Route{Protocol: netlink.RouteProtocol(b.protocol), Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes with protocol %d: %w", b.protocol, err)
		}
		for _, r := range rs {
			if int(r.Protocol) != b.protocol { // the library filters; be sure
				continue
			}
			out[routePrefix(r, fam)] = r
		}
	}
	return out, nil
}

func routePrefix(r netlink.Route, fam int) netip.Prefix {
	if r.Dst == nil {
		if fam == netlink.FAMILY_V4 {
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	a, _ := netip.AddrFromSlice(r.Dst.IP)
	a = a.Unmap()
	bits, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(a, bits).Masked()
}

// route builds the netlink route for a ban of p.
func (b *Backend) route(p netip.Prefix, typ int) *netlink.Route {
	return &netlink.Route{
		Dst:      &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Type:     typ,
		Protocol: netlink.RouteProtocol(b.protocol),
		Table:    unix.RT_TABLE_MAIN,
	}
}

// del removes our route to p of type typ, matched on destination, table,
// type and protocol.
func (b *Backend) del(h *netlink.Handle, p netip.Prefix, typ int) error {
	if err := h.RouteDel(b.route(p, typ)); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete route %s proto %d: %w", p, b.protocol, err)
	}
	return nil
}

// types maps each of synban's routes to its type.
func types(have map[netip.Prefix]netlink.Route) map[netip.Prefix]int {
	out := make(map[netip.Prefix]int, len(have))
	for p, r := range have {
		out[p] = r.Type
	}
	return out
}

// stored returns the store's bans; none without a store.
func (b *Backend) stored() ([]state.Ban, error) {
	if b.store == nil {
		return nil, nil
	}
	st, err := b.store.Load()
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	return st.Bans, nil
}

// Apply makes the kernel hold a route for every ban of rs and every active
// route ban of the state store: missing routes are added (restoring them
// after an outside `ip route flush proto N`), routes of another type are
// re-created with the configured type, and routes that no ban stands for
// any more (ended, or unknown to the store) are removed. Bans present but
// not in rs are kept until they end. The decision is Diff's; Apply only
// observes, asks Diff and carries the operations out.
//
// Apply reads the store and never writes it: the caller records rs.Bans
// with their end times (and drops Result.Forget) after Apply, and runs
// Expire after that.
func (b *Backend) Apply(ctx context.Context, rs *rules.Ruleset) (rules.Result, error) {
	var res rules.Result
	if err := b.writable("apply"); err != nil {
		return res, err
	}
	if rs == nil {
		return res, errors.New("route apply: nil ruleset")
	}
	if rs.Meter != nil {
		b.log.Warn("route backend cannot meter SYNs per source; the ruleset's SYN meter is ignored",
			"rate", rs.Meter.Rate, "burst", rs.Meter.Burst)
	}
	if rs.ConnLimit != nil {
		b.log.Warn("route backend cannot cap connections per source; the ruleset's connection limit is ignored",
			"max", rs.ConnLimit.Max)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("route apply: %w", err)
	}
	stored, err := b.stored()
	if err != nil {
		return res, fmt.Errorf("route apply: %w", err)
	}
	h, err := handle(b.ns)
	if err != nil {
		return res, fmt.Errorf("route apply: %w", err)
	}
	defer h.Close()
	have, err := b.ours(h)
	if err != nil {
		return res, fmt.Errorf("route apply: %w", err)
	}
	plan := Diff(Input{Have: types(have), Stored: stored, Ruleset: rs, Type: b.typ, Now: b.now()})
	for _, l := range plan.Allowed {
		if l.Stored {
			b.log.Warn("stored ban overlaps the allow list; removing it", "prefix", l.Prefix, "allow", l.Allow)
		} else {
			b.log.Warn("ban overlaps the allow list; not routing it", "prefix", l.Prefix, "allow", l.Allow)
		}
		res.Forget = append(res.Forget, l.Prefix)
	}
	res.Refreshed = plan.Refreshed
	_, err = b.execute(ctx, h, plan.Ops, &res)
	if err != nil {
		return res, fmt.Errorf("route apply: %w", err)
	}
	return res, nil
}

// execute carries out ops in order and returns how many routes it removed
// for WhyEnded. A failed removal before a re-creation skips the
// re-creation; an addition refused because someone else's route to the
// destination exists is skipped with a warning and the ban put in
// res.Forget. It stops at the first error of ctx; other errors are joined.
func (b *Backend) execute(ctx context.Context, h *netlink.Handle, ops []Op, res *rules.Result) (int, error) {
	ended := 0
	var errs []error
	failed := make(map[netip.Prefix]bool)
	for _, op := range ops {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		p := op.Prefix
		if op.Del {
			if err := b.del(h, p, op.Type); err != nil {
				errs = append(errs, err)
				failed[p] = true
				continue
			}
			switch op.Why {
			case WhyEnded:
				ended++
				b.log.Info("route ban expired", "prefix", p)
			case WhyRetype:
				res.Changed = append(res.Changed, fmt.Sprintf("route %s type", p))
			}
			continue
		}
		if failed[p] {
			continue
		}
		err := h.RouteAdd(b.route(p, op.Type))
		switch {
		case errors.Is(err, unix.EEXIST):
			// Someone else's route to exactly this destination: leave it.
			b.log.Warn("another route to this destination exists (not synban's); ban skipped", "prefix", p)
			res.Forget = append(res.Forget, p)
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("add %s route %s proto %d: %w", b.typName, p, b.protocol, err))
			continue
		}
		switch op.Why {
		case WhyBan:
			res.Added++
		case WhyRestore:
			res.Added++
			res.Created = true // restored after an outside flush
			b.log.Info("restored missing route ban", "prefix", p, "until", op.Until)
		}
		b.log.Debug("route ban", "prefix", p, "type", b.typName, "until", op.Until, "reason", op.Reason)
	}
	if len(errs) > 0 {
		return ended, errors.Join(errs...)
	}
	return ended, nil
}

// Expire removes the routes whose ban has ended, as the state store
// records it, and routes carrying synban's protocol that the store has no
// active route ban for (left by a lost or different state directory). It
// returns how many routes it removed. It reads the store and never writes
// it: the caller records the run's bans and expires the store first (see
// rules.Expirer). Every synban run calls it.
func (b *Backend) Expire(ctx context.Context) (int, error) {
	if err := b.writable("expire"); err != nil {
		return 0, err
	}
	stored, err := b.stored()
	if err != nil {
		return 0, fmt.Errorf("route expire: %w", err)
	}
	h, err := handle(b.ns)
	if err != nil {
		return 0, fmt.Errorf("route expire: %w", err)
	}
	defer h.Close()
	have, err := b.ours(h)
	if err != nil {
		return 0, fmt.Errorf("route expire: %w", err)
	}
	plan := Diff(Input{Have: types(have), Stored: stored, Type: b.typ, Now: b.now()})
	n, err := b.execute(ctx, h, plan.Ops, &rules.Result{})
	if err != nil {
		return n, fmt.Errorf("route expire: %w", err)
	}
	return n, nil
}

// Bans lists synban's routes joined with the store for reason and time left.
// It only reads: it neither expires bans nor touches the store (Apply and
// Expire, run by every synban run, remove ended routes). A route whose stored time has
// passed is listed with 1ns left; a route the store does not know (left by a
// lost state directory) is listed without reason or time; a ban recorded in
// the store whose route is missing (flushed from outside) is not listed until
// Apply restores it.
func (b *Backend) Bans(ctx context.Context) ([]rules.ActiveBan, error) {
	st := &state.State{}
	if b.store != nil {
		var err error
		if st, err = b.store.Load(); err != nil {
			return nil, fmt.Errorf("route bans: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("route bans: %w", err)
	}
	h, err := handle(b.ns)
	if err != nil {
		return nil, fmt.Errorf("route bans: %w", err)
	}
	defer h.Close()
	have, err := b.ours(h)
	if err != nil {
		return nil, fmt.Errorf("route bans: %w", err)
	}
	now := b.now()
	out := make([]rules.ActiveBan, 0, len(have))
	for _, p := range sortedKeys(have) {
		ab := rules.ActiveBan{Ban: rules.Ban{Prefix: p}}
		if sb, ok := st.Find(p); ok && sb.Backend == Name {
			ab.Reason = sb.Reason
			if !sb.Until.IsZero() {
				ab.Timeout = sb.Until.Sub(sb.Since)
				ab.Expires = max(sb.Until.Sub(now), time.Nanosecond)
			}
		}
		out = append(out, ab)
	}
	return out, nil
}

// Unban removes the routes of exactly these prefixes and reports how many
// were present. It does not touch the store: the caller removes the bans
// from it (synban unban does).
func (b *Backend) Unban(ctx context.Context, prefixes []netip.Prefix) (int, error) {
	if err := b.writable("unban"); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("route unban: %w", err)
	}
	h, err := handle(b.ns)
	if err != nil {
		return 0, fmt.Errorf("route unban: %w", err)
	}
	defer h.Close()
	have, err := b.ours(h)
	if err != nil {
		return 0, fmt.Errorf("route unban: %w", err)
	}
	gone := make(map[netip.Prefix]bool)
	var errs []error
	for _, p := range prefixes {
		p = policy.Canonical(p)
		r, ok := have[p]
		if !ok || gone[p] {
			continue
		}
		if err := b.del(h, p, r.Type); err != nil {
			errs = append(errs, err)
			continue
		}
		gone[p] = true
		b.log.Info("route ban removed", "prefix", p)
	}
	if len(errs) > 0 {
		return len(gone), fmt.Errorf("route unban: %w", errors.Join(errs...))
	}
	return len(gone), nil
}

// Counters returns nil: routes have no counters.
func (b *Backend) Counters(context.Context) ([]rules.Counter, error) { return nil, nil }

// Flush removes every route carrying synban's protocol. Nobody else's
// routes are touched. It does not touch the store: the caller forgets the
// bans (synban flush does) and keeps the history.
func (b *Backend) Flush(ctx context.Context) error {
	if err := b.writable("flush"); err != nil {
		return err
	}
	h, err := handle(b.ns)
	if err != nil {
		return fmt.Errorf("route flush: %w", err)
	}
	defer h.Close()
	have, err := b.ours(h)
	if err != nil {
		return fmt.Errorf("route flush: %w", err)
	}
	var errs []error
	for _, p := range sortedKeys(have) {
		if err := b.del(h, p, have[p].Type); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("route flush: %w", errors.Join(errs...))
	}
	b.log.Info("route bans flushed", "routes", len(have), "protocol", b.protocol)
	return nil
}

func sortedKeys(m map[netip.Prefix]netlink.Route) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, rules.ComparePrefixes)
	return out
}
