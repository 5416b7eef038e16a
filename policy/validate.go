package policy

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Limits enforced by validation.
const (
	// MaxSampleCount bounds sample.count.
	MaxSampleCount = 1000
	// MaxSetSize bounds ban.max_entries, meter.size and similar set sizes.
	MaxSetSize = 1 << 24
	// MinRouteProtocol and MaxRouteProtocol bound route.protocol; 0..4 are
	// the kernel's own (unspec, redirect, kernel, boot, static).
	MinRouteProtocol, MaxRouteProtocol = 5, 255
)

// Accepted enumerations.
var (
	backends      = []string{"auto", "nftables", "iptables", "route"}
	sampleSources = []string{"auto", "sockdiag", "procfs", "conntrack"}
	states        = []string{string(StateSynRecv), string(StateEstablished), string(StateAny)}
	families      = []string{"inet"}
	nftModes      = []string{"table", "sets"}
	setsFamilies  = []string{"inet", "ip", "ip6"}
	hooks         = []string{"input", "forward", "prerouting", "ingress"}
	routeTypes    = []string{"prohibit", "blackhole", "unreachable"}
)

var (
	ruleNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	nftNameRE   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)
	chainNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,27}$`)
	// deviceRE is an interface name (IFNAMSIZ 16 with its NUL) limited to
	// characters that are safe in an nft chain name and script.
	deviceRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$`)
)

// reservedChains are iptables names a user chain may not take: built-in
// chains and standard targets.
var reservedChains = []string{
	"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING",
	"ACCEPT", "DROP", "QUEUE", "RETURN", "REJECT", "LOG", "DOCKER-USER", "DOCKER",
}

// Validate checks a policy built or modified in Go. Parse and Load already
// validate; errors here carry the policy's Source as file and no line.
func (p *Policy) Validate() error {
	d := &decoder{file: p.Source, pos: positions{}}
	d.validate(p)
	return d.err()
}

func quoteList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

func (d *decoder) oneOf(key, got string, list []string) {
	if !slices.Contains(list, got) {
		d.errorf(key, "must be one of %s, got %q", quoteList(list), got)
	}
}

func (d *decoder) positive(key string, got int) {
	if got <= 0 {
		d.errorf(key, "must be > 0, got %d", got)
	}
}

func (d *decoder) between(key string, got, lo, hi int) {
	if got < lo || got > hi {
		d.errorf(key, "must be in %d..%d, got %d", lo, hi, got)
	}
}

func (d *decoder) positiveDuration(key string, got Duration) {
	if got.Duration <= 0 {
		d.errorf(key, "must be a duration > 0, got %s", got)
	}
}

// portList checks a ports list built in Go (Parse has checked each port
// already): its length, and that no port is 0 or repeated. It reports the
// first 0 and the first repeat only.
func (d *decoder) portList(key string, ports []uint16) {
	if len(ports) > maxPorts {
		d.errorf(key, "must have at most %d entries, got %d", maxPorts, len(ports))
		return
	}
	var seen [65536 / 64]uint64
	zero, dup := false, false
	for i, port := range ports {
		switch {
		case port == 0:
			if !zero {
				d.errorf(fmt.Sprintf("%s[%d]", key, i), "port must be in 1..65535, got 0")
				zero = true
			}
		case seen[port/64]&(1<<(port%64)) != 0:
			if !dup {
				d.errorf(fmt.Sprintf("%s[%d]", key, i), "duplicate port %d", port)
				dup = true
			}
		}
		seen[port/64] |= 1 << (port % 64)
		if zero && dup {
			return
		}
	}
}

// allowList checks allow-list entries built in Go (Parse makes them
// canonical); only the first maxErrors bad ones get an Error each.
func (d *decoder) allowList(addrs []netip.Prefix) {
	bad := 0
	for i, a := range addrs {
		var msg string
		switch {
		case !a.IsValid():
			msg = "invalid prefix"
		case Canonical(a) != a:
			msg = fmt.Sprintf("prefix %s is not canonical; use %s", a, Canonical(a))
		default:
			continue
		}
		if bad++; bad > maxErrors {
			d.dropped++
			continue
		}
		d.errorf(fmt.Sprintf("allow.addresses[%d]", i), "%s", msg)
	}
}

// defaulted notes ", the default" when key is not in the file.
func (d *decoder) defaulted(key string) string {
	if d.pos.has(key) {
		return ""
	}
	return ", the default"
}

func (d *decoder) validate(p *Policy) {
	d.oneOf("backend", p.Backend, backends)

	d.oneOf("sample.source", p.Sample.Source, sampleSources)
	d.between("sample.count", p.Sample.Count, 1, MaxSampleCount)
	d.positiveDuration("sample.interval", p.Sample.Interval)
	switch {
	case p.Sample.MinHits < 1:
		d.errorf("sample.min_hits", "must be >= 1, got %d", p.Sample.MinHits)
	case p.Sample.Count >= 1 && p.Sample.MinHits > p.Sample.Count:
		d.errorf("sample.min_hits", "must be <= sample.count (%d%s), got %d",
			p.Sample.Count, d.defaulted("sample.count"), p.Sample.MinHits)
	}

	if len(p.Rules) == 0 {
		d.errorf("rule", "at least one [[rule]] is required")
	}
	names := map[string]int{}
	for i, r := range p.Rules {
		k := fmt.Sprintf("rule[%d]", i)
		switch {
		case !ruleNameRE.MatchString(r.Name):
			d.errorf(k+".name", "must be 1..64 letters, digits, '-', '_' or '.', starting with a letter or digit, got %q", r.Name)
		default:
			if j, dup := names[r.Name]; dup {
				d.errorf(k+".name", "duplicate rule name %q (also rule[%d])", r.Name, j)
			} else {
				names[r.Name] = i
			}
		}
		d.oneOf(k+".state", string(r.State), states)
		d.positive(k+".threshold", r.Threshold)
		d.portList(k+".ports", r.Ports)
		if r.BanFor.Duration < 0 || r.BanFor.Duration == 0 && d.pos.has(k+".ban_for") {
			d.errorf(k+".ban_for", "must be a duration > 0, got %s", r.BanFor)
		} else if r.BanFor.Duration > 0 && p.Ban.MaxDuration.Duration > 0 && r.BanFor.Duration > p.Ban.MaxDuration.Duration {
			d.errorf(k+".ban_for", "must be <= ban.max_duration (%s%s), got %s",
				p.Ban.MaxDuration, d.defaulted("ban.max_duration"), r.BanFor)
		}
	}

	d.between("prefix.ipv4_length", p.Prefix.IPv4Length, 8, 32)
	d.between("prefix.ipv6_length", p.Prefix.IPv6Length, 16, 128)
	d.positive("prefix.ipv4_threshold", p.Prefix.IPv4Threshold)
	d.positive("prefix.ipv6_threshold", p.Prefix.IPv6Threshold)

	if n := len(p.Allow.Addresses); n > maxAllow {
		d.errorf("allow.addresses", "must have at most %d entries, got %d", maxAllow, n)
	} else {
		d.allowList(p.Allow.Addresses)
	}

	d.positiveDuration("ban.duration", p.Ban.Duration)
	d.between("ban.max_entries", p.Ban.MaxEntries, 1, MaxSetSize)
	if f := p.Ban.EscalateFactor; math.IsNaN(f) || math.IsInf(f, 0) || f < 1 || f > 1000 {
		d.errorf("ban.escalate_factor", "must be in 1..1000 (1 disables escalation), got %v", f)
	}
	d.positiveDuration("ban.max_duration", p.Ban.MaxDuration)
	if p.Ban.MaxDuration.Duration > 0 && p.Ban.Duration.Duration > p.Ban.MaxDuration.Duration {
		if d.pos.has("ban.max_duration") {
			d.errorf("ban.max_duration", "must be >= ban.duration (%s), got %s", p.Ban.Duration, p.Ban.MaxDuration)
		} else {
			d.errorf("ban.duration", "must be <= ban.max_duration (%s, the default), got %s", p.Ban.MaxDuration, p.Ban.Duration)
		}
	}
	d.positiveDuration("ban.escalate_window", p.Ban.EscalateWindow)

	d.positive("meter.rate", p.Meter.Rate)
	d.positive("meter.burst", p.Meter.Burst)
	d.positiveDuration("meter.idle_timeout", p.Meter.IdleTimeout)
	d.portList("meter.ports", p.Meter.Ports)
	d.between("meter.ipv6_length", p.Meter.IPv6Length, 16, 128)
	d.between("meter.size", p.Meter.Size, 1, MaxSetSize)

	d.positive("connlimit.max", p.ConnLimit.Max)
	d.portList("connlimit.ports", p.ConnLimit.Ports)

	switch t := p.NFTables.Table; {
	case !nftNameRE.MatchString(t):
		d.errorf("nftables.table", "must be 1..64 letters, digits, '_', '-' or '.', starting with a letter, got %q", t)
	case slices.Contains(nftKeywords, t):
		d.errorf("nftables.table", "%q is an nft keyword, which nft does not accept as a table name", t)
	}
	d.oneOf("nftables.family", p.NFTables.Family, families)
	if len(p.NFTables.Hooks) == 0 {
		d.errorf("nftables.hooks", "must name at least one hook (%s)", quoteList(hooks))
	}
	if n := len(p.NFTables.Hooks); n > maxHooks {
		d.errorf("nftables.hooks", "must have at most %d entries, got %d", maxHooks, n)
	} else {
		for i, h := range p.NFTables.Hooks {
			k := fmt.Sprintf("nftables.hooks[%d]", i)
			d.oneOf(k, h, hooks)
			if slices.Contains(p.NFTables.Hooks[:i], h) {
				d.errorf(k, "duplicate hook %q", h)
			}
		}
	}
	d.between("nftables.priority", p.NFTables.Priority, -400, 400)
	d.validateNFTIntegration(p)

	d.positive("spoof.min_sources", p.Spoof.MinSources)
	d.positive("spoof.max_per_source", p.Spoof.MaxPerSource)
	if r := p.Spoof.CookieRatio; math.IsNaN(r) || r < 0 || r > 1 {
		d.errorf("spoof.cookie_ratio", "must be in 0..1, got %v", r)
	}

	d.oneOf("route.type", p.Route.Type, routeTypes)
	d.between("route.protocol", p.Route.Protocol, MinRouteProtocol, MaxRouteProtocol)

	switch c := p.IPTables.Chain; {
	case !chainNameRE.MatchString(c):
		d.errorf("iptables.chain", "must be 1..28 letters, digits, '_' or '-', not starting with '-', got %q", c)
	case slices.Contains(reservedChains, strings.ToUpper(c)):
		d.errorf("iptables.chain", "%q is a built-in chain or target name", c)
	}
	if strings.ContainsFunc(p.IPTables.Path, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		d.errorf("iptables.path", "must be a program name or path without spaces or control characters, got %q", p.IPTables.Path)
	}

	d.validateOps(p)
}
