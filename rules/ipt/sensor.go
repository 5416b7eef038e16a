package ipt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
)

// Where the kernel publishes hashlimit tables, per family, for the reading
// thread's network namespace.
const (
	hashlimitDir4 = "/proc/thread-self/net/ipt_hashlimit"
	hashlimitDir6 = "/proc/thread-self/net/ip6t_hashlimit"
)

// HashlimitEntry is one source's line of a hashlimit table.
type HashlimitEntry struct {
	// Source is the source key: an address, masked to the table's
	// --hashlimit-srcmask (printed as an address).
	Source netip.Addr
	// Expires is how long the entry lives without another packet.
	Expires time.Duration
	// Credit, Cap and Cost are the token bucket: the credit left, its
	// ceiling (the burst), and what one packet takes.
	Credit, Cap, Cost uint64
}

// Taken is how many packets the bucket's missing credit stands for,
// rounded to the nearest: for the sensor's counting bucket, the SYNs over
// the meter (less the slow refill). Empty says the bucket has no credit for
// one more packet (the count stopped at its burst).
func (e HashlimitEntry) Taken() (n uint64, empty bool) {
	if e.Cost == 0 || e.Credit >= e.Cap {
		return 0, e.Cost > 0 && e.Credit < e.Cost
	}
	gap := e.Cap - e.Credit
	n, rem := gap/e.Cost, gap%e.Cost
	if rem >= e.Cost-rem { // round half up, without overflow
		n++
	}
	return n, e.Credit < e.Cost
}

// ParseHashlimit parses a hashlimit table as the kernel prints it under
// /proc/net/ipt_hashlimit/NAME or /proc/net/ip6t_hashlimit/NAME, one entry a
// line: "EXPIRES SRC:SPORT->DST:DPORT CREDIT CREDIT_CAP COST" (IPv6
// addresses written in full, eight groups). A line of another shape is an
// error naming it.
func ParseHashlimit(r io.Reader) ([]HashlimitEntry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4<<10), 64<<10)
	var out []HashlimitEntry
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		e, err := parseHashlimitLine(text)
		if err != nil {
			return nil, fmt.Errorf("hashlimit line %d: %w", line, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read hashlimit table: %w", err)
	}
	return out, nil
}

func parseHashlimitLine(text string) (HashlimitEntry, error) {
	f := strings.Fields(text)
	if len(f) != 5 {
		return HashlimitEntry{}, fmt.Errorf("%d fields in %.60q, want 5", len(f), text)
	}
	var e HashlimitEntry
	secs, err := strconv.ParseInt(f[0], 10, 32)
	if err != nil {
		return HashlimitEntry{}, fmt.Errorf("expires %q: %w", f[0], err)
	}
	e.Expires = time.Duration(max(secs, 0)) * time.Second
	src, _, ok := strings.Cut(f[1], "->")
	if !ok {
		return HashlimitEntry{}, fmt.Errorf("no \"->\" in %q", f[1])
	}
	i := strings.LastIndexByte(src, ':')
	if i < 0 {
		return HashlimitEntry{}, fmt.Errorf("no port in source %q", src)
	}
	if _, err := strconv.ParseUint(src[i+1:], 10, 16); err != nil {
		return HashlimitEntry{}, fmt.Errorf("source port in %q: %w", src, err)
	}
	if e.Source, err = netip.ParseAddr(src[:i]); err != nil || e.Source.Zone() != "" {
		return HashlimitEntry{}, fmt.Errorf("source address %q: not an address", src[:i])
	}
	e.Source = e.Source.Unmap()
	for j, dst := range []*uint64{&e.Credit, &e.Cap, &e.Cost} {
		if *dst, err = strconv.ParseUint(f[2+j], 10, 64); err != nil {
			return HashlimitEntry{}, fmt.Errorf("%s %q: %w", []string{"credit", "credit cap", "cost"}[j], f[2+j], err)
		}
	}
	return e, nil
}

var _ rules.Sensor = (*Backend)(nil)

// SensorRead reads the sensor's counting buckets (see SensorBurst) of both
// families in the backend's namespace: every table named "synhot4-*" or
// "synhot6-*" (one per family while synban's rules reference it). A source's
// Packets are the SYNs its twin meter found over the limit since it
// entered the table, up to SensorBurst; IPv6 keys are masked to the meter's
// prefix length and read as addresses. No table (meter off, or rules of an
// older synban) reads as empty.
func (b *Backend) SensorRead(ctx context.Context) (rules.SensorReading, error) {
	out := rules.SensorReading{Counted: true}
	var tables []string
	err := inNS(b.opts.NetNS, func() error {
		for _, dir := range []string{hashlimitDir4, hashlimitDir6} {
			prefix := "synhot4-"
			if dir == hashlimitDir6 {
				prefix = "synhot6-"
			}
			ents, err := os.ReadDir(dir)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("list %s: %w", dir, err)
			}
			for _, ent := range ents {
				if !strings.HasPrefix(ent.Name(), prefix) {
					continue
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				path := filepath.Join(dir, ent.Name())
				els, err := readHashlimit(path)
				if err != nil {
					return err
				}
				tables = append(tables, strings.Replace(path, "/thread-self", "", 1))
				for _, e := range els {
					n, _ := e.Taken()
					out.Sources = append(out.Sources, rules.SensorSource{
						Prefix: netip.PrefixFrom(e.Source, e.Source.BitLen()), Packets: n, Expires: e.Expires,
					})
				}
			}
		}
		return nil
	})
	if err != nil {
		return rules.SensorReading{}, fmt.Errorf("read the sensor: %w", err)
	}
	out.Table = strings.Join(tables, ", ")
	out.InPlace = len(tables) > 0
	slices.SortFunc(out.Sources, func(x, y rules.SensorSource) int { return policy.ComparePrefixes(x.Prefix, y.Prefix) })
	return out, nil
}

func readHashlimit(path string) ([]HashlimitEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open hashlimit table: %w", err)
	}
	defer f.Close()
	els, err := ParseHashlimit(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return els, nil
}
