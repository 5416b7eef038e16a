package policy

import (
	"math"
	"path/filepath"
	"strings"
)

// Sysctl holds the kernel settings that harden the host against SYN and
// connection floods. A setting left out of the policy is not managed: synban
// neither reports nor changes it. `synban check` reports every managed
// setting whose current value differs (drift); `synban run` writes them only
// when Apply is true, logging the old and the new value.
type Sysctl struct {
	// Apply lets `synban run` set the managed settings (default false:
	// report only).
	Apply bool `toml:"apply"`
	// TCPSyncookies is net.ipv4.tcp_syncookies: 0 off, 1 when the SYN
	// queue overflows, 2 always.
	TCPSyncookies *int `toml:"tcp_syncookies"`
	// TCPMaxSynBacklog is net.ipv4.tcp_max_syn_backlog: the SYN queue's
	// length when cookies are off.
	TCPMaxSynBacklog *int `toml:"tcp_max_syn_backlog"`
	// TCPSynackRetries is net.ipv4.tcp_synack_retries: how often a SYN-ACK
	// is resent, which sets how long a half-open entry lives (5 is ~63 s).
	TCPSynackRetries *int `toml:"tcp_synack_retries"`
	// Somaxconn is net.core.somaxconn: the cap on every listen backlog,
	// and so on the SYN queue.
	Somaxconn *int `toml:"somaxconn"`
}

// SysctlSetting is one managed kernel setting.
type SysctlSetting struct {
	// Name is the policy key, such as "tcp_syncookies".
	Name string
	// Key is the sysctl, such as "net.ipv4.tcp_syncookies".
	Key string
	// Value is the wanted value.
	Value int
}

// sysctlKnob describes one key of [sysctl].
type sysctlKnob struct {
	name, key string
	lo, hi    int
	field     func(*Sysctl) **int
}

// sysctlKnobs lists [sysctl]'s settings in a fixed order with the ranges the
// kernel accepts (and that make sense: a backlog of 0 refuses everything).
func sysctlKnobs() []sysctlKnob {
	return []sysctlKnob{
		{"tcp_syncookies", "net.ipv4.tcp_syncookies", 0, 2, func(s *Sysctl) **int { return &s.TCPSyncookies }},
		{"tcp_max_syn_backlog", "net.ipv4.tcp_max_syn_backlog", 1, math.MaxInt32, func(s *Sysctl) **int { return &s.TCPMaxSynBacklog }},
		{"tcp_synack_retries", "net.ipv4.tcp_synack_retries", 0, 255, func(s *Sysctl) **int { return &s.TCPSynackRetries }},
		{"somaxconn", "net.core.somaxconn", 1, math.MaxInt32, func(s *Sysctl) **int { return &s.Somaxconn }},
	}
}

// Settings returns the managed settings (those the policy gives), in a
// fixed order.
func (s *Sysctl) Settings() []SysctlSetting {
	var out []SysctlSetting
	for _, k := range sysctlKnobs() {
		if v := *k.field(s); v != nil {
			out = append(out, SysctlSetting{Name: k.name, Key: k.key, Value: *v})
		}
	}
	return out
}

// Metrics configures the Prometheus text-exposition file synban writes
// after every run, for node_exporter's textfile collector.
type Metrics struct {
	// Textfile is the file's absolute path, ending in ".prom" (default "":
	// no metrics), e.g. /var/lib/node_exporter/textfile_collector/synban.prom.
	// It is replaced atomically.
	Textfile string `toml:"textfile"`
}

// validateOps checks [sysctl] and [metrics].
func (d *decoder) validateOps(p *Policy) {
	for _, k := range sysctlKnobs() {
		if v := *k.field(&p.Sysctl); v != nil {
			d.between("sysctl."+k.name, *v, k.lo, k.hi)
		}
	}
	if c := p.Sysctl.TCPSyncookies; c != nil && *c == 0 && p.Sysctl.Apply && p.Spoof.Enabled && p.Spoof.ApplySysctl {
		d.errorf("sysctl.tcp_syncookies", "0 (cookies off) contradicts spoof.apply_sysctl, which turns cookies on during a spoofed flood; the two would undo each other every run")
	}
	if t := p.Metrics.Textfile; t != "" {
		switch {
		case !filepath.IsAbs(t):
			d.errorf("metrics.textfile", "must be an absolute path, got %q", t)
		case !strings.HasSuffix(t, ".prom"):
			d.errorf("metrics.textfile", "must end in \".prom\" (node_exporter's textfile collector reads only *.prom files), got %q", t)
		case strings.ContainsFunc(t, func(r rune) bool { return r < ' ' || r == 0x7f }):
			d.errorf("metrics.textfile", "must not contain control characters, got %q", t)
		}
	}
}
