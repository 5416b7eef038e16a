// Package metricstest reads synban's metrics textfiles back with
// Prometheus' own parser, for tests only: it imports expfmt and the
// protobuf model, which the synban binary must not link (issue 24; see
// package metrics). Nothing but tests imports it.
package metricstest

import (
	"fmt"
	"io"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Parse reads a text-exposition file with Prometheus' own parser.
func Parse(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return fams, nil
}

// Value returns the value of the sample of family name whose labels include
// every pair in labels (nil: the first sample).
func Value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	mf, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if !matches(m, labels) {
			continue
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func matches(m *dto.Metric, labels map[string]string) bool {
	for k, want := range labels {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == want {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
