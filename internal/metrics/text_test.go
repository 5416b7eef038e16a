package metrics

import (
	"bytes"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// TestTextMatchesExpfmt writes families with values and strings the
// format treats specially and compares each with what expfmt writes for
// the same family: float formatting (0, negative zero, ±1, exponents,
// the extremes, NaN and the infinities) and the escapes of HELP (backslash
// and line feed, not the double quote) and of label values (the double
// quote too).
func TestTextMatchesExpfmt(t *testing.T) {
	floats := []float64{0, math.Copysign(0, -1), 1, -1, 2, -2, 0.5, 0.1, 1e-4, 1e-5, 123456789, 1e20, 1e21, 1.5e21,
		1 << 53, 1<<53 + 2, math.MaxUint64, 1.7000000015e9, math.MaxFloat64, -math.MaxFloat64,
		math.SmallestNonzeroFloat64, math.NaN(), math.Inf(1), math.Inf(-1)}
	help := `a \\ backslash, a "quote", a` + "\nline feed and ünïcode"
	values := []string{"", "plain", `back\slash`, `"quoted"`, "line\nfeed", `\n literal`, "ünïcode", "tab\there"}

	tf := newTextfile()
	g := tf.family("test_gauge", help, gauge, "a", "b")
	want := &dto.MetricFamily{Name: ptr("test_gauge"), Help: ptr(help), Type: dto.MetricType_GAUGE.Enum()}
	for i, v := range floats {
		// Label values in ascending order, as the family writes them.
		a, b := string(rune('a'+i)), values[i%len(values)]
		g.set(v, a, b)
		want.Metric = append(want.Metric, &dto.Metric{
			Label: []*dto.LabelPair{{Name: ptr("a"), Value: ptr(a)}, {Name: ptr("b"), Value: ptr(b)}},
			Gauge: &dto.Gauge{Value: ptr(v)}})
	}
	c := tf.family("test_total", "", counter)
	c.count(math.MaxUint64 - 1)
	c.count(5)
	wantC := &dto.MetricFamily{Name: ptr("test_total"), Help: ptr(""), Type: dto.MetricType_COUNTER.Enum(),
		Metric: []*dto.Metric{{Counter: &dto.Counter{Value: ptr(float64(math.MaxUint64))}}}}

	got, err := tf.bytes()
	if err != nil {
		t.Fatal(err)
	}
	var exp bytes.Buffer
	for _, mf := range []*dto.MetricFamily{want, wantC} {
		if _, err := expfmt.MetricFamilyToText(&exp, mf); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, exp.Bytes()) {
		t.Errorf("ours:\n%s\nexpfmt:\n%s", got, exp.Bytes())
	}
}

// TestTextSortsAndAggregates: families by name, samples by label values
// (byte order, value by value), empty families left out, a gauge's second
// set replacing and add adding, a counter summing.
func TestTextSortsAndAggregates(t *testing.T) {
	tf := newTextfile()
	tf.family("b_empty", "h", gauge, "x")
	v := tf.family("b_vec", "h", gauge, "x", "y")
	v.set(1, "b", "a")
	v.set(2, "a", "z")
	v.set(3, "a", "Z")
	v.set(4, "b", "a")
	v.add(2, "c", "c")
	v.add(0.5, "c", "c")
	k := tf.family("a_total", "h", counter, "x")
	k.count(3, "q")
	k.count(4, "q")
	tf.gauge("a_gauge", "h", 7)
	got, err := tf.bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := `# HELP a_gauge h
# TYPE a_gauge gauge
a_gauge 7
# HELP a_total h
# TYPE a_total counter
a_total{x="q"} 7
# HELP b_vec h
# TYPE b_vec gauge
b_vec{x="a",y="Z"} 3
b_vec{x="a",y="z"} 2
b_vec{x="b",y="a"} 4
b_vec{x="c",y="c"} 2.5
`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestTextRefusesWhatRegisterRefused: what client_golang's Register or
// WithLabelValues refused (a name twice, invalid names, a wrong number of
// label values, a label value that is not UTF-8) is an error, never a file
// Prometheus would reject.
func TestTextRefusesWhatRegisterRefused(t *testing.T) {
	for name, build := range map[string]func(*textfile){
		"name twice":          func(tf *textfile) { tf.gauge("x", "h", 1); tf.gauge("x", "h", 2) },
		"bad metric name":     func(tf *textfile) { tf.gauge("1x", "h", 1) },
		"dash in name":        func(tf *textfile) { tf.gauge("x-y", "h", 1) },
		"bad label name":      func(tf *textfile) { tf.family("x", "h", gauge, "a:b").set(1, "v") },
		"reserved label":      func(tf *textfile) { tf.family("x", "h", gauge, "__name").set(1, "v") },
		"labels out of order": func(tf *textfile) { tf.family("x", "h", gauge, "b", "a").set(1, "v", "w") },
		"label twice":         func(tf *textfile) { tf.family("x", "h", gauge, "a", "a").set(1, "v", "w") },
		"too few values":      func(tf *textfile) { tf.family("x", "h", gauge, "a", "b").set(1, "v") },
		"not UTF-8":           func(tf *textfile) { tf.family("x", "h", gauge, "a").set(1, "\xff") },
		"set on a counter":    func(tf *textfile) { tf.family("x", "h", counter).set(1) },
		"count on a gauge":    func(tf *textfile) { tf.family("x", "h", gauge).count(1) },
	} {
		tf := newTextfile()
		build(tf)
		if b, err := tf.bytes(); err == nil {
			t.Errorf("%s: no error, wrote %q", name, b)
		}
	}
	// Through Write: a ban reason that is not UTF-8 fails the run's
	// metrics and leaves the old file alone.
	path := filepath.Join(t.TempDir(), "synban.prom")
	if err := Write(path, Run{Start: time.Now(), Bans: []Ban{{Backend: "nftables", Reason: "bad\xff"}}}); err == nil {
		t.Error("a label value that is not UTF-8 was written")
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused run left a file: %v", err)
	}
}

// TestWriteMode: the textfile is 0644 whatever the umask, as
// prometheus.WriteToTextfile made it, so node_exporter, another user,
// reads it.
func TestWriteMode(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "synban.prom")
	if err := Write(path, Run{Start: time.Now()}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode() != 0o644 {
		t.Fatalf("metrics file %v %v, want a regular file of mode 0644", fi.Mode(), err)
	}
}

// TestPreviousSuccess reads the last success time from files written by
// hand: only a well-formed LastSuccess line with a time after the epoch
// counts.
func TestPreviousSuccess(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		text string
		want time.Time
	}{
		{"", time.Time{}},
		{"synban_last_run_success 1\n", time.Time{}},
		{LastSuccess + " 1.7000000015e+09\n", time.Unix(1_700_000_001, 500_000_000)},
		{"# HELP " + LastSuccess + " 1\n# TYPE " + LastSuccess + " gauge\n" + LastSuccess + " 1700000002\n", time.Unix(1_700_000_002, 0)},
		{LastSuccess + "_other 5\n" + LastSuccess + " 7\n", time.Unix(7, 0)},
		{LastSuccess + " 0\n", time.Time{}},
		{LastSuccess + " -5\n", time.Time{}},
		{LastSuccess + " NaN\n", time.Time{}},
		{LastSuccess + " +Inf\n", time.Time{}},
		{LastSuccess + " 1e300\n", time.Time{}},
		{LastSuccess + " twelve\n", time.Time{}},
		{LastSuccess + "\n", time.Time{}},
		{strings.Repeat("#\n", previousMax/2) + LastSuccess + " 7\n", time.Time{}},
	} {
		path := filepath.Join(dir, "synban.prom")
		if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := previousSuccess(path); !got.Equal(c.want) {
			t.Errorf("previousSuccess(%.60q) = %v, want %v", c.text, got, c.want)
		}
	}
}

// TestNoPrometheusLinked: the package's code (tests aside) links no
// Prometheus package and no protobuf, whose package init every synban
// start would pay (issue 24).
func TestNoPrometheusLinked(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "prometheus") || strings.Contains(dep, "protobuf") {
			t.Errorf("internal/metrics links %s", dep)
		}
	}
}
