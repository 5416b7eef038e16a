package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/synban/synban/internal/atomicfile"
	"github.com/synban/synban/internal/strictjson"
	"github.com/synban/synban/internal/trust"
)

// CountersName is the name of the counters document in the state
// directory: the kernel counters one run leaves for the next, so a run
// from cron sees what happened between runs. It is a file of its own,
// apart from the ban store, written atomically like it and read with the
// same trust checks (a regular file, never through a link).
const CountersName = "counters.json"

// CountersVersion is the counters document version this package writes
// and reads. A document of another version is ignored (the next run
// simply has no previous counters), never an error.
const CountersVersion = 1

// maxCountersSize caps what LoadCounters reads: the document holds at most
// two sensor sets of meter size (about 130k sources).
const maxCountersSize = 64 << 20

// Counters are the kernel counters at the end of one run.
type Counters struct {
	Version int `json:"version"`
	// At is when TcpExt and Interfaces were read.
	At time.Time `json:"at"`
	// TcpExt holds the TcpExt counters by their kernel names.
	TcpExt map[string]int64 `json:"tcpext"`
	// Interfaces holds each interface's receive counters.
	Interfaces map[string]IfCounters `json:"interfaces,omitempty"`
	// Sensor is the firewall sensor's reading; nil when there was none.
	Sensor *SensorCounts `json:"sensor,omitempty"`
}

// IfCounters are an interface's receive counters (/proc/net/dev).
type IfCounters struct {
	RxPackets uint64 `json:"rx_packets"`
	RxDropped uint64 `json:"rx_dropped"`
}

// SensorCounts is a reading of the firewall's sensor: per source key, the
// SYNs over the meter counted so far.
type SensorCounts struct {
	At      time.Time               `json:"at"`
	Counted bool                    `json:"counted"`
	Sources map[netip.Prefix]uint64 `json:"sources"`
}

// CountersPath is the counters document's path in dir.
func CountersPath(dir string) string { return filepath.Join(dir, CountersName) }

// LoadCounters reads the counters the previous run stored in dir. A missing
// document, or one of another version, is (nil, nil); a document that is
// not a regular file, or cannot be decoded, is an error naming it.
func LoadCounters(dir string) (*Counters, error) {
	path := CountersPath(dir)
	f, err := trust.OpenRegular(path, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read counters %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCountersSize+1))
	if err != nil {
		return nil, fmt.Errorf("read counters %s: %w", path, err)
	}
	if len(data) > maxCountersSize {
		return nil, fmt.Errorf("read counters %s: larger than %d bytes", path, maxCountersSize)
	}
	c, err := DecodeCounters(data)
	if err != nil {
		return nil, fmt.Errorf("counters file %s is corrupt (remove it; the next run stores new ones): %w", path, err)
	}
	if c.Version != CountersVersion {
		return nil, nil
	}
	return c, nil
}

// DecodeCounters decodes a counters document strictly: unknown fields,
// trailing data, a missing time or invalid source prefixes are errors.
func DecodeCounters(data []byte) (*Counters, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty file")
	}
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	if v.Version != CountersVersion {
		// Another synban's document: not ours to judge field by field.
		return &Counters{Version: v.Version}, nil
	}
	var c Counters
	if err := strictjson.Decode(data, &c); err != nil {
		return nil, err
	}
	if c.At.IsZero() {
		return nil, errors.New("no time (\"at\")")
	}
	if s := c.Sensor; s != nil {
		if s.At.IsZero() {
			return nil, errors.New("sensor reading without a time")
		}
		for p := range s.Sources {
			if !p.IsValid() {
				return nil, fmt.Errorf("sensor source %v is not a valid prefix", p)
			}
		}
	}
	return &c, nil
}

// SaveCounters writes c as dir's counters document, atomically: a
// temporary file (O_EXCL, never through a link, mode 0600), fsync, rename,
// fsync of the directory. A reader sees the old document or the new one.
func SaveCounters(dir string, c *Counters) error {
	path := CountersPath(dir)
	c.Version = CountersVersion
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode counters: %w", err)
	}
	data = append(data, '\n')
	if err := atomicfile.Write(dir, CountersName, data, true); err != nil {
		return fmt.Errorf("save counters %s: %w", path, err)
	}
	return nil
}
