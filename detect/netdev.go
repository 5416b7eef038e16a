package detect

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
)

// IfCounters are one interface's receive counters from /proc/net/dev.
type IfCounters struct {
	RxPackets, RxDropped uint64
}

// NetDevPath is where the kernel publishes the interface counters of the
// reading thread's network namespace.
const NetDevPath = "/proc/thread-self/net/dev"

// ParseNetDev parses /proc/net/dev text: two header lines, then one line
// per interface, "NAME: rx_bytes rx_packets rx_errs rx_drop ..." with 16
// numbers. A line without the colon, with fewer numbers, or a number that
// does not parse is an error naming the line; an interface listed twice
// is too.
func ParseNetDev(r io.Reader) (map[string]IfCounters, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4<<10), 64<<10)
	out := map[string]IfCounters{}
	line := 0
	for sc.Scan() {
		line++
		if line <= 2 {
			continue // the two header lines
		}
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		name, rest, ok := bytes.Cut(b, []byte(":"))
		name = bytes.TrimSpace(name)
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("net/dev line %d: no \"NAME:\" at the start of %.40q", line, b)
		}
		f := bytes.Fields(rest)
		if len(f) < 16 {
			return nil, fmt.Errorf("net/dev line %d: %s: %d counters, want 16", line, name, len(f))
		}
		var c IfCounters
		var err error
		if c.RxPackets, err = strconv.ParseUint(string(f[1]), 10, 64); err != nil {
			return nil, fmt.Errorf("net/dev line %d: %s rx packets: %w", line, name, err)
		}
		if c.RxDropped, err = strconv.ParseUint(string(f[3]), 10, 64); err != nil {
			return nil, fmt.Errorf("net/dev line %d: %s rx drop: %w", line, name, err)
		}
		if _, dup := out[string(name)]; dup {
			return nil, fmt.Errorf("net/dev line %d: interface %s listed twice", line, name)
		}
		out[string(name)] = c
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read net/dev: %w", err)
	}
	return out, nil
}

// ReadNetDev reads the interface counters of the network namespace netns
// ("" for the caller's own; see ReadNetstat).
func ReadNetDev(netns string) (map[string]IfCounters, error) {
	var out map[string]IfCounters
	err := inNetNS(netns, func() error {
		f, err := os.Open(NetDevPath)
		if err != nil {
			return fmt.Errorf("open interface counters: %w", err)
		}
		defer f.Close()
		out, err = ParseNetDev(f)
		if err != nil {
			return fmt.Errorf("%s: %w", NetDevPath, err)
		}
		return nil
	})
	return out, err
}
