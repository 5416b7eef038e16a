package engine

import (
	"context"
	"net/netip"
	"testing"
)

// topRows indexes a snapshot's rows by subject.
func topRows(t *testing.T, s *TopSnapshot) map[string]TopRow {
	t.Helper()
	m := map[string]TopRow{}
	for _, r := range s.Rows {
		if _, dup := m[r.Subject]; dup {
			t.Errorf("row %s listed twice", r.Subject)
		}
		m[r.Subject] = r
	}
	return m
}

// Top on a fixed window: the rows, their verdicts and what folds them.
func TestMemoryTop(t *testing.T) {
	cases := []struct {
		name, capture, subject string
		verdict, why           string
		prefix                 bool
		sources                int
	}{
		{"single flooder", capSingle, "203.0.113.7", "ban", "syn-flood", false, 1},
		{"prefix", capPrefix, "198.51.100.0/24", "ban", "syn-flood", true, 200},
		{"folded in the prefix", capPrefix, "198.51.100.9", "ban", "in 198.51.100.0/24", false, 1},
		{"ipv6 flooder", capMixed, "2001:db8:66::6", "ban", "syn-flood", false, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			s, err := r.engine(c.capture).Top(context.Background(), r.p)
			if err != nil {
				t.Fatal(err)
			}
			row, ok := topRows(t, s)[c.subject]
			if !ok {
				t.Fatalf("no row for %s among %d", c.subject, len(s.Rows))
			}
			if row.Verdict != c.verdict || row.Why != c.why || row.Prefix != c.prefix || row.Sources != c.sources {
				t.Errorf("row %+v, want verdict %q why %q prefix %v sources %d", row, c.verdict, c.why, c.prefix, c.sources)
			}
			if s.BackendErr == "" || row.Banned {
				t.Errorf("a replay read the kernel: backend err %q, banned %v", s.BackendErr, row.Banned)
			}
		})
	}
}

// A quiet window has rows and no verdict; the guard's spared source says
// why.
func TestMemoryTopQuietAndGuarded(t *testing.T) {
	r := newRig(t)
	s, err := r.engine(capQuiet).Top(context.Background(), r.p)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Rows) == 0 || s.Samples != r.p.Sample.Count {
		t.Fatalf("quiet top: %d rows, %d samples", len(s.Rows), s.Samples)
	}
	for _, row := range s.Rows {
		if row.Verdict != "" {
			t.Errorf("quiet row with a verdict: %+v", row)
		}
	}
	r.p.Allow.Addresses = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	s, err = r.engine(capSingle).Top(context.Background(), r.p)
	if err != nil {
		t.Fatal(err)
	}
	if row := topRows(t, s)["203.0.113.7"]; row.Verdict != "spared" || row.Why == "" || row.Why == SpoofedWhy {
		t.Errorf("guarded flooder row %+v, want spared by the allow list", row)
	}
}
