// Command synban samples the kernel's connection tables, decides which
// sources are flooding the host, and compiles that into firewall state.
//
// Exit codes: 0 success, 1 runtime failure, 2 bad input (policy, arguments),
// 3 another synban run holds the state lock.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
