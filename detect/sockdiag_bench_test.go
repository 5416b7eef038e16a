package detect

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/synban/synban/internal/netnstest"
)

// benchHalfOpen is how many half-open entries BenchmarkSampler builds.
const benchHalfOpen = 100_000

// BenchmarkSampler compares reading one victim namespace holding at least
// 100,000 half-open connections with sock_diag (state filter in the kernel),
// procfs (/proc/thread-self/net/tcp{,6} parsed, then filtered) and
// `ss -tan state syn-recv` exec'd in the namespace. The entries come from a
// bounded raw-socket flood (1000 forged addresses of a test prefix x 105
// SYNs) with SYN cookies off and a large backlog in the victim, so each SYN
// leaves an entry.
func BenchmarkSampler(b *testing.B) {
	netnstest.RequireRoot(b)
	netnstest.RequireCommand(b, "nft")
	netnstest.RequireCommand(b, "ss")
	l := newFloodLab(b, "bench", 71)
	v := l.victim
	v.Sysctl("net.ipv4.tcp_syncookies", "0")
	v.Sysctl("net.core.somaxconn", "262144")
	v.Sysctl("net.ipv4.tcp_max_syn_backlog", "262144")
	v.Sysctl("net.ipv4.tcp_synack_retries", "6") // entries live ~127 s
	dst := netip.AddrPortFrom(l.victimAddr, 80)
	listenIn(b, v.Path(), dst, 262144)

	began := time.Now()
	synFlood(b, l, spoofAddrs(l.spoofPrefix, 1000), dst, benchHalfOpen/1000+5)
	sd := SockDiag{NetNS: v.Path(), States: []TCPState{SynRecv}}
	var n int
	netnstest.Eventually(b, 30*time.Second, func() bool {
		n = func() int { s := mustSample(b, sd); return s.Len() }()
		return n >= benchHalfOpen
	}, "victim holds %d half-open entries, want >= %d", n, benchHalfOpen)
	b.Logf("built %d half-open entries in %s", n, time.Since(began).Round(time.Millisecond))

	ctx := context.Background()
	run := func(name string, read func() int) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			got := 0
			for b.Loop() {
				got = read()
			}
			if got < benchHalfOpen {
				b.Fatalf("%s read %d half-open entries, want >= %d", name, got, benchHalfOpen)
			}
			b.ReportMetric(float64(got), "entries")
		})
	}
	run("sockdiag", func() int {
		s, err := sd.Sample(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return s.Len()
	})
	ps, _, err := NewSampler(ctx, "procfs", v.Path(), []TCPState{SynRecv})
	if err != nil {
		b.Fatal(err)
	}
	run("procfs", func() int {
		s, err := ps.Sample(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return s.Len()
	})
	run("ss", func() int {
		out, err := v.Command(ctx, "ss", "-tanH", "state", "syn-recv").Output()
		if err != nil {
			b.Fatal(err)
		}
		return bytes.Count(out, []byte{'\n'})
	})
}
