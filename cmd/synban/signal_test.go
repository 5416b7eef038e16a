package main

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/state"
)

// slowPolicy samples for 30 s: a command that does not honour a signal
// while it samples would outlive the test's one-second bound many times.
const slowPolicy = `[sample]
count = 30
interval = "1s"
`

// TestSignalEndsCommands runs the built synban binary as a child process in
// a namespace, sends it SIGTERM (or SIGINT) once it has started sampling
// (or waiting for a state lock another run holds), and requires it to exit
// within a second: plan and run with exit 1 and
// "synban CMD: interrupted", watch with exit 0.
func TestSignalEndsCommands(t *testing.T) {
	netnstest.RequireRoot(t)
	bin := synbanBin.Path(t)
	pol := writePolicy(t, slowPolicy)
	for _, tc := range []struct {
		name    string
		args    []string
		sig     syscall.Signal
		code    int
		started string // the log line that shows it is under way
		locked  bool   // another run holds the state lock
	}{
		{"plan", []string{"plan"}, syscall.SIGTERM, exitFailure, "samplers chosen", false},
		{"run", []string{"run", "--backend", "nftables"}, syscall.SIGTERM, exitFailure, "samplers chosen", false},
		{"run-sigint", []string{"run", "--backend", "nftables"}, syscall.SIGINT, exitFailure, "samplers chosen", false},
		{"run-wait", []string{"run", "--backend", "nftables", "--wait", "1m"}, syscall.SIGTERM, exitFailure, "taking the state lock", true},
		{"watch", []string{"watch", "--every", "1m", "--backend", "nftables"}, syscall.SIGTERM, exitOK, "samplers chosen", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.New(t, "sig")
			dir := filepath.Join(t.TempDir(), "state")
			if tc.locked {
				store, err := state.Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				release, err := store.Lock(context.Background(), false)
				if err != nil {
					t.Fatal(err)
				}
				defer release()
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			args := append(append([]string{bin}, tc.args...), "-c", pol, "--state-dir", dir, "--log-level", "debug")
			cmd := ns.Command(ctx, args...)
			var out, errb netnstest.LogBuffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			netnstest.Eventually(t, 20*time.Second, func() bool {
				return strings.Contains(errb.String(), tc.started)
			}, "synban %v did not log %q:\n%s", tc.args, tc.started, errb.String())
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			sent := time.Now()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("synban %v still running 5 s after %v:\n%s", tc.args, tc.sig, errb.String())
			}
			took := time.Since(sent)
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if took > time.Second {
				t.Errorf("synban %v took %s to end after %v, want at most 1s", tc.args, took.Round(time.Millisecond), tc.sig)
			}
			if code != tc.code {
				t.Errorf("synban %v: exit %d after %v, want %d:\n%s", tc.args, code, tc.sig, tc.code, errb.String())
			}
			want := "synban " + tc.args[0] + ": interrupted\n"
			if got := strings.Contains(errb.String(), want); got != (tc.code == exitFailure) {
				t.Errorf("synban %v: stderr has %q: %v, want %v:\n%s", tc.args, want, got, tc.code == exitFailure, errb.String())
			}
		})
	}
}
