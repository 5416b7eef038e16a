package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the programs the end-to-end
// tests run inside network namespaces: synban itself, a TCP listener with a
// large backlog, and a TCP client. SYNBAN_TEST_ROLE selects one.
func TestMain(m *testing.M) {
	switch os.Getenv("SYNBAN_TEST_ROLE") {
	case "":
		os.Exit(synbanBin.RunTests(m))
	case "synban":
		// As main does: SIGTERM and SIGINT cancel the context (synban watch).
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	case "listen":
		os.Exit(listen(os.Args[1]))
	case "dial":
		os.Exit(dial(os.Args[1], os.Args[2]))
	default:
		fmt.Fprintln(os.Stderr, "unknown SYNBAN_TEST_ROLE")
		os.Exit(2)
	}
}

// listen accepts and closes connections on addr, with a listen backlog large
// enough that a bounded flood leaves its half-open entries in the table.
func listen(addr string) int {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	fmt.Println("listening")
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		_, _ = c.Write([]byte("hello\n"))
		_ = c.Close()
	}
}

// dial connects to addr within the timeout in seconds and reads the greeting.
func dial(addr, timeout string) int {
	secs, _ := strconv.Atoi(timeout)
	c, err := net.DialTimeout("tcp", addr, time.Duration(secs)*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		return 1
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(time.Duration(secs) * time.Second))
	buf := make([]byte, 6)
	if _, err := c.Read(buf); err != nil {
		fmt.Fprintln(os.Stderr, "read:", err)
		return 1
	}
	fmt.Print(string(buf))
	return 0
}
