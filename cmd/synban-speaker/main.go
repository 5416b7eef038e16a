// Command synban-speaker is synban's upstream BGP speaker. It is not run by
// hand: `synban upstream` checks the policy, takes the speaker's lock on
// the state directory and replaces itself with this program
// (cmd/internal/handover), which holds the BGP sessions and keeps the
// announcements equal to the hand-off file until SIGTERM or SIGINT, then
// withdraws everything and closes the sessions.
//
// It is a binary of its own so that the BGP code (its sessions, GoBGP's
// message codec) is linked and initialised only here, not in every synban
// command cron starts.
//
// Exit codes, as synban's: 0 stopped on a signal, 1 runtime failure,
// 2 bad input (arguments, configuration).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/synban/synban/cmd/internal/handover"
	"github.com/synban/synban/upstream/speaker"
)

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// run receives the hand-over and runs the speaker until ctx ends. Errors
// are reported as synban upstream's, the command the operator ran.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "synban upstream: %v\n", err)
		return code
	}
	r, err := handover.Receive(args)
	if err != nil {
		// Not handed over by synban upstream: name this program.
		fmt.Fprintf(stderr, "%s: %v\n", handover.Binary, err)
		return exitUsage
	}
	defer r.Lock.Close()
	var level slog.Level
	if err := level.UnmarshalText([]byte(r.LogLevel)); err != nil {
		return fail(exitUsage, fmt.Errorf("%s: --log-level: %w", handover.Binary, err))
	}
	hopts := &slog.HandlerOptions{Level: level}
	log := slog.New(slog.NewTextHandler(stderr, hopts))
	if r.LogJSON {
		log = slog.New(slog.NewJSONHandler(stderr, hopts))
	}
	s, err := speaker.New(r.Config, log)
	if err != nil {
		return fail(exitUsage, err)
	}
	if err := s.Start(ctx); err != nil {
		return fail(exitFailure, err)
	}
	log.Info("upstream speaker running", "state_dir", r.StateDir, "neighbors", len(r.Config.Neighbors))
	if err := s.Run(ctx, r.StateDir); err != nil {
		if ctx.Err() != nil {
			// The withdrawals and the Cease went out; what failed after
			// the signal is logged by Stop.
			log.Debug("interrupted", "err", err)
		}
		return fail(exitFailure, err)
	}
	return exitOK
}
