package backends

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/state"
)

func options(t *testing.T, ns *netnstest.NS, logs *netnstest.LogBuffer) Options {
	t.Helper()
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return Options{NetNS: ns.Path(), Store: st, Logger: slog.New(slog.NewTextHandler(logs, nil))}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestAutoChoice(t *testing.T) {
	ns := netnstest.New(t, "choose")
	missing := filepath.Join(t.TempDir(), "no-such-dir", "iptables")

	t.Run("nftables", func(t *testing.T) {
		var logs netnstest.LogBuffer
		b, ch, err := Open(ctx(t), "auto", options(t, ns, &logs))
		if err != nil {
			t.Fatalf("Open(auto): %v (%s)", err, ch.Why)
		}
		if b.Name() != NFTables || ch.Name != NFTables || len(ch.Tried) != 1 {
			t.Fatalf("auto chose %s (%+v), want nftables first", b.Name(), ch)
		}
		if !strings.Contains(logs.String(), "chose nftables") {
			t.Errorf("choice not logged: %s", logs.String())
		}
	})

	t.Run("iptables", func(t *testing.T) {
		netnstest.RequireCommand(t, "iptables")
		var logs netnstest.LogBuffer
		o := options(t, ns, &logs)
		o.DisableNFTables = true
		b, ch, err := Open(ctx(t), "", o)
		if err != nil {
			t.Fatalf("Open: %v (%s)", err, ch.Why)
		}
		if b.Name() != IPTables || ch.Name != IPTables {
			t.Fatalf("with nftables disabled, auto chose %s (%s), want iptables", b.Name(), ch.Why)
		}
		if len(ch.Tried) != 2 || ch.Tried[0] != "nftables: disabled by option" || !strings.HasPrefix(ch.Tried[1], "iptables: works (") {
			t.Errorf("Tried = %q", ch.Tried)
		}
		t.Logf("why: %s", ch.Why)
	})

	t.Run("route", func(t *testing.T) {
		var logs netnstest.LogBuffer
		o := options(t, ns, &logs)
		o.DisableNFTables = true
		o.IPTablesPath = missing
		b, ch, err := Open(ctx(t), "auto", o)
		if err != nil {
			t.Fatalf("Open: %v (%s)", err, ch.Why)
		}
		if b.Name() != Route || ch.Name != Route {
			t.Fatalf("with nftables disabled and no iptables, auto chose %s (%s), want route", b.Name(), ch.Why)
		}
		for _, w := range []string{"nftables: disabled by option", "iptables: ", missing, "chose route"} {
			if !strings.Contains(ch.Why, w) {
				t.Errorf("Why %q does not mention %q", ch.Why, w)
			}
		}
		if len(ch.Tried) != 3 {
			t.Errorf("Tried = %q, want 3 entries", ch.Tried)
		}
		if !strings.Contains(logs.String(), "chose route") {
			t.Errorf("choice not logged: %s", logs.String())
		}
		t.Logf("why: %s", ch.Why)
	})
}

func TestNamed(t *testing.T) {
	ns := netnstest.New(t, "named")
	var logs netnstest.LogBuffer
	o := options(t, ns, &logs)
	o.DisableNFTables = true // only applies to auto
	b, ch, err := Open(ctx(t), "nftables", o)
	if err != nil || b.Name() != NFTables {
		t.Fatalf("Open(nftables) = %v, %+v, %v", b, ch, err)
	}
	b, _, err = Open(ctx(t), "route", o)
	if err != nil || b.Name() != Route {
		t.Fatalf("Open(route) = %v, %v", b, err)
	}

	o.IPTablesPath = filepath.Join(t.TempDir(), "iptables")
	if _, ch, err := Open(ctx(t), "iptables", o); err == nil {
		t.Error("Open(iptables) with a missing program succeeded; a named backend must not fall back")
	} else if ch.Name != "" || !strings.HasPrefix(ch.Why, "iptables: ") {
		t.Errorf("failed choice = %+v", ch)
	}
	if _, _, err := Open(ctx(t), "pf", o); err == nil {
		t.Error("Open(pf) succeeded")
	}
	o.Store = nil
	if _, _, err := Open(ctx(t), "route", o); err == nil || !strings.Contains(err.Error(), "state store") {
		t.Errorf("Open(route) without a store = %v", err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Open(cctx, "auto", o); err == nil {
		t.Error("Open with a cancelled context succeeded")
	}
}

// TestReadOnlyCreatesNothing: every backend opened read-only (as synban
// status opens it), probed, listed, counted and inspected in a fresh
// namespace creates nothing, needs no state store, says what is missing,
// and refuses changes.
func TestReadOnlyCreatesNothing(t *testing.T) {
	netnstest.RequireCommand(t, "iptables-save")
	netnstest.RequireCommand(t, "ipset")
	ns := netnstest.New(t, "robk")
	before := ns.KernelState()
	for _, tc := range []struct {
		name    string
		missing []string
	}{
		{"auto", []string{"table inet synban"}},
		{NFTables, []string{"table inet synban"}},
		{IPTables, []string{"ipv4 chain SYNBAN", "ipv6 chain SYNBAN", "ipset synban-ban-v4", "ipset synban-ban-net-v4", "ipset synban-ban-v6", "ipset synban-ban-net-v6"}},
		{Route, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, ch, err := Open(ctx(t), tc.name, Options{NetNS: ns.Path(), ReadOnly: true})
			if err != nil {
				t.Fatalf("Open(%s, read-only, no store): %v (%s)", tc.name, err, ch.Why)
			}
			if bans, err := b.Bans(ctx(t)); err != nil || len(bans) != 0 {
				t.Errorf("Bans = %v, %v", bans, err)
			}
			if _, err := b.Counters(ctx(t)); err != nil {
				t.Errorf("Counters: %v", err)
			}
			in, ok := b.(Inspector)
			if !ok {
				t.Fatalf("read-only %s backend has no Missing", ch.Name)
			}
			missing, err := in.Missing(ctx(t))
			if err != nil || strings.Join(missing, "|") != strings.Join(tc.missing, "|") {
				t.Errorf("Missing = %q, %v; want %q", missing, err, tc.missing)
			}
			if _, err := b.Apply(ctx(t), nil); !errors.Is(err, ErrReadOnly) {
				t.Errorf("Apply: %v, want ErrReadOnly", err)
			}
			if _, err := b.Unban(ctx(t), nil); !errors.Is(err, ErrReadOnly) {
				t.Errorf("Unban: %v, want ErrReadOnly", err)
			}
			if err := b.Flush(ctx(t)); !errors.Is(err, ErrReadOnly) {
				t.Errorf("Flush: %v, want ErrReadOnly", err)
			}
			if ch, err := Choose(ctx(t), tc.name, Options{NetNS: ns.Path()}); err != nil || ch.Assumed {
				t.Errorf("Choose(%s) as root = %+v, %v; want a probed choice", tc.name, ch, err)
			}
			if after := ns.KernelState(); after != before {
				t.Errorf("read-only %s changed the kernel:\nbefore:\n%s\nafter:\n%s", ch.Name, before, after)
			}
		})
	}
}
