package metrics

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// kind is a metric family's type, as its TYPE line names it.
type kind string

const (
	gauge   kind = "gauge"
	counter kind = "counter"
)

// textfile collects metric families and writes them in the Prometheus text
// format 0.0.4, byte for byte as client_golang's Registry.Gather followed by
// expfmt.MetricFamilyToText wrote them: families sorted by name, a family
// without samples left out, samples sorted by their label values. What
// Register caught is checked here: a name used twice, a name or label name
// the format cannot carry unquoted, label values that are not UTF-8 (which
// WithLabelValues panicked on). Every such error is kept and returned by
// bytes.
type textfile struct {
	families map[string]*family
	errs     []error
}

// family is one metric family: its samples keyed by their label values.
type family struct {
	t      *textfile
	name   string
	help   string
	kind   kind
	labels []string
	// samples holds each label-value tuple's sample once: a second
	// set replaces the value, a second add adds to it, as a child of a
	// GaugeVec or CounterVec did.
	samples map[string]*sample
}

// sample is one line of a family.
type sample struct {
	values []string
	v      float64
	// n is a counter's value: counters count uint64s, summed exactly
	// (saturating) and turned into a float once.
	n uint64
}

func newTextfile() *textfile { return &textfile{families: map[string]*family{}} }

// family declares a family with the given label names, which must be in
// ascending order (the order client_golang sorted them into, and the order
// they are written in).
func (t *textfile) family(name, help string, k kind, labels ...string) *family {
	f := &family{t: t, name: name, help: help, kind: k, labels: labels, samples: map[string]*sample{}}
	switch {
	case !validName(name, true):
		t.fail(fmt.Errorf("metric name %q is not a valid Prometheus metric name", name))
	case t.families[name] != nil:
		t.fail(fmt.Errorf("metric %s declared twice", name))
	case !utf8.ValidString(help):
		t.fail(fmt.Errorf("metric %s: help is not UTF-8", name))
	default:
		t.families[name] = f
	}
	for i, l := range labels {
		if !validName(l, false) || strings.HasPrefix(l, "__") {
			t.fail(fmt.Errorf("metric %s: label name %q is not valid", name, l))
		}
		if i > 0 && labels[i-1] >= l {
			t.fail(fmt.Errorf("metric %s: label names %q not in ascending order", name, labels))
		}
	}
	return f
}

// gauge declares a gauge without labels holding v.
func (t *textfile) gauge(name, help string, v float64) {
	t.family(name, help, gauge).set(v)
}

func (t *textfile) fail(err error) { t.errs = append(t.errs, err) }

// at returns the sample for values, creating it at 0.
func (f *family) at(values []string) (*sample, bool) {
	if len(values) != len(f.labels) {
		f.t.fail(fmt.Errorf("metric %s: %d label values for labels %q", f.name, len(values), f.labels))
		return nil, false
	}
	for _, v := range values {
		if !utf8.ValidString(v) {
			f.t.fail(fmt.Errorf("metric %s: label value %q is not UTF-8", f.name, v))
			return nil, false
		}
	}
	// \xff cannot occur in UTF-8, so the key is unambiguous.
	key := strings.Join(values, "\xff")
	s := f.samples[key]
	if s == nil {
		s = &sample{values: slices.Clone(values)}
		f.samples[key] = s
	}
	return s, true
}

// set sets a gauge's sample for values to v.
func (f *family) set(v float64, values ...string) {
	if f.kind != gauge {
		f.t.fail(fmt.Errorf("metric %s: set on a %s", f.name, f.kind))
		return
	}
	if s, ok := f.at(values); ok {
		s.v = v
	}
}

// add adds v to a gauge's sample for values.
func (f *family) add(v float64, values ...string) {
	if f.kind != gauge {
		f.t.fail(fmt.Errorf("metric %s: add on a %s", f.name, f.kind))
		return
	}
	if s, ok := f.at(values); ok {
		s.v += v
	}
}

// count adds n to a counter's sample for values.
func (f *family) count(n uint64, values ...string) {
	if f.kind != counter {
		f.t.fail(fmt.Errorf("metric %s: count on a %s", f.name, f.kind))
		return
	}
	if s, ok := f.at(values); ok {
		if s.n > math.MaxUint64-n {
			s.n = math.MaxUint64
		} else {
			s.n += n
		}
		s.v = float64(s.n)
	}
}

// bytes returns the text exposition, or every error met building it.
func (t *textfile) bytes() ([]byte, error) {
	if err := errors.Join(t.errs...); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(t.families))
	for name, f := range t.families {
		if len(f.samples) > 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var b []byte
	for _, name := range names {
		f := t.families[name]
		b = append(b, "# HELP "...)
		b = append(b, name...)
		b = append(b, ' ')
		b = append(b, helpEscaper.Replace(f.help)...)
		b = append(b, "\n# TYPE "...)
		b = append(b, name...)
		b = append(b, ' ')
		b = append(b, f.kind...)
		b = append(b, '\n')
		samples := make([]*sample, 0, len(f.samples))
		for _, s := range f.samples {
			samples = append(samples, s)
		}
		slices.SortFunc(samples, func(x, y *sample) int { return slices.Compare(x.values, y.values) })
		for _, s := range samples {
			b = append(b, name...)
			for i, l := range f.labels {
				if i == 0 {
					b = append(b, '{')
				} else {
					b = append(b, ',')
				}
				b = append(b, l...)
				b = append(b, `="`...)
				b = append(b, labelEscaper.Replace(s.values[i])...)
				b = append(b, '"')
			}
			if len(f.labels) > 0 {
				b = append(b, '}')
			}
			b = append(b, ' ')
			b = appendFloat(b, s.v)
			b = append(b, '\n')
		}
	}
	return b, nil
}

var (
	// helpEscaper and labelEscaper escape as the text format asks (and
	// expfmt does): in HELP a backslash and a line feed, in a label value
	// the double quote too.
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// appendFloat formats v as expfmt does: 0 (negative zero too), 1 and -1
// spelled out, NaN, +Inf and -Inf by name, anything else as
// strconv.FormatFloat(v, 'g', -1, 64): the shortest form that reads back
// as v, with an exponent from 1e21 up and below 1e-4 (1.7e+09, 9.5e+06,
// 1.234567 and 65536 are all written so).
func appendFloat(b []byte, v float64) []byte {
	switch {
	case v == 0:
		return append(b, '0')
	case v == 1:
		return append(b, '1')
	case v == -1:
		return append(b, "-1"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// validName reports whether name is a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)
// or, with colon false, a label name ([a-zA-Z_][a-zA-Z0-9_]*): the names
// expfmt writes unquoted.
func validName(name string, colon bool) bool {
	if name == "" {
		return false
	}
	for i := range len(name) {
		c := name[i]
		ok := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || colon && c == ':' || i > 0 && '0' <= c && c <= '9'
		if !ok {
			return false
		}
	}
	return true
}
