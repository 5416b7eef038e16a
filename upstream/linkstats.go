package upstream

import (
	"fmt"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
)

// LinkSample is one reading of an interface's counters.
type LinkSample struct {
	At        time.Time `json:"at"`
	RxBytes   uint64    `json:"rx_bytes"`
	RxPackets uint64    `json:"rx_packets"`
	TxBytes   uint64    `json:"tx_bytes"`
	TxPackets uint64    `json:"tx_packets"`
	Interface string    `json:"interface"`
}

// LinkRate is the rate between two samples.
type LinkRate struct {
	Interface string
	Over      time.Duration
	// RxBps and TxBps are bits per second; RxPps and TxPps packets per
	// second.
	RxBps, TxBps, RxPps, TxPps float64
}

// Rate computes the rate from a to b. It is pure. Counters that went
// backwards (the interface was reset or replaced) or samples not in time
// order give an error rather than a made-up rate.
func Rate(a, b LinkSample) (LinkRate, error) {
	if a.Interface != b.Interface {
		return LinkRate{}, fmt.Errorf("link rate: samples of %q and %q", a.Interface, b.Interface)
	}
	d := b.At.Sub(a.At)
	if d <= 0 {
		return LinkRate{}, fmt.Errorf("link rate of %s: samples %s apart, want the second later", a.Interface, d)
	}
	if b.RxBytes < a.RxBytes || b.RxPackets < a.RxPackets || b.TxBytes < a.TxBytes || b.TxPackets < a.TxPackets {
		return LinkRate{}, fmt.Errorf("link rate of %s: counters went backwards (interface reset?)", a.Interface)
	}
	s := d.Seconds()
	return LinkRate{
		Interface: a.Interface,
		Over:      d,
		RxBps:     float64(b.RxBytes-a.RxBytes) * 8 / s,
		TxBps:     float64(b.TxBytes-a.TxBytes) * 8 / s,
		RxPps:     float64(b.RxPackets-a.RxPackets) / s,
		TxPps:     float64(b.TxPackets-a.TxPackets) / s,
	}, nil
}

// SampleLink reads the counters of the named interface over netlink, in the
// calling thread's network namespace (h nil) or h's.
func SampleLink(h *netlink.Handle, name string, now time.Time) (LinkSample, error) {
	var (
		l   netlink.Link
		err error
	)
	if h != nil {
		l, err = h.LinkByName(name)
	} else {
		l, err = netlink.LinkByName(name)
	}
	if err != nil {
		return LinkSample{}, fmt.Errorf("interface %s: %w", name, err)
	}
	st := l.Attrs().Statistics
	if st == nil {
		return LinkSample{}, fmt.Errorf("interface %s: the kernel gave no statistics", name)
	}
	return LinkSample{At: now, Interface: name,
		RxBytes: st.RxBytes, RxPackets: st.RxPackets, TxBytes: st.TxBytes, TxPackets: st.TxPackets}, nil
}

// UplinkRate is the combined rate of the uplink interfaces between two
// readings of all of them (prev from the last run or the window's start).
// Every interface must be in both readings.
func UplinkRate(prev, cur []LinkSample) (LinkRate, error) {
	var sum LinkRate
	if len(cur) == 0 {
		return sum, fmt.Errorf("uplink rate: no interfaces")
	}
	for _, c := range cur {
		i := slices.IndexFunc(prev, func(p LinkSample) bool { return p.Interface == c.Interface })
		if i < 0 {
			return LinkRate{}, fmt.Errorf("uplink rate: no earlier sample of %s", c.Interface)
		}
		r, err := Rate(prev[i], c)
		if err != nil {
			return LinkRate{}, err
		}
		if sum.Interface != "" {
			sum.Interface += "+"
		}
		sum.Interface += c.Interface
		sum.Over = max(sum.Over, r.Over)
		sum.RxBps += r.RxBps
		sum.TxBps += r.TxBps
		sum.RxPps += r.RxPps
		sum.TxPps += r.TxPps
	}
	return sum, nil
}
