package reliability

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/internal/memtest"
	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/policy"
)

// validLines are /proc/net/tcp and tcp6 lines as the kernel prints them
// (a half-open entry, an established one, a LISTEN socket, an IPv6 entry).
var validLines = []string{
	"   0: 0100000A:0050 0100CA0A:04D2 03 00000000:00000000 01:00000000 00000000     0        0 0 2 0000000000000000",
	"   1: 0100000A:0050 0200000A:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 76425 1 00000000e84ee56f 20 4 30 10 -1",
	"   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21200 1 000000008ff6e99c 100 0 0 10 0",
	"   3: 0000000000000000FFFF00000100000A:0050 00000000000000000000000001000DFD:D431 03 00000000:00000000 01:00000000 00000000     0        0 0 2 0000000000000000",
}

// absurdLines are lines with impossible values: each must be counted as
// malformed, never parsed into an entry.
var absurdLines = []string{
	"   0: 0100000A:FFFFF 0100CA0A:04D2 03 00000000:00000000 01:00000000 00000000 0 0 0 2 0",   // port over 16 bits
	"   0: 0100000A0:0050 0100CA0A:04D2 03 00000000:00000000 01:00000000 00000000 0 0 0 2 0",   // 9 hex digits
	"   0: 0100000A:0050 0100CA0A:04D2 FF 00000000:00000000 01:00000000 00000000 0 0 0 2 0",    // state 255
	"   0: 0100000A:0050 0100CA0A:04D2 00 00000000:00000000 01:00000000 00000000 0 0 0 2 0",    // state 0
	"   0: 0100000A:0050 0100CA0A:04D2 3 00000000:00000000 01:00000000 00000000 0 0 0 2 0",     // short state
	"   0: 0100000A:0050 0100CA0A:04D2 0G 00000000:00000000 01:00000000 00000000 0 0 0 2 0",    // bad hex
	"   0: 0100000A:0050 0100CA0A 03 00000000:00000000 01:00000000 00000000 0 0 0 2 0",         // no port
	"   0: 0100000A:0050 0100CA0A:04D2:0001 03 00000000:00000000 01:00000000 00000000 0 0 0 2", // two ports
	"   0: 0100000A:0050 0100CA0A:04D2 03 00000000:00000000 01:00000000 00000000 0",            // too few fields
	"   0: :0050 0100CA0A:04D2 03 00000000:00000000 01:00000000 00000000 0 0 0 2 0",
	"   0: 0100000A:0050 0100CA0A:04D2 03" + strings.Repeat(" 0", 40), // too many fields
	"   0: 0100000A:0050 0100CA0A:04D2 03 " + strings.Repeat("F", 5000),
	"\x00\x00\x00\x00",
}

// TestHostileProcNet feeds ParseProcNet truncated lines, absurd values and
// 200 MB streams of garbage: every bad line is counted as malformed, every
// line is accounted for, nothing panics, and memory stays bounded.
func TestHostileProcNet(t *testing.T) {
	tried := 0
	check := func(name string, input string, wantConns, minMalformed int) {
		t.Helper()
		conns, st, err := detect.ParseProcNet(strings.NewReader(input), nil)
		tried++
		if err != nil {
			t.Fatalf("%s: read error %v", name, err)
		}
		if st.Lines != st.Conns+st.Listen+st.Malformed {
			t.Fatalf("%s: %d lines but %d conns + %d listen + %d malformed", name, st.Lines, st.Conns, st.Listen, st.Malformed)
		}
		if len(conns) != st.Conns {
			t.Fatalf("%s: %d entries returned, stats say %d", name, len(conns), st.Conns)
		}
		if wantConns >= 0 && st.Conns != wantConns {
			t.Fatalf("%s: %d entries, want %d (stats %+v)", name, st.Conns, wantConns, st)
		}
		if st.Malformed < minMalformed {
			t.Fatalf("%s: %d malformed, want at least %d (stats %+v)", name, st.Malformed, minMalformed, st)
		}
	}
	for i, l := range validLines {
		want := 1
		if i == 2 {
			want = 0 // LISTEN
		}
		check(fmt.Sprintf("valid line %d", i), l+"\n", want, 0)
		// Every truncation: a line cut before its tenth field is malformed;
		// one cut later may still parse, but is never more than one entry.
		for cut := 0; cut < len(l); cut++ {
			trunc := l[:cut]
			minBad := 0
			if len(strings.Fields(trunc)) < 10 && strings.TrimSpace(trunc) != "" {
				minBad = 1
			}
			check(fmt.Sprintf("line %d cut at %d", i, cut), trunc, -1, minBad)
			check(fmt.Sprintf("line %d cut at %d, newline", i, cut), trunc+"\n", -1, minBad)
		}
	}
	for i, l := range absurdLines {
		check(fmt.Sprintf("absurd line %d", i), l+"\n", 0, 1)
	}
	// Absurd counts of lines and lengths.
	check("4 KiB + 1 line", strings.Repeat("0", detect.MaxProcNetLine+1)+"\n"+validLines[0]+"\n", 1, 1)
	check("100k empty lines", strings.Repeat("\n", 100000), 0, 0)
	check("100k valid lines", strings.Repeat(validLines[0]+"\n", 100000), 100000, 0)

	// 200 MB of garbage, streamed: binary noise, noise shaped like the
	// table (hex, colons, spaces, newlines), and one line without an end.
	const size = 200 << 20
	for _, g := range []struct {
		name     string
		alphabet string
	}{
		{"binary noise", ""},
		{"table-shaped noise", "0123456789ABCDEF:    \n"},
		{"one 200 MB line", "0123456789ABCDEF: "},
	} {
		stop := memtest.HeapPeak()
		began := time.Now()
		conns, st, err := detect.ParseProcNet(&garbage{left: size, alphabet: g.alphabet, rng: rand.New(rand.NewPCG(1, uint64(len(g.name))))}, nil)
		took := time.Since(began)
		peak := stop()
		tried++
		if err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		if st.Lines != st.Conns+st.Listen+st.Malformed || len(conns) != st.Conns {
			t.Fatalf("%s: stats do not add up: %+v", g.name, st)
		}
		if peak > 64<<20 {
			t.Errorf("%s: heap grew by %s parsing 200 MB, want < 64 MiB", g.name, mib(peak))
		}
		report(t, "%s: 200 MB parsed in %s, %d lines, %d malformed, %d entries, heap peak +%s", g.name, took.Round(time.Millisecond), st.Lines, st.Malformed, st.Conns, mib(peak))
	}
	report(t, "%d inputs tried (truncations, absurd values, 3 x 200 MB of garbage)", tried)
}

// garbage is a reader of left random bytes; with an alphabet, bytes are
// drawn from it.
type garbage struct {
	left     int
	alphabet string
	rng      *rand.Rand
}

func (g *garbage) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), g.left)
	for i := 0; i < n; i += 8 {
		v := g.rng.Uint64()
		for j := i; j < min(i+8, n); j++ {
			b := byte(v >> (8 * (j - i)))
			if g.alphabet != "" {
				b = g.alphabet[int(b)%len(g.alphabet)]
			}
			p[j] = b
		}
	}
	g.left -= n
	return n, nil
}

// hostilePolicies are policies built to hurt a parser: deep nesting, huge
// arrays, non-UTF-8 bytes, oversized input.
//
// mayPass marks a policy that is valid however large it is; known names a
// bug found by this suite and not fixed yet (see knownBug).
type hostilePolicy struct {
	name, text string
	mayPass    bool
	known      string
}

func hostilePolicies() []hostilePolicy {
	var ports strings.Builder
	ports.WriteString("[[rule]]\nname = \"big\"\nstate = \"syn_recv\"\nthreshold = 5\nports = [")
	for i := range 1_000_000 {
		if i > 0 {
			ports.WriteString(",")
		}
		fmt.Fprintf(&ports, "%d", 1+i%65535)
	}
	ports.WriteString("]\n")
	var allow strings.Builder
	allow.WriteString("[allow]\naddresses = [")
	for i := range 200_000 {
		if i > 0 {
			allow.WriteString(",")
		}
		fmt.Fprintf(&allow, "\"10.%d.%d.%d\"", i>>16, (i>>8)&255, i&255)
	}
	allow.WriteString("]\n")
	return []hostilePolicy{
		{name: "10k nested arrays", text: "backend = " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\n"},
		{name: "10k nested arrays, unclosed", text: "backend = " + strings.Repeat("[", 10000) + "\n"},
		{name: "10k nested inline tables", text: "backend = " + strings.Repeat("{a=", 10000) + "1" + strings.Repeat("}", 10000) + "\n"},
		{name: "10k nested tables", text: "[" + strings.TrimSuffix(strings.Repeat("a.", 10000), ".") + "]\nx = 1\n"},
		{name: "1M ports", text: ports.String()},
		{name: "200k allow addresses", text: allow.String(), mayPass: true},
		{name: "non-UTF-8 value", text: "[nftables]\ntable = \"syn\xff\xfeban\"\n"},
		{name: "non-UTF-8 key", text: "[sample]\ncou\xc3\x28nt = 1\n"},
		{name: "non-UTF-8 comment", text: "# \xff\xfe\xfd\nbackend = \"auto\"\n"},
		{name: "NUL bytes", text: "backend = \"auto\x00\"\n"},
		{name: "UTF-16 BOM", text: "\xff\xfeb\x00a\x00"},
		{name: "over 1 MiB", text: "# " + strings.Repeat("x", 1<<20) + "\n"},
	}
}

// TestHostilePolicy parses hostile policies: each gives a *policy.Error
// with a bounded message, within bounded time and memory.
func TestHostilePolicy(t *testing.T) {
	for _, h := range hostilePolicies() {
		t.Run(strings.ReplaceAll(h.name, " ", "_"), func(t *testing.T) {
			knownBug(t, h)
			stop := memtest.HeapPeak()
			began := time.Now()
			p, err := policy.Parse("hostile.toml", []byte(h.text))
			if h.name == "over 1 MiB" {
				// Parse takes what it is given; Load enforces the size limit.
				path := writePolicy(t, h.text)
				p, err = policy.Load(path)
			}
			took := time.Since(began)
			peak := stop()
			if h.mayPass && err == nil {
				if took > 5*time.Second || peak > 512<<20 {
					t.Errorf("accepted in %s with heap peak +%s, want < 5s and < 512 MiB", took, mib(peak))
				}
				report(t, "%d bytes: accepted (valid) in %s, heap peak +%s", len(h.text), took.Round(time.Millisecond), mib(peak))
				return
			}
			if err == nil || p != nil {
				t.Fatalf("accepted: policy %v, error %v", p != nil, err)
			}
			var pe *policy.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *policy.Error", err, err)
			}
			msg := err.Error()
			if len(msg) > 64<<10 {
				t.Errorf("error message is %d bytes, want a clear one under 64 KiB; it starts: %.300s", len(msg), msg)
			}
			if took > 5*time.Second {
				t.Errorf("took %s, want < 5s", took)
			}
			if peak > 512<<20 {
				t.Errorf("heap grew by %s, want < 512 MiB", mib(peak))
			}
			report(t, "%d bytes: rejected in %s, heap peak +%s, %d-byte error: %.120s", len(h.text), took.Round(time.Millisecond), mib(peak), len(msg), firstLine(msg))
		})
	}
}

// knownBug skips a hostile input that exposes a bug this suite found and
// that its owner has not fixed yet, saying so loudly in the CI log, unless
// SYNBAN_RELIABILITY_STRICT=1 asks to see it fail.
func knownBug(t *testing.T, h hostilePolicy) {
	t.Helper()
	if h.known == "" || os.Getenv("SYNBAN_RELIABILITY_STRICT") == "1" {
		return
	}
	fmt.Printf("reliability: KNOWN BUG, skipped (SYNBAN_RELIABILITY_STRICT=1 runs it): %s: %s\n", h.name, h.known)
	t.Skipf("known bug, not fixed yet: %s", h.known)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// TestHostilePolicyCLI runs `synban check` and `synban run` with hostile
// policies in a namespace holding a ruleset synban applied before: every
// run exits 2 (bad input) and the namespace's ruleset is unchanged.
func TestHostilePolicyCLI(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	ns := netnstest.New(t, "hostile")
	dir := t.TempDir()
	good := writePolicy(t, killPolicy)
	if code, _, stderr := runSynban(t, ns, "run", "-c", good, "--state-dir", dir); code != 0 {
		t.Fatalf("good run exited %d: %s", code, stderr)
	}
	before := ns.MustRun("nft", "-s", "list", "ruleset")
	tried := 0
	for _, h := range hostilePolicies() {
		if h.mayPass {
			continue
		}
		if h.known != "" && os.Getenv("SYNBAN_RELIABILITY_STRICT") != "1" {
			fmt.Printf("reliability: KNOWN BUG, skipped in the CLI run: %s: %s\n", h.name, h.known)
			continue
		}
		path := writePolicy(t, h.text)
		for _, cmd := range []string{"check", "run"} {
			began := time.Now()
			code, _, stderr := runSynban(t, ns, withStateDir([]string{cmd, "-c", path}, dir)...)
			tried++
			if code != 2 {
				t.Errorf("%s with %s: exit %d, want 2: %.300s", cmd, h.name, code, stderr)
			}
			if len(stderr) > 64<<10 {
				t.Errorf("%s with %s: %d bytes on stderr, want a clear error under 64 KiB", cmd, h.name, len(stderr))
			}
			if d := time.Since(began); d > 10*time.Second {
				t.Errorf("%s with %s: took %s", cmd, h.name, d)
			}
		}
	}
	if after := ns.MustRun("nft", "-s", "list", "ruleset"); after != before {
		t.Fatalf("ruleset changed by runs with hostile policies:\n%s\nwant:\n%s", after, before)
	}
	report(t, "%d hostile-policy CLI runs exited 2 with the ruleset unchanged", tried)
}
