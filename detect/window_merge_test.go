package detect

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/synban/synban/internal/memtest"
)

// BenchmarkMergeSpoofed merges what the socket table and conntrack read of
// a spoofed flood of 1,000,000 sources (the same flows in both, as when
// conntrack tracks every half-open connection), as a window round with
// source "auto" does. It reports the peak heap growth ("peak-MiB") beyond
// the two readings.
func BenchmarkMergeSpoofed(b *testing.B) {
	sd := Sample{Source: "sockdiag", Conns: spoofConns(spoofSources)}
	ct := Sample{Source: "conntrack", Conns: spoofConns(spoofSources)}
	var peak uint64
	b.ReportAllocs()
	for b.Loop() {
		stop := memtest.HeapPeak()
		m := MergeSamples(sd, ct)
		peak = max(peak, stop())
		if len(m.Conns) != spoofSources {
			b.Fatalf("merged %d flows, want %d", len(m.Conns), spoofSources)
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
}

// refMergeSamples is MergeSamples written plainly, one 36-byte key per
// flow: the reference of TestMergeMatchesReference. The first reading is
// kept whole (a socket table lists each flow once); a later reading's flow
// is kept unless a reading before it, or an earlier entry of its own,
// holds it.
func refMergeSamples(parts ...Sample) Sample {
	if len(parts) == 1 {
		return parts[0]
	}
	key := func(c Conn) [36]byte {
		var k [36]byte
		a := c.Local.Addr().As16()
		copy(k[:16], a[:])
		k[16], k[17] = byte(c.Local.Port()>>8), byte(c.Local.Port())
		a = c.Remote.Addr().As16()
		copy(k[18:34], a[:])
		k[34], k[35] = byte(c.Remote.Port()>>8), byte(c.Remote.Port())
		return k
	}
	var out Sample
	var names []string
	total := 0
	for _, p := range parts {
		total += p.Len()
	}
	out.Conns = make([]Conn, 0, total)
	seen := make(map[[36]byte]struct{}, total)
	for _, p := range parts {
		names = append(names, p.Source)
		if out.Time.IsZero() || (!p.Time.IsZero() && p.Time.Before(out.Time)) {
			out.Time = p.Time
		}
		out.Malformed += p.Malformed
		for _, e := range p.Errors {
			if len(out.Errors) < 10 {
				out.Errors = append(out.Errors, p.Source+": "+e)
			}
		}
		if p.Counters != nil {
			out.Counters = p.Counters
		}
		first := len(names) == 1
		for c := range p.All() {
			k := key(c)
			if _, dup := seen[k]; dup && !first {
				continue
			}
			seen[k] = struct{}{}
			out.Conns = append(out.Conns, c)
		}
	}
	out.Source = strings.Join(names, "+")
	return out
}

// TestMergeMatchesReference: on random readings (IPv4, IPv6, IPv4-mapped
// and unspecified addresses, few ports, so that flows repeat within and
// across readings; the first one in a Table or in Conns), MergeSamples
// keeps exactly the flows, in the order,
// that the reference keeps.
func TestMergeMatchesReference(t *testing.T) {
	dups := 0
	for seed := range 2000 {
		r := rng(seed)
		var parts []Sample
		for i := range 1 + r.intn(3) {
			s := randomSample(&r)
			s.Source = fmt.Sprintf("s%d", i)
			for j := range s.Conns {
				// Few remote ports: the same flow is drawn again.
				s.Conns[j].Remote = netip.AddrPortFrom(s.Conns[j].Remote.Addr(), uint16(1024+r.intn(3)))
			}
			parts = append(parts, s)
		}
		if r.intn(2) == 0 {
			// The first reading as sock_diag gives it: in the Table.
			var t Table
			for _, c := range parts[0].Conns {
				t.Append(c)
			}
			parts[0].Table, parts[0].Conns = t, nil
		}
		got, want := MergeSamples(parts...), refMergeSamples(parts...)
		gotConns, wantConns := slices.Collect(got.All()), slices.Collect(want.All())
		if !slices.Equal(gotConns, wantConns) {
			t.Fatalf("seed %d: merged %d flows, want %d", seed, got.Len(), want.Len())
		}
		got.Table, got.Conns, want.Table, want.Conns = Table{}, nil, Table{}, nil
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: merged %+v, want %+v", seed, got, want)
		}
		n := 0
		for _, p := range parts {
			n += p.Len()
		}
		dups += n - len(gotConns)
	}
	if dups < 10000 {
		t.Errorf("only %d duplicate flows over the draws; the generator is too tame", dups)
	}
	t.Logf("%d duplicates dropped, all identical", dups)
}
