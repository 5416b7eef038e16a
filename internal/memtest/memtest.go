// Package memtest measures heap growth for synban's memory tests and
// benchmarks (the reliability suite's bounds, detect's benchmarks).
package memtest

import (
	"runtime"
	"runtime/metrics"
	"time"
)

// HeapPeak samples the live heap every 2 ms until stop is called, which
// returns the peak growth over the heap at the start, in bytes.
func HeapPeak() (stop func() uint64) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := read()
	var peak uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, read())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		peak = max(peak, read())
		if peak < base {
			return 0
		}
		return peak - base
	}
}
