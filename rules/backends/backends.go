// Package backends picks synban's firewall backend in one place: it probes
// what works, in the order nftables, iptables (+ipset), reject routes, and
// says why it chose what it chose.
package backends

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/ipt"
	"github.com/synban/synban/rules/nft"
	"github.com/synban/synban/rules/route"
	"github.com/synban/synban/rules/state"
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
	// Store is the state store; the route backend requires it.
	Store *state.Store

	// DisableNFTables skips nftables in "auto", as if it did not work (an
	// operator's override, or a test simulating an old kernel).
	DisableNFTables bool
	// DisableIPTables likewise skips iptables in "auto".
	DisableIPTables bool

	// NFTTable and NFTFamily name synban's nftables table for calls made
	// before the first Apply ("" = the nft package's defaults).
	NFTTable, NFTFamily string
	// NFTMode is the nftables mode ("" or "table", or "sets": NFTTable is
	// then the operator's table; see policy.NFTables.Target).
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
}

// Open returns the backend called name ("auto", "" meaning the same,
// "nftables", "iptables" or "route"). A named backend that does not work is
// an error; "auto" tries nftables, then iptables, then routes, and takes the
// first that works. The choice is logged and returned.
func Open(ctx context.Context, name string, o Options) (rules.Backend, Choice, error) {
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
		if p, ok := b.(interface{ Paths() (string, string) }); ok {
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

// open builds and probes one backend.
func open(name string, auto bool, o Options, log *slog.Logger) (rules.Backend, error) {
	switch name {
	case NFTables:
		if auto && o.DisableNFTables {
			return nil, errDisabled
		}
		no := nft.Options{NetNS: o.NetNS, Logger: log.With("backend", NFTables), Table: o.NFTTable, Family: o.NFTFamily, Mode: o.NFTMode}
		if err := nft.Probe(no); err != nil {
			return nil, fmt.Errorf("netlink probe failed: %w", err)
		}
		b, err := nft.New(no)
		if err != nil {
			return nil, err
		}
		return b, nil
	case IPTables:
		if auto && o.DisableIPTables {
			return nil, errDisabled
		}
		b, err := ipt.New(ipt.Options{
			NetNS: o.NetNS, Path: o.IPTablesPath, Chain: o.IPTablesChain,
			DockerUser: o.IPTablesDockerUser, Logger: log.With("backend", IPTables),
		})
		if err != nil {
			return nil, err
		}
		return b, nil
	default:
		if o.Store == nil {
			return nil, errors.New("no state store to keep ban expiry in")
		}
		ro := route.Options{NetNS: o.NetNS, Store: o.Store, Type: o.RouteType, Protocol: o.RouteProtocol, Logger: log.With("backend", Route)}
		b, err := route.New(ro)
		if err != nil {
			return nil, err
		}
		if err := route.Probe(ro); err != nil {
			return nil, fmt.Errorf("netlink probe failed: %w", err)
		}
		return b, nil
	}
}
