package rules

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/synban/synban/internal/memtest"
	"github.com/synban/synban/policy"
)

// BenchmarkCompileMillion compiles 1,000,000 single-address verdicts, as
// Analyze gives them for a million sources over a rule's threshold, with
// the default max_entries (65,536): most are omitted over the cap. It
// reports the peak heap growth ("peak-MiB") beside B/op.
func BenchmarkCompileMillion(b *testing.B) {
	const n = 1_000_000
	vs := make([]Offence, n)
	for i := range vs {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], 0x64400000+uint32(i))
		addr := netip.AddrFrom4(a)
		vs[i] = Offence{Subject: netip.PrefixFrom(addr, 32), Rule: "syn-flood", State: policy.StateSynRecv,
			Count: 1, Threshold: 1, Sources: 1, BanFor: 10 * time.Minute,
			Reason: fmt.Sprintf("1 syn_recv from %s >= 1 (rule syn-flood, 1/1 samples)", addr)}
	}
	p := policy.Default()
	var peak uint64
	b.ReportAllocs()
	for b.Loop() {
		stop := memtest.HeapPeak()
		rs, omitted, err := Compile(p, vs, nil)
		peak = max(peak, stop())
		if err != nil || len(rs.Bans) != p.Ban.MaxEntries || len(omitted) != n-p.Ban.MaxEntries {
			b.Fatalf("%d bans, %d omitted: %v", len(rs.Bans), len(omitted), err)
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
}
