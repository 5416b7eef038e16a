// Package backends picks synban's firewall backend in one place: it probes
// what works, in the order nftables, iptables (+ipset), reject routes, and
// says why it chose what it chose.
package backends

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/ipt"
	"github.com/synban/synban/rules/nft"
	"github.com/synban/synban/rules/route"
	"github.com/synban/synban/state"
)

// Backend names accepted by Open.
const (
	Auto     = "auto"
	NFTables = "nftables"
	IPTables = "iptables"
	Route    = "route"
)

// Options configures every backend Open may return.
type Options struct {
	// NetNS is the path of the network namespace to work in; "" means the
	// current one.
	NetNS string
	// Logger receives the choice and the chosen backend's logs; nil discards them.
	Logger *slog.Logger
	// Store is the state store; the route backend requires it unless
	// ReadOnly, and only reads it (the ban end times): the run cycle is the
	// store's writer.
	Store *state.Store
	// ReadOnly is for the commands that only read (status, plan): the probes
	// and constructors create nothing (none does: they list), the route
	// backend may go without a store, and the backend Open returns refuses
	// Apply, Unban and Flush with ErrReadOnly.
	ReadOnly bool

	// DisableNFTables skips nftables in "auto", as if it did not work (an
	// operator's override, or a test simulating an old kernel).
	DisableNFTables bool
	// DisableIPTables likewise skips iptables in "auto".
	DisableIPTables bool

	// NFTTable and NFTFamily name the nftables table the backend works on,
	// fixed for its life ("" = the nft package's defaults); Apply refuses a
	// Ruleset naming another (nft.ErrOtherTarget).
	NFTTable, NFTFamily string
	// NFTMode is the nftables mode ("" or "table", or "sets": NFTTable is
	// then the operator's table; see policy.NFTables.Target), fixed likewise.
	NFTMode string

	// IPTablesPath is the iptables program; "" picks iptables, then
	// iptables-legacy, whichever works.
	IPTablesPath string
	// IPTablesChain is synban's iptables chain; "" means the ipt default.
	IPTablesChain string
	// IPTablesDockerUser also jumps to the chain from DOCKER-USER.
	IPTablesDockerUser bool

	// RouteType is the reject route type ("" = prohibit, blackhole, unreachable).
	RouteType string
	// RouteProtocol is the route protocol number (0 = route.DefaultProtocol).
	RouteProtocol int
}

// Choice explains which backend Open chose and why.
type Choice struct {
	// Name is the chosen backend's name.
	Name string
	// Why is one line for logs and the CLI, e.g. "nftables: disabled by
	// option; iptables: no usable iptables program: ...; chose route".
	Why string
	// Tried holds one entry per backend considered, in order, saying what
	// happened to it.
	Tried []string
	// Assumed is set by Choose when the backend could not be probed (the
	// process lacks CAP_NET_ADMIN): Name is then the first candidate, taken
	// on trust, and Why says so.
	Assumed bool
}

// ErrReadOnly is returned (wrapped) by a backend opened with
// Options.ReadOnly when asked to change something.
var ErrReadOnly = errors.New("backend opened read-only")

// Inspector is rules.Inspector, kept under this name for the callers that
// type-assert a backend Open returned. Backends opened read-only implement
// it; the route backend has no structure and reports nothing.
type Inspector = rules.Inspector

// Open returns the backend called name ("auto", "" meaning the same,
// "nftables", "iptables" or "route"). A named backend that does not work is
// an error; "auto" tries nftables, then iptables, then routes, and takes the
// first that works. The choice is logged and returned.
func Open(ctx context.Context, name string, o Options) (rules.Backend, Choice, error) {
	b, ch, err := choose(ctx, name, o, false)
	if err != nil || !o.ReadOnly {
		return b, ch, err
	}
	return ReadOnly(b), ch, nil
}

// ReadOnly returns b as Open returns a backend opened with
// Options.ReadOnly: Apply, Unban and Flush refuse with ErrReadOnly, and
// what only reads (bans, counters, per-ban drops, the sensor, what is
// missing) passes through. Open uses it; so does a caller that opens a
// backend of its own (an engine test's in-memory one).
func ReadOnly(b rules.Backend) rules.Backend {
	if dc, ok := b.(rules.DropCounter); ok {
		// Reading the per-ban drop counters changes nothing (explain).
		return readOnlyCounting{readOnly{b}, dc}
	}
	return readOnly{b}
}

// readOnlyCounting is readOnly for a backend that keeps per-ban drop
// counters: it reads them too.
type readOnlyCounting struct {
	readOnly
	rules.DropCounter
}

// Choose says which backend Open would return for name and o, probing as
// Open does (a probe only lists; nothing is created), and closes it. When
// the process lacks CAP_NET_ADMIN, nftables and iptables cannot be probed:
// Choose then takes the first of them that auto would try (or the one
// named) on trust and sets Choice.Assumed, rather than falling through to
// a backend that an unprivileged probe happens to pass.
func Choose(ctx context.Context, name string, o Options) (Choice, error) {
	o.ReadOnly = true
	_, ch, err := choose(ctx, name, o, !netAdmin())
	return ch, err
}

// netAdmin reports whether the process has CAP_NET_ADMIN in its effective set.
func netAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_NET_ADMIN) != 0
}

// choose is Open's and Choose's one selection: with assume, a candidate
// that needs CAP_NET_ADMIN to be probed is taken on trust.
func choose(ctx context.Context, name string, o Options, assume bool) (rules.Backend, Choice, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var ch Choice
	try := []string{NFTables, IPTables, Route}
	switch strings.ToLower(name) {
	case "", Auto:
	case NFTables, IPTables, Route:
		try = []string{strings.ToLower(name)}
	default:
		return nil, ch, fmt.Errorf("backend %q: want auto, nftables, iptables or route", name)
	}
	auto := len(try) > 1
	for _, n := range try {
		if err := ctx.Err(); err != nil {
			return nil, ch, fmt.Errorf("choose backend: %w", err)
		}
		if assume && n != Route && !disabled(n, auto, o) {
			ch.Name, ch.Assumed = n, true
			ch.Tried = append(ch.Tried, n+" (assumed: probing needs root)")
			ch.Why = strings.Join(ch.Tried, "; ") + "; chose " + n
			return nil, ch, nil
		}
		b, err := open(n, auto, o, log)
		if err != nil {
			ch.Tried = append(ch.Tried, n+": "+err.Error())
			if !auto {
				ch.Why = strings.Join(ch.Tried, "; ")
				return nil, ch, fmt.Errorf("backend %s does not work here: %w", n, err)
			}
			continue
		}
		ch.Name = n
		works := n + ": works"
		if !auto {
			works = n + ": requested, works"
		}
		if p, ok := b.(rules.PathReporter); ok {
			v4, v6 := p.Paths()
			works += " (" + v4 + ", " + v6 + ")"
		}
		ch.Tried = append(ch.Tried, works)
		ch.Why = strings.Join(ch.Tried, "; ") + "; chose " + n
		log.Info("firewall backend chosen", "backend", n, "why", ch.Why)
		return b, ch, nil
	}
	ch.Why = strings.Join(ch.Tried, "; ")
	return nil, ch, fmt.Errorf("no firewall backend works: %s", ch.Why)
}

// errDisabled says a backend was skipped by option.
var errDisabled = errors.New("disabled by option")

// disabled reports whether auto skips the backend by option.
func disabled(name string, auto bool, o Options) bool {
	return auto && (name == NFTables && o.DisableNFTables || name == IPTables && o.DisableIPTables)
}

// open builds and probes one backend, every one the same way: its
// package's New checks the options, then the kernel is probed (listing
// only; nothing is created), and only a backend that passed both is
// returned. A probe failure reads "netlink probe failed: ..." for the
// netlink backends; the iptables backend's New cannot build without the
// programs it finds, so its probe is part of New.
func open(name string, auto bool, o Options, log *slog.Logger) (rules.Backend, error) {
	if disabled(name, auto, o) {
		return nil, errDisabled
	}
	log = log.With("backend", name)
	var (
		b     rules.Backend
		probe func() error // nil: New probed already
		err   error
	)
	switch name {
	case NFTables:
		no := nft.Options{NetNS: o.NetNS, Logger: log, Table: o.NFTTable, Family: o.NFTFamily, Mode: o.NFTMode}
		b, err = nft.New(no)
		probe = func() error { return nft.Probe(no) }
	case IPTables:
		b, err = ipt.New(ipt.Options{
			NetNS: o.NetNS, Path: o.IPTablesPath, Chain: o.IPTablesChain,
			DockerUser: o.IPTablesDockerUser, Logger: log,
		})
	default:
		if o.Store == nil && !o.ReadOnly {
			return nil, errors.New("no state store to keep ban expiry in")
		}
		ro := route.Options{NetNS: o.NetNS, Store: o.Store, ReadOnly: o.ReadOnly, Type: o.RouteType, Protocol: o.RouteProtocol, Logger: log}
		b, err = route.New(ro)
		probe = func() error { return route.Probe(ro) }
	}
	if err != nil {
		return nil, err
	}
	if probe != nil {
		if err := probe(); err != nil {
			return nil, fmt.Errorf("netlink probe failed: %w", err)
		}
	}
	return b, nil
}

// readOnly is a backend opened with Options.ReadOnly: it lists and counts,
// and refuses every change.
type readOnly struct{ rules.Backend }

// Apply refuses.
func (r readOnly) Apply(context.Context, *rules.Ruleset) (rules.Result, error) {
	return rules.Result{}, fmt.Errorf("%s apply: %w", r.Name(), ErrReadOnly)
}

// Unban refuses.
func (r readOnly) Unban(context.Context, []netip.Prefix) (int, error) {
	return 0, fmt.Errorf("%s unban: %w", r.Name(), ErrReadOnly)
}

// Flush refuses.
func (r readOnly) Flush(context.Context) error {
	return fmt.Errorf("%s flush: %w", r.Name(), ErrReadOnly)
}

// Missing lists what of the backend's structure the kernel lacks; nothing
// for a backend without structure (routes).
func (r readOnly) Missing(ctx context.Context) ([]string, error) {
	if in, ok := r.Backend.(rules.Inspector); ok {
		return in.Missing(ctx)
	}
	return nil, nil
}

// Paths returns the wrapped backend's programs, if it runs any.
func (r readOnly) Paths() (string, string) {
	if p, ok := r.Backend.(rules.PathReporter); ok {
		return p.Paths()
	}
	return "", ""
}

// SensorRead reads the wrapped backend's sensor; a backend without one
// (routes) answers rules.ErrNotSupported.
func (r readOnly) SensorRead(ctx context.Context) (rules.SensorReading, error) {
	if s, ok := r.Backend.(rules.Sensor); ok {
		return s.SensorRead(ctx)
	}
	return rules.SensorReading{}, fmt.Errorf("%s sensor: %w", r.Name(), rules.ErrNotSupported)
}
