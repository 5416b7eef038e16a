package main

import (
	"fmt"
	"os/exec"
	"slices"
	"syscall"
	"time"
)

// series is the repeated measurements of one cell of a table.
type series struct {
	walls []time.Duration
	// rss holds peak resident set sizes in KiB, for measurements of a
	// child process.
	rss []int64
	// allocs and allocBytes hold the heap allocations (count and bytes) of
	// in-process measurements.
	allocs, allocBytes []uint64
	// extrapolated marks a figure computed from a smaller measured size.
	extrapolated bool
	// note explains a missing or extrapolated figure.
	note string
}

// median returns the median wall time (the mean of the two middle values
// for an even count); 0 when there is none.
func (s *series) median() time.Duration {
	if len(s.walls) == 0 {
		return 0
	}
	w := slices.Clone(s.walls)
	slices.Sort(w)
	n := len(w)
	if n%2 == 1 {
		return w[n/2]
	}
	return (w[n/2-1] + w[n/2]) / 2
}

// medianRSS returns the median peak RSS in KiB.
func (s *series) medianRSS() int64 {
	if len(s.rss) == 0 {
		return 0
	}
	r := slices.Clone(s.rss)
	slices.Sort(r)
	n := len(r)
	if n%2 == 1 {
		return r[n/2]
	}
	return (r[n/2-1] + r[n/2]) / 2
}

// ok reports whether the series holds a figure.
func (s *series) ok() bool { return s != nil && len(s.walls) > 0 }

// maxRSS is the peak resident set size of a finished child in KiB.
func maxRSS(cmd *exec.Cmd) int64 {
	if cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}

// fmtDur prints a duration with three significant digits in a unit that
// suits it.
func fmtDur(d time.Duration) string {
	switch {
	case d >= 100*time.Second:
		return fmt.Sprintf("%.0f s", d.Seconds())
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
}

// cell renders a series' median, marked when extrapolated.
func (s *series) cell() string {
	if !s.ok() {
		if s != nil && s.note != "" {
			return "n/a (" + s.note + ")"
		}
		return "n/a"
	}
	if s.extrapolated {
		return "≈ " + fmtDur(s.median()) + " (extrapolated)"
	}
	return fmtDur(s.median())
}

// ratio renders s's median over base's, as "12.3×".
func ratio(s, base *series) string {
	if !s.ok() || !base.ok() || base.median() == 0 {
		return "–"
	}
	r := float64(s.median()) / float64(base.median())
	prefix := ""
	if s.extrapolated {
		prefix = "≈ "
	}
	switch {
	case r >= 100:
		return fmt.Sprintf("%s%.0f×", prefix, r)
	case r >= 10:
		return fmt.Sprintf("%s%.1f×", prefix, r)
	default:
		return fmt.Sprintf("%s%.2f×", prefix, r)
	}
}

// medianAllocs is the median allocation count and bytes, as "12,345 allocs, 6.7 MiB"; n/a without in-process measurements.
func (s *series) medianAllocs() string {
	if s == nil || len(s.allocs) == 0 {
		return "n/a"
	}
	n, b := slices.Clone(s.allocs), slices.Clone(s.allocBytes)
	slices.Sort(n)
	slices.Sort(b)
	return fmt.Sprintf("%d allocs, %.1f MiB", n[len(n)/2], float64(b[len(b)/2])/(1<<20))
}

// fmtKiB prints a size in KiB as MiB.
func fmtKiB(k int64) string {
	if k == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(k)/1024)
}
