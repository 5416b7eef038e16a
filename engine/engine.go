// Package engine owns one synban cycle: sample the connection tables,
// decide (analyse, classify, escalate, compile) and commit (kernel settings,
// apply, record in the state store, expire, metrics). The decision is a
// plain value (Decision) that a dry run renders and a run commits. The
// engine also does the state-store bookkeeping of manual bans, unbans and
// flushes: it is the only writer of the store.
//
// An Engine holds a logger and plain options; it reads no environment and
// keeps no global state, so the CLI, watch, the bench harness and tests run
// the same cycle. The options are also its seams: a test gives an
// in-memory backend (OpenBackend, rules/memory), a stub CrowdSec LAPI
// (NewLAPI) and its clock (Now), and runs every command without root.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/synban/synban/crowdsec"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backends"
	"github.com/synban/synban/state"
)

// ErrLocked is returned (wrapped) when another run holds the state lock.
var ErrLocked = state.ErrLocked

// DefaultStateDir is the state directory when none is given.
const DefaultStateDir = state.DefaultDir

// MaxListed is how many spared offenders and left-out bans a run logs (and
// a plan prints) one by one before it only counts them.
const MaxListed = 20

// Options are the plain settings of an Engine.
type Options struct {
	// StateDir is the state store's directory.
	StateDir string
	// Wait is how long to wait for another run's state lock (0: fail with
	// ErrLocked at once).
	Wait time.Duration
	// Backend names the firewall backend ("auto", "nftables", "iptables",
	// "route"); "" means the policy's.
	Backend string
	// DisableNFTables treats nftables as unusable.
	DisableNFTables bool
	// From, when set, replays a captured table (FROM/net/tcp and
	// FROM/net/tcp6 in /proc format) instead of sampling the live tables.
	From string
	// SSHConnection is the value of SSH_CONNECTION (else SSH_CLIENT): the
	// guard never bans the client of the session running synban.
	SSHConnection string
	// SysctlRoot is where kernel settings live ("" means /proc/sys).
	SysctlRoot string
	// XDPRoot is the bpffs the XDP fast path pins under ("" means
	// /sys/fs/bpf).
	XDPRoot string
	// OpenBackend opens the firewall backend called name with the options
	// the policy asks for, as backends.Open does; nil means backends.Open.
	// Every command goes through it (run, plan, status, explain, ban,
	// unban, flush, the sensor), so a test can give an in-memory backend
	// (rules/memory) and run the whole cycle without a kernel. With
	// o.ReadOnly the engine wraps what it returns in backends.ReadOnly.
	OpenBackend func(ctx context.Context, name string, o backends.Options) (rules.Backend, backends.Choice, error)
	// NewLAPI makes the CrowdSec LAPI client from the policy's [crowdsec]
	// (credentials read); nil means crowdsec.New. A test gives a stub.
	NewLAPI func(cfg crowdsec.Config) (LAPI, error)
	// Now is the clock of the commands not given a time (ban, unban,
	// status); nil means time.Now. A test gives the in-memory backend's.
	Now func() time.Time
}

// Engine runs synban's cycle and its bookkeeping. The zero value is not
// usable; call New.
type Engine struct {
	log  *slog.Logger
	opts Options
}

// New returns an engine logging to log (nil discards) with options o.
func New(log *slog.Logger, o Options) *Engine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{log: log, opts: o}
}

// InputError marks bad input (a capture that cannot be replayed, a ban the
// policy refuses): the CLI maps it to exit code 2.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// BadInput returns an InputError with a formatted message.
func BadInput(format string, args ...any) error {
	return &InputError{fmt.Errorf(format, args...)}
}

// now is Options.Now, else time.Now.
func (e *Engine) now() time.Time {
	if e.opts.Now != nil {
		return e.opts.Now()
	}
	return time.Now()
}

// BackendName is the backend asked for: Options.Backend, else the
// policy's.
func (e *Engine) BackendName(p *policy.Policy) string {
	if e.opts.Backend != "" {
		return e.opts.Backend
	}
	return p.Backend
}

// backendOptions are the backend options the policy and the engine's
// options ask for: one place, so that run, status and plan choose alike.
func (e *Engine) backendOptions(p *policy.Policy, store *state.Store) backends.Options {
	nftMode, nftTable, nftFamily := p.NFTables.Target()
	return backends.Options{
		Logger:             e.log,
		Store:              store,
		DisableNFTables:    e.opts.DisableNFTables,
		NFTMode:            nftMode,
		NFTTable:           nftTable,
		NFTFamily:          nftFamily,
		IPTablesPath:       p.IPTables.Path,
		IPTablesChain:      p.IPTables.Chain,
		IPTablesDockerUser: p.IPTables.DockerUser,
		RouteType:          p.Route.Type,
		RouteProtocol:      p.Route.Protocol,
	}
}

// open is backends.Open, or Options.OpenBackend when set: the one place
// the engine opens a backend.
func (e *Engine) open(ctx context.Context, name string, o backends.Options) (rules.Backend, backends.Choice, error) {
	if e.opts.OpenBackend == nil {
		return backends.Open(ctx, name, o)
	}
	b, choice, err := e.opts.OpenBackend(ctx, name, o)
	if err == nil && o.ReadOnly {
		b = backends.ReadOnly(b)
	}
	return b, choice, err
}

// choose is backends.Choose, or with Options.OpenBackend the choice it
// makes opening read-only.
func (e *Engine) choose(ctx context.Context, name string, o backends.Options) (backends.Choice, error) {
	if e.opts.OpenBackend == nil {
		return backends.Choose(ctx, name, o)
	}
	o.ReadOnly = true
	_, choice, err := e.opts.OpenBackend(ctx, name, o)
	return choice, err
}

// openBackend picks the backend (options or policy) and logs why.
func (e *Engine) openBackend(ctx context.Context, p *policy.Policy, store *state.Store) (rules.Backend, backends.Choice, error) {
	b, choice, err := e.open(ctx, e.BackendName(p), e.backendOptions(p, store))
	if err != nil {
		return nil, choice, fmt.Errorf("choose a firewall backend: %w", err)
	}
	return b, choice, nil
}

// lockedStore opens the state store and takes the run lock; cron runs that
// overlap fail with ErrLocked instead of piling up. With Wait > 0 it waits
// up to that long for the lock first.
func (e *Engine) lockedStore(ctx context.Context) (*state.Store, func() error, error) {
	e.log.Debug("taking the state lock", "dir", e.opts.StateDir, "wait", e.opts.Wait)
	s, err := state.Open(e.opts.StateDir)
	if err != nil {
		return nil, nil, fmt.Errorf("open state store: %w", err)
	}
	s.SetLogger(e.log)
	wait := e.opts.Wait
	if wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	release, err := s.Lock(ctx, wait > 0)
	if err != nil {
		return nil, nil, err
	}
	return s, release, nil
}

// locked is what lockAndOpen hands an operation that changes bans: the
// store under its lock, its metadata, and the backend.
type locked struct {
	store *state.Store
	// head is the store's metadata as the lock found it.
	head    state.Head
	backend rules.Backend
	choice  backends.Choice
	// release gives the lock back; the caller defers it.
	release func() error
}

// lockAndOpen takes the state lock, checks that the state store opens and
// its metadata reads, and opens the backend, for the operations that change
// bans. A store that cannot be read (corrupt, or a link or FIFO planted as
// its file) stops the operation before the kernel is touched: a ban applied
// and then not recorded would never be restored or expired by synban. It
// reads no ban: the store's metadata (Head) is what a run needs first. The
// caller defers release.
func (e *Engine) lockAndOpen(ctx context.Context, p *policy.Policy) (*locked, error) {
	store, release, err := e.lockedStore(ctx)
	if err != nil {
		return nil, err
	}
	head, err := store.Head()
	if err != nil {
		release()
		return nil, fmt.Errorf("load state: %w", err)
	}
	b, choice, err := e.openBackend(ctx, p, store)
	if err != nil {
		release()
		return nil, err
	}
	return &locked{store: store, head: head, backend: b, choice: choice, release: release}, nil
}

// readState loads the state store read-only when it exists; a missing state
// directory is not an error (a dry run on a fresh host writes nothing).
func readState(dir string) (*state.State, error) {
	if dir == "" {
		dir = state.DefaultDir
	}
	exists := false
	for _, name := range []string{state.FileName, state.LegacyFileName} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			exists = true
		}
	}
	if !exists {
		return nil, nil
	}
	s, err := state.Open(dir)
	if err != nil {
		return nil, err
	}
	return s.Load()
}
