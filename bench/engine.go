package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/synban/synban/engine"
	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/templates"
)

// The harness measures synban's own cycle (time and allocations) by calling
// the engine in-process, as watch and the tests do, rather than through the
// synban binary: a process start, flag parsing and output are not what the
// rows are about. Only the peak-RSS columns of the run table still run the
// binary (synbanRun), since a process's peak resident set is the point
// there.
//
// The engine works in the namespace of the thread that calls it: it is
// given no namespace path (engine.Options has none), opens every netlink
// socket (sock_diag, conntrack, nftables, rtnetlink) on the calling thread,
// reads /proc/thread-self/net and /proc/sys/net from it, and starts no
// goroutine of its own. engineIn therefore runs the call on one OS thread
// locked inside ns (internal/nsenter.Do), and nothing of it runs elsewhere.

// cost is what one in-process call took: wall time and the heap
// allocations made meanwhile (count and bytes, from runtime.MemStats; the
// harness runs nothing else concurrently while it measures).
type cost struct {
	wall          time.Duration
	allocs, bytes uint64
}

// engineIn runs fn inside ns on a locked OS thread and returns its cost.
func engineIn(ns *netns, fn func() error) (cost, error) {
	var c cost
	err := nsenter.Do(ns.path(), func() error {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		err := fn()
		c.wall = time.Since(start)
		runtime.ReadMemStats(&after)
		c.allocs, c.bytes = after.Mallocs-before.Mallocs, after.TotalAlloc-before.TotalAlloc
		return err
	})
	return c, err
}

// add records c in s.
func (s *series) add(c cost) {
	s.walls = append(s.walls, c.wall)
	s.allocs = append(s.allocs, c.allocs)
	s.allocBytes = append(s.allocBytes, c.bytes)
}

// engineSample is what `synban sample` computes, in-process in ns: one
// window through the engine (samplers as the policy says, conntrack merged
// in), tabulated per source and classified. It returns the sources counted.
func engineSample(ctx context.Context, ns *netns, p *policy.Policy) (cost, int, error) {
	e := engine.New(nil, engine.Options{})
	var n int
	c, err := engineIn(ns, func() error {
		s, err := e.SampleSources(ctx, p)
		if err != nil {
			return err
		}
		n = len(s.Rows)
		return nil
	})
	return c, n, err
}

// enginePlan is what `synban plan` does, in-process in ns: the engine's
// decision (sample, host addresses, analyse, classify, compile, the backend
// a run would choose, probed read-only) rendered in that backend's syntax.
// stateDir holds no store, so nothing is read or written there. It returns
// the sources the decision saw.
func enginePlan(ctx context.Context, ns *netns, p *policy.Policy, stateDir string) (cost, int, error) {
	e := engine.New(nil, engine.Options{StateDir: stateDir})
	var n int
	c, err := engineIn(ns, func() error {
		d, choice, err := e.Plan(ctx, p, time.Now())
		if err != nil {
			return err
		}
		n = d.Report.Sources
		return templates.Ruleset(io.Discard, d.Ruleset, d.Policy, templates.FormatFor(choice.Name))
	})
	return c, n, err
}

// engineRun is one `synban run` cycle, in-process in ns, with the state
// store in stateDir; it checks that the run restored want bans and, on the
// first run (first), created the table and added them all, else changed
// nothing.
func engineRun(ctx context.Context, ns *netns, p *policy.Policy, stateDir string, want int, first bool) (cost, error) {
	e := engine.New(nil, engine.Options{StateDir: stateDir})
	var out *engine.Outcome
	c, err := engineIn(ns, func() error {
		var err error
		out, err = e.Run(ctx, p, time.Now())
		return err
	})
	if err != nil {
		return c, fmt.Errorf("engine run: %w", err)
	}
	res := out.Result
	if out.Decision.Restored != want || first && (res.Added != want || !res.Created) || !first && (res.Added != 0 || res.Created) {
		return c, fmt.Errorf("engine run (first %v) with %d stored bans: restored %d, added %d, created %v",
			first, want, out.Decision.Restored, res.Added, res.Created)
	}
	return c, nil
}
