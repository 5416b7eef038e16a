package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPrescan checks what the pre-decode scan accepts and where it points
// when it refuses: brackets and dots inside strings, comments and quoted
// keys do not count; tables, dotted keys, arrays and inline tables do.
func TestPrescan(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	parts := func(n int) string { return strings.TrimSuffix(strings.Repeat("a.", n), ".") }
	tests := []struct {
		name, text string
		want       string // "" to accept; else the rendered error
	}{
		{"arrays at the limit", "x = " + deep(maxNesting-1) + "\n", ""},
		{"arrays over the limit", "x = " + deep(maxNesting) + "\n",
			"f.toml:1:20: nesting deeper than 16 levels of tables, dotted keys, arrays and inline tables"},
		{"inline tables over the limit", "x = " + strings.Repeat("{a=", 8) + "1" + strings.Repeat("}", 8) + "\n",
			"f.toml:1:27: nesting deeper than 16 levels"},
		{"inline tables at the limit", "x = " + strings.Repeat("{a=", 7) + "{}" + strings.Repeat("}", 7) + "\n", ""},
		{"header at the part limit", "[" + parts(maxKeyParts) + "]\n", ""},
		{"header over the part limit", "# c\n\n[" + parts(maxKeyParts+1) + "]\nx = 1\n",
			"f.toml:3:2: key with more than 16 dotted parts"},
		{"array-of-tables header over the part limit", "[[" + parts(maxKeyParts+1) + "]]\n",
			"f.toml:1:3: key with more than 16 dotted parts"},
		{"dotted key over the part limit", "x = 1\n" + parts(maxKeyParts+1) + " = 1\n",
			"f.toml:2:1: key with more than 16 dotted parts"},
		{"header and key add up", "[" + parts(8) + "]\n" + parts(8) + " = 1\n", ""},
		{"header and key add up over the limit", "[" + parts(8) + "]\n" + parts(9) + " = 1\n",
			"f.toml:2:1: nesting deeper than 16 levels"},
		{"header, key and array add up", "[" + parts(8) + "]\n" + parts(7) + " = []\n" + parts(7) + " = [[]]\n",
			"f.toml:3:18: nesting deeper than 16 levels"},
		{"dotted key in an inline table", "x = {" + parts(maxKeyParts+1) + " = 1}\n",
			"f.toml:1:6: key with more than 16 dotted parts"},
		{"inline table keys add up", "x = {" + parts(7) + " = {" + parts(8) + " = 1}}\n",
			"f.toml:1:23: nesting deeper than 16 levels"},
		{"next header resets the depth", "[" + parts(15) + "]\n[b]\n" + parts(14) + " = [1]\n", ""},
		{"siblings do not add up", "x = [" + strings.Repeat(deep(maxNesting-2)+", ", 100) + "]\n", ""},
		{"array of inline tables over lines", "x = [\n  {a = [1]},\n  # [[[[[[[[[[[[[[[[[[[[\n  {b = 2},\n]\n", ""},
		{"brackets in strings",
			`a = "[[[[[[[[[[[[[[[[[[[[\"[[[[[[[[[[[[[[[[[[" ` + "\n" +
				`b = '[[[[[[[[[[[[[[[[[[[[\' ` + "\n" +
				`c = """` + "\n[[[[[[[[[[[[[[[[[[[[\\\"\"\"[[[[\n" + `""""` + "\n" +
				`d = '''` + "\n[[[[[[[[[[[[[[[[[[[[\n" + `'''''` + "\n" +
				`e = [ "]]]]", '}}}}', """]]]""" ]` + "\n", ""},
		{"line count after a multi-line string", "a = \"\"\"\n\n\n\"\"\"\nb = " + deep(maxNesting) + "\n",
			"f.toml:5:20: nesting deeper than 16 levels"},
		{"brackets in comments", "# " + deep(40) + "\nx = [ # " + deep(40) + "\n 1 ]\n", ""},
		{"dots in quoted keys", `"` + parts(40) + `" = 1` + "\n" + `'` + parts(40) + `' = 1` + "\n[\"" + parts(40) + "\"]\n", ""},
		{"column counts characters", "x = \"é\", " + deep(maxNesting) + "\n",
			"f.toml:1:25: nesting deeper than 16 levels"},
		{"unclosed arrays", "x = " + strings.Repeat("[", 10000) + "\n",
			"f.toml:1:20: nesting deeper than 16 levels"},
		{"unterminated strings", "x = \"[[[[\n'[[[[\n\"\"\"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := scan("f.toml", []byte(tt.text))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("prescan refused: %v", err)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("prescan = %v (%T), want an *Error", err, err)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("prescan = %q, want it to start %q", err, tt.want)
			}
			// Parse gives the same error.
			if _, perr := Parse("f.toml", []byte(tt.text)); perr == nil || perr.Error() != err.Error() {
				t.Errorf("Parse = %v, want %v", perr, err)
			}
		})
	}
}

// TestPrescanAcceptsGoodPolicies: every policy the decoder accepts in
// testdata passes the scan (else Parse would refuse a good file).
func TestPrescanAcceptsGoodPolicies(t *testing.T) {
	for _, src := range [][]byte{defaultTOML, mustRead(t, testdata+"/example.toml")} {
		if _, err := scan("good.toml", src); err != nil {
			t.Errorf("prescan refused a good policy: %v", err)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseRefusesOversize(t *testing.T) {
	data := []byte("# " + strings.Repeat("x", maxFileSize) + "\n")
	p, err := Parse("big.toml", data)
	var pe *Error
	if p != nil || !errors.As(err, &pe) {
		t.Fatalf("Parse = %v, %v; want an *Error", p != nil, err)
	}
	if want := "big.toml: policy is larger than 1048576 bytes"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// At the limit it is read (and accepted: it is all comment).
	max := []byte("#" + strings.Repeat("x", maxFileSize-2) + "\n")
	if _, err := Parse("max.toml", max); err != nil {
		t.Errorf("Parse of exactly %d bytes: %v", maxFileSize, err)
	}
}

// fill repeats unit between prefix and suffix up to maxFileSize bytes and
// returns the text and how many units it holds.
func fill(prefix, unit, suffix string) (string, int) {
	var b strings.Builder
	b.WriteString(prefix)
	n := 0
	for b.Len()+len(unit)+len(suffix) <= maxFileSize {
		b.WriteString(unit)
		n++
	}
	b.WriteString(suffix)
	return b.String(), n
}

const ruleHead = "[[rule]]\nname = \"r\"\nstate = \"syn_recv\"\nthreshold = 1\n"

// TestHostileHugePolicies parses generated policies of up to 1 MiB built to
// be slow or to give one error per entry: each is refused quickly, with one
// short error or maxErrors of them and a count of the rest.
func TestHostileHugePolicies(t *testing.T) {
	type tcase struct {
		name, text string
		want       []string // substrings of the error
		lines      int      // lines of the error
	}
	var tests []tcase
	add := func(name, text string, lines int, want ...string) {
		tests = append(tests, tcase{name, text, want, lines})
	}
	text, n := fill(ruleHead+"ports = [", "1,", "]\n")
	add("ports longer than 65535", text, 1, fmt.Sprintf("hostile.toml:5: rule[0].ports: must have at most 65535 entries, got %d", n))
	text = ruleHead + "ports = [" + strings.Repeat("0,", maxPorts) + "]\n"
	add("65535 bad ports", text, maxErrors+1,
		"hostile.toml:5: rule[0].ports[0]: port must be in 1..65535, got 0\n",
		"hostile.toml:5: rule[0].ports[19]: port must be in 1..65535, got 0\nhostile.toml: ... and 65515 more problems")
	text = ruleHead + "ports = [" + strings.Repeat("80,", maxPorts) + "]\n"
	add("65535 duplicate ports", text, 1, "hostile.toml:5: rule[0].ports[1]: duplicate port 80")
	text, n = fill("[allow]\naddresses = [", `"x",`, "]\n")
	add("bad addresses", text, maxErrors+1,
		`hostile.toml:2: allow.addresses[0]: invalid address "x"`,
		fmt.Sprintf("hostile.toml: ... and %d more problems", n-maxErrors))
	var keys strings.Builder
	n = 0
	for ; keys.Len() < maxFileSize-32; n++ {
		fmt.Fprintf(&keys, "k%d = 1\n", n)
	}
	add("unknown keys", keys.String(), maxErrors+1,
		"hostile.toml:1: k0: unknown key", "hostile.toml:20: k19: unknown key",
		fmt.Sprintf("hostile.toml: ... and %d more problems", n-maxErrors))
	text, n = fill("", "[[rule]]\n", "")
	add("too many rules", text, 1, fmt.Sprintf("hostile.toml:1: rule: must have at most 1024 rules, got %d", n))
	text, n = fill("rule = [", "{},", "]\n")
	add("too many inline rules", text, 1, fmt.Sprintf("hostile.toml:1: rule: must have at most 1024 rules, got %d", n))
	text, n = fill("[nftables]\nhooks = [", `"input",`, "]\n")
	add("too many hooks", text, 1, fmt.Sprintf("hostile.toml:2: nftables.hooks: must have at most 16 entries, got %d", n))
	text, n = fill("[nftables]\nhooks = [\"input\", \"ingress\"]\ningress_devices = [", `"eth0",`, "]\n")
	add("too many devices", text, 1, fmt.Sprintf("hostile.toml:3: nftables.ingress_devices: must have at most 4096 entries, got %d", n))
	// The deepest the scan lets through, as many times as fits.
	text, _ = fill("backend = [", strings.Repeat("[", maxNesting-2)+strings.Repeat("]", maxNesting-2)+",", "]\n")
	add("deep arrays at the limit", text, 1, "hostile.toml:1: backend: must be a string, got an array")
	var dotted strings.Builder
	dotted.WriteString("[" + strings.TrimSuffix(strings.Repeat("a.", maxNesting/2), ".") + "]\n")
	for i := 0; dotted.Len() < maxFileSize-64; i++ {
		fmt.Fprintf(&dotted, "%sc%d = 1\n", strings.Repeat("b.", maxNesting/2-1), i)
	}
	add("dotted keys at the limit", dotted.String(), 1, "hostile.toml: a: unknown key")
	var inline strings.Builder
	for i := 0; inline.Len() < maxFileSize-64; i++ {
		fmt.Fprintf(&inline, "c%d = %s{}%s\n", i, strings.Repeat("{b=", maxNesting/2-1), strings.Repeat("}", maxNesting/2-1))
	}
	add("inline tables at the limit", inline.String(), maxErrors+1, "hostile.toml:1: c0: unknown key")
	big := strings.Repeat("x", maxFileSize-100)
	add("megabyte key", big+" = 1\n", 1, "hostile.toml:1: xxxx", "…: unknown key")
	add("megabyte value", `backend = "`+big+`"`+"\n", 1, `hostile.toml:1: backend: must be one of "auto", "nftables", "iptables", "route", got "xxxx`)
	add("megabyte duplicate key", big[:maxFileSize/2-60]+" = 1\n"+big[:maxFileSize/2-60]+" = 1\n", 1, "hostile.toml:2:", "invalid TOML: Key 'xxxx")

	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			if len(tt.text) > maxFileSize {
				t.Fatalf("generated %d bytes, more than the %d Parse takes", len(tt.text), maxFileSize)
			}
			// The cost is CPU time, not wall time: a loaded machine must
			// not fail the test, a parse that burns seconds must.
			began := cpuTime(t)
			p, err := Parse("hostile.toml", []byte(tt.text))
			took := cpuTime(t) - began
			var pe *Error
			if p != nil || !errors.As(err, &pe) {
				t.Fatalf("Parse = %v, %v (%T); want an *Error", p != nil, err, err)
			}
			msg := err.Error()
			t.Logf("%d bytes: %s of CPU, %d-byte error", len(tt.text), took.Round(time.Millisecond), len(msg))
			// About 1 s of CPU here at worst; the hostile policy this
			// guards against took 18 s and 11 GB before the limits.
			if took > 5*time.Second {
				t.Errorf("took %s of CPU, want < 5s", took)
			}
			if len(msg) > (maxErrors+1)*(maxKeyLen+maxMsgLen+64) {
				t.Errorf("error is %d bytes: %.300s", len(msg), msg)
			}
			if got := strings.Count(msg, "\n") + 1; got != tt.lines {
				t.Errorf("error has %d lines, want %d: %.600s", got, tt.lines, msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q: %.600s", w, msg)
				}
			}
		})
	}
}

// TestErrorCap: with more than maxErrors problems, the first maxErrors in
// file order are kept, then one Error counts the rest; the first problem
// of each key wins.
func TestErrorCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("[sample]\n")
	for i := range 30 {
		fmt.Fprintf(&b, "zz%02d = 1\n", 29-i) // file order is not key order
	}
	_, err := Parse("cap.toml", []byte(b.String()))
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 {
		t.Fatalf("%d lines, want %d:\n%v", len(lines), maxErrors+1, err)
	}
	for i, l := range lines[:maxErrors] {
		want := fmt.Sprintf("cap.toml:%d: sample.zz%02d: unknown key", i+2, 29-i)
		if !strings.HasPrefix(l, want) {
			t.Errorf("line %d = %q, want it to start %q", i, l, want)
		}
	}
	if want := "cap.toml: ... and 10 more problems"; lines[maxErrors] != want {
		t.Errorf("last line %q, want %q", lines[maxErrors], want)
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Key != "sample.zz29" {
		t.Errorf("errors.As found %+v, want the first in the file", pe)
	}

	// Exactly maxErrors: no count line.
	one := func(n int) error {
		var b strings.Builder
		b.WriteString("[sample]\n")
		for i := range n {
			fmt.Fprintf(&b, "zz%02d = 1\n", i)
		}
		_, err := Parse("cap.toml", []byte(b.String()))
		return err
	}
	if err := one(maxErrors); strings.Contains(err.Error(), "more problem") || strings.Count(err.Error(), "\n") != maxErrors-1 {
		t.Errorf("%d problems rendered as:\n%v", maxErrors, err)
	}
	if err := one(maxErrors + 1); !strings.HasSuffix(err.Error(), "\ncap.toml: ... and 1 more problem") {
		t.Errorf("%d problems rendered as:\n%v", maxErrors+1, err)
	}
}

// TestValidateBoundsGoPolicies: Validate, for policies built in Go, reports
// the first duplicate and the first 0 of a port list once, and refuses
// lists over their bounds with one error.
func TestValidateBoundsGoPolicies(t *testing.T) {
	p := Default()
	p.Rules[0].Ports = []uint16{80, 0, 80, 443, 0, 443, 80}
	err := p.Validate()
	want := DefaultSource + ": rule[0].ports[1]: port must be in 1..65535, got 0\n" +
		DefaultSource + ": rule[0].ports[2]: duplicate port 80"
	if err == nil || err.Error() != want {
		t.Errorf("Validate =\n%v\nwant\n%s", err, want)
	}

	p = Default()
	p.Meter.Ports = make([]uint16, maxPorts+1)
	for i := range p.Meter.Ports {
		p.Meter.Ports[i] = uint16(i%maxPorts + 1)
	}
	if err := p.Validate(); err == nil || err.Error() != DefaultSource+": meter.ports: must have at most 65535 entries, got 65536" {
		t.Errorf("Validate = %v", err)
	}

	p = Default()
	p.Allow.Addresses = make([]netip.Prefix, maxAllow+1)
	for i := range p.Allow.Addresses {
		p.Allow.Addresses[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	if err := p.Validate(); err == nil || err.Error() != DefaultSource+": allow.addresses: must have at most "+strconv.Itoa(maxAllow)+" entries, got "+strconv.Itoa(maxAllow+1) {
		t.Errorf("Validate = %v", err)
	}

	p = Default()
	p.Allow.Addresses = make([]netip.Prefix, 100) // all invalid (zero)
	err = p.Validate()
	if err == nil || !strings.HasSuffix(err.Error(), DefaultSource+": ... and 80 more problems") {
		t.Errorf("Validate = %v", err)
	}
}

// cpuTime is the CPU time this process has used (user and system, every
// thread: the parse and the collector's work for it).
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
