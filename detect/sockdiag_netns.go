package detect

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// NetNSPath turns a namespace reference into a file path: "" stays "" (the
// caller's own namespace), a value holding a slash is a path already (such
// as /proc/PID/ns/net), anything else names a namespace under /run/netns
// as `ip netns` creates them.
func NetNSPath(ref string) string {
	if ref == "" || strings.Contains(ref, "/") {
		return ref
	}
	return "/run/netns/" + ref
}

// openNetNS opens the namespace file of ref for a netlink Config.NetNS. It
// returns nil for the caller's own namespace.
func openNetNS(ref string) (*os.File, error) {
	p := NetNSPath(ref)
	if p == "" {
		return nil, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	return f, nil
}

// inNetNS runs fn on a locked OS thread switched into the network namespace
// ref ("" runs fn in place). The thread returns to its namespace afterwards;
// if that fails the thread stays locked, so the runtime discards it when the
// goroutine ends instead of reusing a thread in the wrong namespace.
func inNetNS(ref string, fn func() error) error {
	p := NetNSPath(ref)
	if p == "" {
		return fn()
	}
	errc := make(chan error, 1)
	// A fresh goroutine: its thread is thrown away if switching back fails.
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(p)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open network namespace %s: %w", p, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", p, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- fmt.Errorf("return from network namespace %s: %w", p, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
