package speaker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/synban/synban/upstream"
)

// childEnv names the speaker configuration file when the test binary runs
// as a speaker child (the pattern of state/kill_test.go): the kernel
// tests start it inside a namespace, where a whole process must live for
// its sockets to be there.
const (
	childEnv    = "SYNBAN_UPSTREAM_SPEAKER_CONFIG"
	childDirEnv = "SYNBAN_UPSTREAM_SPEAKER_DIR"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(cyclesEnv); path != "" {
		if err := runCycles(path); err != nil {
			fmt.Fprintln(os.Stderr, "stop cycles child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if path := os.Getenv(childEnv); path != "" {
		if err := runChild(path, os.Getenv(childDirEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "speaker child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild runs a Speaker on the hand-off file in dir until SIGTERM.
func runChild(path, dir string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg upstream.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	s, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := s.Start(ctx); err != nil {
		return err
	}
	return s.Run(ctx, dir)
}
