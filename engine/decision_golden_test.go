package engine

// This file pins the decisions the engine makes on captured and generated
// connection tables: verdicts, spared offenders, the flood's classification
// (and so the spoof filter), the compiled bans and the per-source table of
// `synban sample`, for the embedded default policy and a few policies of
// testdata/policy. The sampling and decision path may change how it holds
// the tables; it must not change what it decides. After a deliberate change
// of a decision, rewrite the files with
//
//	SYNBAN_UPDATE_GOLDEN=1 go test ./engine/ -run TestDecisionGolden
//
// and review the diff.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/golden"
	"github.com/synban/synban/policy"
)

const decisionGoldenDir = "../testdata/decisions"

// goldenHost is the fixture host's addresses, protected as a run protects
// the host's own (fixed, so the decision does not depend on this machine).
var goldenHost = []policy.Protected{
	{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Why: "host address"},
	{Prefix: netip.MustParsePrefix("2001:db8:0:1::10/128"), Why: "host address"},
}

// seqSampler returns its tables in turn, the last one again once they run out.
type seqSampler struct {
	name   string
	tables [][]detect.Conn
	i      int
}

func (s *seqSampler) Name() string { return s.name }
func (s *seqSampler) Sample(context.Context) (detect.Sample, error) {
	t := s.tables[min(s.i, len(s.tables)-1)]
	s.i++
	return detect.Sample{Source: s.name, Time: time.Unix(1700000000, 0), Conns: t}, nil
}

// goldenRand is splitmix64, so the generated tables do not depend on
// math/rand's algorithms.
type goldenRand uint64

func (r *goldenRand) next() uint64 {
	*r += 0x9e3779b97f4a7c15
	z := uint64(*r)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func gConn(local, remote string, lport, rport uint16, st detect.TCPState) detect.Conn {
	return detect.Conn{
		Local:  netip.AddrPortFrom(netip.MustParseAddr(local), lport),
		Remote: netip.AddrPortFrom(netip.MustParseAddr(remote), rport),
		State:  st,
	}
}

func v4(a, b, c, d int) string { return fmt.Sprintf("%d.%d.%d.%d", a, b, c, d) }

// slash16Flood is the scenario: 1,000 sources of one /16 with
// perSource half-open entries each to port 80, and established clients.
func slash16Flood(perSource, established int) []detect.Conn {
	var out []detect.Conn
	for s := 0; s < 1000; s++ {
		src := v4(198, 18, s/250, 1+s%250)
		for j := 0; j < perSource; j++ {
			out = append(out, gConn("192.0.2.10", src, 80, uint16(1024+j), detect.SynRecv))
		}
	}
	for i := 0; i < established; i++ {
		src := v4(198, 19, (i/100)%256, 1+i%100)
		out = append(out, gConn("192.0.2.10", src, 443, uint16(30000+i%30000), detect.Established))
	}
	return out
}

// spoofed is a SYN flood from n forged addresses spread over the IPv4
// space's test ranges, one or two half-open entries each, plus a few real
// clients.
func spoofed(n int) []detect.Conn {
	r := goldenRand(7)
	var out []detect.Conn
	for i := 0; i < n; i++ {
		x := r.next()
		src := v4(100+int(x%20), int(x>>8)%256, int(x>>16)%256, 1+int(x>>24)%254)
		out = append(out, gConn("192.0.2.10", src, 80, uint16(x>>32), detect.SynRecv))
		if x%5 == 0 {
			out = append(out, gConn("192.0.2.10", src, 80, uint16(x>>40), detect.NewSynRecv))
		}
	}
	for i := 0; i < 60; i++ {
		out = append(out, gConn("192.0.2.10", v4(203, 0, 113, 7), 80, uint16(5000+i), detect.SynRecv))
	}
	for i := 0; i < 300; i++ {
		out = append(out, gConn("192.0.2.10", v4(198, 18, 9, 1+i%3), 443, uint16(7000+i), detect.Established))
	}
	return out
}

// mixedFamilies holds IPv4, IPv6 and IPv4-mapped remotes (as procfs and
// conntrack may report them before unmapping), on several states and ports.
func mixedFamilies() []detect.Conn {
	var out []detect.Conn
	for i := 0; i < 80; i++ {
		out = append(out, gConn("2001:db8:0:1::10", "2001:db8:66::6", 443, uint16(2000+i), detect.SynRecv))
	}
	for s := 0; s < 150; s++ {
		src := fmt.Sprintf("2001:db8:bad:1::%x", s+1)
		out = append(out, gConn("2001:db8:0:1::10", src, 443, 3000, detect.SynRecv), gConn("2001:db8:0:1::10", src, 443, 3001, detect.SynRecv))
	}
	for i := 0; i < 45; i++ {
		out = append(out, gConn("::ffff:192.0.2.10", "::ffff:203.0.113.50", 8443, uint16(4000+i), detect.SynRecv))
		out = append(out, gConn("192.0.2.10", "203.0.113.50", 80, uint16(4000+i), detect.SynRecv))
	}
	for s := 0; s < 220; s++ {
		out = append(out, gConn("192.0.2.10", v4(198, 51, 100, 1+s%220), 80, uint16(5000+s), detect.SynRecv))
	}
	for i := 0; i < 260; i++ {
		out = append(out, gConn("2001:db8:0:1::10", "2001:db8:2000::9", 80, uint16(6000+i), detect.Established))
		out = append(out, gConn("192.0.2.10", "198.18.3.3", 22, uint16(6000+i), detect.TimeWait))
	}
	// Not connected to anyone: a bound, closed socket.
	out = append(out, gConn("0.0.0.0", "0.0.0.0", 0, 0, detect.Close))
	// The host itself, and loopback.
	for i := 0; i < 60; i++ {
		out = append(out, gConn("127.0.0.1", "127.0.0.1", 80, uint16(9000+i), detect.SynRecv))
		out = append(out, gConn("192.0.2.10", "192.0.2.10", 80, uint16(9000+i), detect.SynRecv))
	}
	return out
}

// busyNAT is a few addresses with many established connections each (users
// behind NAT), one of them over conn-flood, and a real half-open flooder.
func busyNAT() []detect.Conn {
	var out []detect.Conn
	for n, count := range []int{150, 199, 200, 450} {
		src := v4(198, 18, 20, 1+n)
		for i := 0; i < count; i++ {
			port := uint16(443)
			if i%3 == 0 {
				port = 80
			}
			out = append(out, gConn("192.0.2.10", src, port, uint16(10000+i), detect.Established))
		}
		for i := 0; i < 30; i++ {
			out = append(out, gConn("192.0.2.10", src, 443, uint16(20000+i), detect.SynRecv))
		}
	}
	for i := 0; i < 51; i++ {
		out = append(out, gConn("192.0.2.10", "203.0.113.99", 443, uint16(3000+i), detect.SynRecv))
	}
	return out
}

// conntrackPart is what conntrack adds beside the socket table: some of the
// socket table's flows again (as established, which the merge must drop in
// favour of the socket's state) and half-open flows the socket table does
// not hold (answered SYN cookies).
func conntrackPart(sock []detect.Conn) []detect.Conn {
	var out []detect.Conn
	for i := 0; i < len(sock); i += 7 {
		c := sock[i]
		c.State = detect.Established
		out = append(out, c)
	}
	for i := 0; i < 70; i++ {
		out = append(out, gConn("192.0.2.10", "203.0.113.200", 80, uint16(40000+i), detect.SynRecv))
		out = append(out, gConn("::ffff:192.0.2.10", "::ffff:203.0.113.201", 80, uint16(40000+i), detect.SynRecv))
	}
	return out
}

// goldenTable is one decision input: the samplers of a window and the
// TcpExt change over it.
type goldenTable struct {
	name     string
	samplers func() []detect.Sampler
	delta    detect.TcpExt
}

func one(name string, c []detect.Conn) func() []detect.Sampler {
	return func() []detect.Sampler { return []detect.Sampler{&seqSampler{name: name, tables: [][]detect.Conn{c}}} }
}

func goldenTables(t *testing.T) []goldenTable {
	var tables []goldenTable
	for _, dir := range []string{"single-flood", "prefix-flood", "mixed", "malformed", "quiet"} {
		s, err := detect.ProcFS{Root: filepath.Join("..", "testdata", "proc", dir)}.Sample(context.Background())
		if err != nil {
			t.Fatalf("read fixture %s: %v", dir, err)
		}
		fx := s
		tables = append(tables, goldenTable{name: "proc-" + dir, samplers: func() []detect.Sampler {
			return []detect.Sampler{fixedSampler{fx}}
		}})
	}
	flood := slash16Flood(100, 2000)
	spoof := spoofed(20000)
	mixed := mixedFamilies()
	nat := busyNAT()
	tables = append(tables,
		goldenTable{name: "slash16-1000x100", samplers: one("sockdiag", flood)},
		goldenTable{name: "slash16-1000x3", samplers: one("sockdiag", slash16Flood(3, 300))},
		goldenTable{name: "spoofed", samplers: one("sockdiag", spoof), delta: detect.TcpExt{SyncookiesSent: 50000, SyncookiesRecv: 10, TCPReqQFullDoCookies: 50000}},
		goldenTable{name: "spoofed-no-cookies", samplers: one("sockdiag", spoof)},
		goldenTable{name: "mixed-families", samplers: one("sockdiag", mixed)},
		goldenTable{name: "busy-nat", samplers: one("sockdiag", nat)},
		goldenTable{name: "merged-conntrack", samplers: func() []detect.Sampler {
			return []detect.Sampler{
				&seqSampler{name: "sockdiag", tables: [][]detect.Conn{mixed}},
				&seqSampler{name: "conntrack", tables: [][]detect.Conn{conntrackPart(mixed)}},
			}
		}},
		goldenTable{name: "window-changing", samplers: func() []detect.Sampler {
			// Three different tables: K-of-N and per-sample peaks.
			return []detect.Sampler{&seqSampler{name: "sockdiag", tables: [][]detect.Conn{nat, mixed, append(append([]detect.Conn(nil), nat...), slash16Flood(1, 0)...)}}}
		}},
	)
	return tables
}

// fixedSampler returns one sample, as read, every time.
type fixedSampler struct{ s detect.Sample }

func (f fixedSampler) Name() string                                  { return f.s.Source }
func (f fixedSampler) Sample(context.Context) (detect.Sample, error) { return f.s, nil }

func goldenPolicies(t *testing.T) []struct {
	name string
	p    *policy.Policy
} {
	out := []struct {
		name string
		p    *policy.Policy
	}{{"default", policy.Default()}}
	for _, f := range []string{"example", "golden-custom-table", "golden-forward", "golden-meter-v6-128"} {
		p, err := policy.Load(filepath.Join("..", "testdata", "policy", f+".toml"))
		if err != nil {
			t.Fatalf("load policy %s: %v", f, err)
		}
		out = append(out, struct {
			name string
			p    *policy.Policy
		}{f, p})
	}
	// Several samples with different thresholds on one counter.
	p := policy.Default()
	p.Sample.Count, p.Sample.MinHits = 3, 2
	p.Rules = append(p.Rules, policy.Rule{Name: "syn-flood-hard", State: policy.StateSynRecv, Threshold: 100, BanFor: policy.Duration{Duration: time.Hour}})
	out = append(out, struct {
		name string
		p    *policy.Policy
	}{"k-of-n", p})
	return out
}

// TestDecisionGolden decides on every golden table under every golden
// policy and compares what was decided with testdata/decisions.
func TestDecisionGolden(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pols := goldenPolicies(t)
	for _, tb := range goldenTables(t) {
		t.Run(tb.name, func(t *testing.T) {
			var b strings.Builder
			for _, pol := range pols {
				p := pol.p
				res, err := detect.Window(context.Background(), tb.samplers(), p.Sample.Count, 0, nil)
				if err != nil {
					t.Fatal(err)
				}
				res.Delta = tb.delta
				w := &Window{Samplers: []string{"golden"}, Why: "golden", Result: res}
				e := New(nil, Options{})
				d, err := e.decideWindow(context.Background(), &cycle{p: p, g: p.Guard(goldenHost), now: now}, w)
				if err != nil {
					t.Fatalf("%s: %v", pol.name, err)
				}
				fmt.Fprintf(&b, "=== policy %s\n", pol.name)
				writeDecision(&b, d, PerSource(d.Samples))
			}
			path := filepath.Join(decisionGoldenDir, tb.name+".txt")
			if golden.Update() {
				if err := os.MkdirAll(decisionGoldenDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (write it with %s=1)", err, golden.Env)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("decision on %s differs from %s:\n%s", tb.name, path, firstDiff(got, string(want)))
			}
		})
	}
}

// listed is how many entries of a long list the golden file shows; the
// rest is pinned by the list's count and hash.
const listed = 40

// writeDecision renders what the decision decided.
func writeDecision(b *strings.Builder, d *Decision, rows []SourceRow) {
	c := d.Class
	fmt.Fprintf(b, "class %s sources=%d entries=%d small=%d max=%d cookies=%d/%d qfull=%d overflows=%d\n  why: %s\n",
		c.Kind, c.HalfOpenSources, c.HalfOpenEntries, c.SmallSources, c.MaxPerSource, c.CookiesSent, c.CookiesRecv, c.ReqQFullDrop, c.ListenOverflows, c.Why)
	for _, a := range c.Advice {
		fmt.Fprintf(b, "  advice: %s\n", a)
	}
	r := d.Report
	fmt.Fprintf(b, "report sources=%d samples=%d malformed=%d spared_unlisted=%d\n", r.Sources, r.Samples, r.Malformed, r.SparedUnlisted)
	var lines []string
	for _, v := range r.Verdicts {
		lines = append(lines, verdictLine(v))
	}
	writeList(b, "verdicts", lines)
	lines = lines[:0]
	for _, s := range r.Spared {
		lines = append(lines, verdictLine(s.Verdict)+" | "+s.Why)
	}
	writeList(b, "spared", lines)
	lines = lines[:0]
	for _, bn := range d.Ruleset.Bans {
		lines = append(lines, fmt.Sprintf("%s %s %s", bn.Prefix, bn.Timeout, bn.Reason))
	}
	writeList(b, "bans", lines)
	lines = lines[:0]
	for _, o := range d.Omitted {
		lines = append(lines, fmt.Sprintf("%+v", o))
	}
	writeList(b, "omitted", lines)
	lines = lines[:0]
	for _, row := range rows {
		lines = append(lines, fmt.Sprintf("%s syn_recv=%d established=%d other=%d total=%d", row.Source, row.SynRecv, row.Established, row.Other, row.Total))
	}
	writeList(b, "per-source", lines)
}

func verdictLine(v detect.Verdict) string {
	return fmt.Sprintf("%s rule=%s state=%s count=%d thr=%d hits=%d/%d sources=%d for=%s forced=%v | %s",
		v.Subject, v.Rule, v.State, v.Count, v.Threshold, v.Hits, v.Samples, v.Sources, v.BanFor, v.Forced, v.Reason)
}

// writeList writes a list's count and hash and its first entries.
func writeList(b *strings.Builder, name string, lines []string) {
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	fmt.Fprintf(b, "%s: %d sha256=%s\n", name, len(lines), hex.EncodeToString(h.Sum(nil))[:16])
	for i, l := range lines {
		if i == listed {
			fmt.Fprintf(b, "  ... %d more\n", len(lines)-listed)
			break
		}
		fmt.Fprintf(b, "  %s\n", l)
	}
}

// firstDiff shows the first differing line of got and want.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, gl, wl)
		}
	}
	return "(same lines)"
}
