package detect

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/synban/synban/policy"
)

// fakeSampler returns its readings in order, one per call, then repeats the
// last; hook, when set, runs on each call.
type fakeSampler struct {
	name  string
	reads []Sample
	calls *int
	hook  func(call int)
	err   error
}

func (f fakeSampler) Name() string { return f.name }

func (f fakeSampler) Sample(ctx context.Context) (Sample, error) {
	i := *f.calls
	*f.calls++
	if f.hook != nil {
		f.hook(i)
	}
	if f.err != nil {
		return Sample{}, f.err
	}
	if i >= len(f.reads) {
		i = len(f.reads) - 1
	}
	s := f.reads[i]
	s.Source = f.name
	return s, nil
}

func newFake(name string, reads ...Sample) fakeSampler {
	return fakeSampler{name: name, reads: reads, calls: new(int)}
}

// halfOpen returns n half-open entries from src to 192.0.2.1:80.
func halfOpen(src string, n int, firstPort uint16) []Conn {
	a := netip.MustParseAddr(src)
	out := make([]Conn, n)
	for i := range out {
		out[i] = Conn{
			Local:  netip.MustParseAddrPort("192.0.2.1:80"),
			Remote: netip.AddrPortFrom(a, firstPort+uint16(i)),
			State:  SynRecv,
		}
	}
	return out
}

func TestWindowKOfN(t *testing.T) {
	steady := halfOpen("198.51.100.10", 60, 1000)
	burst := halfOpen("198.51.100.66", 60, 1000)
	sm := newFake("sockdiag",
		Sample{Conns: steady},
		Sample{Conns: append(append([]Conn(nil), steady...), burst...)},
		Sample{Conns: steady},
	)
	w, err := Window(context.Background(), []Sampler{sm}, 3, time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Samples) != 3 || *sm.calls != 3 {
		t.Fatalf("window took %d samples in %d calls, want 3", len(w.Samples), *sm.calls)
	}
	for _, tc := range []struct {
		minHits int
		want    map[string]int // subject -> hits
	}{
		{1, map[string]int{"198.51.100.10/32": 3, "198.51.100.66/32": 1}},
		{2, map[string]int{"198.51.100.10/32": 3}},
		{3, map[string]int{"198.51.100.10/32": 3}},
	} {
		p := policy.Default()
		p.Prefix.Enabled = false
		p.Sample.Count, p.Sample.MinHits = 3, tc.minHits
		rep := Analyze(p, w.Samples, policy.NewGuard())
		got := map[string]int{}
		for _, v := range rep.Verdicts {
			got[v.Subject.String()] = v.Hits
			if v.Samples != 3 {
				t.Errorf("K=%d: verdict %s has Samples %d, want 3", tc.minHits, v.Subject, v.Samples)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("K=%d of 3: verdicts %v, want %v", tc.minHits, got, tc.want)
		}
	}
}

func TestWindowMergesAndCounts(t *testing.T) {
	shared := halfOpen("203.0.113.5", 10, 2000)
	onlyCT := halfOpen("203.0.113.6", 4, 3000)
	sd := newFake("sockdiag", Sample{Conns: shared, Malformed: 1, Errors: []string{"bad"}})
	ct := newFake("conntrack", Sample{Conns: append(append([]Conn(nil), shared...), onlyCT...)})
	reads := 0
	counters := func() (TcpExt, error) {
		reads++
		v := int64(reads * 1000)
		return TcpExt{SyncookiesSent: v, All: map[string]int64{"SyncookiesSent": v}}, nil
	}
	const interval = 20 * time.Millisecond
	w, err := Window(context.Background(), []Sampler{sd, ct}, 2, interval, counters)
	if err != nil {
		t.Fatal(err)
	}
	if reads != 2 {
		t.Errorf("counters read %d times, want 2 (start and end)", reads)
	}
	if w.Delta.SyncookiesSent != 1000 || w.Start.SyncookiesSent != 1000 || w.End.SyncookiesSent != 2000 {
		t.Errorf("start %v end %v delta %d", w.Start.SyncookiesSent, w.End.SyncookiesSent, w.Delta.SyncookiesSent)
	}
	if w.Samples[0].Counters != nil || w.Samples[1].Counters != w.End {
		t.Errorf("end counters not attached to the last sample only")
	}
	for i, s := range w.Samples {
		if s.Source != "sockdiag+conntrack" || len(s.Conns) != 14 || s.Malformed != 1 || len(s.Errors) != 1 || s.Errors[0] != "sockdiag: bad" {
			t.Errorf("sample %d: source %q, %d conns (want 14: shared flows once), malformed %d, errors %q", i, s.Source, len(s.Conns), s.Malformed, s.Errors)
		}
	}
	if w.Elapsed < interval {
		t.Errorf("two samples %s apart took %s", interval, w.Elapsed)
	}
}

func TestWindowCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sm := newFake("sockdiag", Sample{})
	sm.hook = func(int) { cancel() }
	start := time.Now()
	_, err := Window(ctx, []Sampler{sm}, 3, time.Hour, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancelled window returned after %s", d)
	}
	if *sm.calls != 1 {
		t.Errorf("sampler called %d times after cancel, want 1", *sm.calls)
	}
}

func TestWindowErrors(t *testing.T) {
	boom := errors.New("boom")
	bad := newFake("sockdiag", Sample{})
	bad.err = boom
	if _, err := Window(context.Background(), []Sampler{bad}, 1, 0, nil); !errors.Is(err, boom) {
		t.Errorf("sampler error: %v", err)
	}
	if _, err := Window(context.Background(), []Sampler{newFake("x", Sample{})}, 1, 0, func() (TcpExt, error) { return TcpExt{}, boom }); !errors.Is(err, boom) {
		t.Errorf("counters error: %v", err)
	}
	if _, err := Window(context.Background(), nil, 1, 0, nil); err == nil {
		t.Error("no samplers: no error")
	}
	if _, err := Window(context.Background(), []Sampler{newFake("x", Sample{})}, 0, 0, nil); err == nil {
		t.Error("count 0: no error")
	}
}
