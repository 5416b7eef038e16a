package route

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backendtest"
)

// inNS runs fn on a thread switched into the namespace at path; sockets fn
// creates stay in that namespace.
func inNS(t *testing.T, path string, fn func() error) error {
	t.Helper()
	return nsenter.Do(path, fn)
}

// tcpInSegs reads Tcp InSegs (segments received, SYNs included) in ns.
func tcpInSegs(t *testing.T, ns *netnstest.NS) uint64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(ns.MustRun("cat", "/proc/net/snmp")))
	var header []string
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, h := range header {
			if h == "InSegs" && i < len(f) {
				n, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
	}
	t.Fatal("no Tcp InSegs in /proc/net/snmp")
	return 0
}

// TestBanBlocksConnect shows what a reject route does and does not do: with
// the attacker's address banned in the victim, the attacker's SYNs still
// arrive, but the SYN-ACK has no route back, so its connect fails; after
// Unban it works again.
func TestBanBlocksConnect(t *testing.T) {
	victim, attacker := netnstest.New(t, "rv"), netnstest.New(t, "ra")
	netnstest.Link(t, victim, attacker,
		[]string{"10.211.0.1/24", "fd00:211::1/64"},
		[]string{"10.211.0.2/24", "fd00:211::2/64"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var lns []net.Listener
	for _, addr := range []string{"10.211.0.1:8211", "[fd00:211::1]:8211"} {
		err := inNS(t, victim.Path(), func() error {
			ln, err := net.Listen("tcp", addr)
			if err == nil {
				lns = append(lns, ln)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ln := range lns {
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	dial := func(addr string, timeout time.Duration) error {
		return inNS(t, attacker.Path(), func() error {
			c, err := net.DialTimeout("tcp", addr, timeout)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	targets := []string{"10.211.0.1:8211", "[fd00:211::1]:8211"}
	for _, a := range targets {
		if err := dial(a, 5*time.Second); err != nil {
			t.Fatalf("before the ban, connect to %s failed: %v", a, err)
		}
	}

	b, err := New(Options{NetNS: victim.Path(), Store: newStore(t)})
	if err != nil {
		t.Fatal(err)
	}
	bans := []rules.Ban{
		{Prefix: netip.MustParsePrefix("10.211.0.2/32"), Timeout: 10 * time.Minute, Reason: "test"},
		{Prefix: netip.MustParsePrefix("fd00:211::2/128"), Timeout: 10 * time.Minute, Reason: "test"},
	}
	if _, err := b.Apply(ctx, backendtest.BaseRuleset(bans...)); err != nil {
		t.Fatal(err)
	}
	for _, a := range targets {
		before := tcpInSegs(t, victim)
		err := dial(a, 1500*time.Millisecond)
		if err == nil {
			t.Fatalf("with the attacker banned, connect to %s succeeded", a)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("connect to %s failed with %v; expected a timeout (SYN-ACK never comes back)", a, err)
		}
		if after := tcpInSegs(t, victim); after <= before {
			t.Errorf("victim's Tcp InSegs did not grow (%d -> %d): the SYNs should still arrive", before, after)
		} else {
			t.Logf("%s: connect failed (%v); %d TCP segments still reached the victim", a, err, after-before)
		}
	}

	if n, err := b.Unban(ctx, []netip.Prefix{bans[0].Prefix, bans[1].Prefix}); err != nil || n != 2 {
		t.Fatalf("Unban = %d, %v", n, err)
	}
	for _, a := range targets {
		if err := dial(a, 5*time.Second); err != nil {
			t.Errorf("after Unban, connect to %s failed: %v", a, err)
		}
	}
}
