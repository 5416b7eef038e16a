package policy

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"
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

	// MaxTimeout is the longest timeout synban hands to the kernel: a ban's
	// (ban.duration, ban.max_duration, rule.ban_for, and so every ban, which
	// rules.Compile caps at ban.max_duration) and the meter's idle timeout
	// (meter.idle_timeout). Validation refuses longer values and
	// rules.Compile never produces one.
	//
	// Measured with nftables 1.0.6 on Linux 6.18, by `nft -f` of a set
	// element "timeout X" and of a set's "timeout X" in a throwaway network
	// namespace: nft's parser refuses a time whose number has more than 8
	// digits ("timeout 100000000s" and "100000000ms" and even "099999999s":
	// "Error: value too large"), whatever its unit ("30000h" passes, being
	// 5 digits). synban renders whole seconds ("600s", templates.Duration;
	// rules.Compile rounds every timeout up to a whole second), so
	// 99999999s (1157d9h46m39s) is the longest it can write. The kernel
	// itself (the netlink path, rules/nft) takes up to 213503d ("213504d":
	// "Numerical result out of range", milliseconds must stay below
	// 2^64/10^6), more than any time.Duration, so nft's parser is the limit.
	MaxTimeout = 99999999 * time.Second

	// MaxMeterBurst bounds meter.burst and MaxConnLimit bounds
	// connlimit.max: the kernel keeps both in 32 bits (NFTA_LIMIT_BURST,
	// NFTA_CONNLIMIT_COUNT). Measured like MaxTimeout: nft accepts
	// "burst 4294967295 packets" and "ct count over 4294967295", but reads
	// 4294967296 as 0 without a word (no burst, a cap of 0 connections),
	// and the netlink path would truncate it the same way. meter.rate has
	// no such bound: the kernel took "limit rate over
	// 9223372036854775807/second".
	MaxMeterBurst = math.MaxUint32
	MaxConnLimit  = math.MaxUint32
)

// Accepted enumerations.
var (
	backends      = []string{"auto", "nftables", "iptables", "route"}
	sampleSources = []string{"auto", "sockdiag", "procfs", "conntrack"}
	states        = []string{string(StateSynRecv), string(StateEstablished), string(StateAny), string(StateSynRate)}
	families      = []string{"inet"}
	nftModes      = []string{"table", "sets"}
	setsFamilies  = []string{"inet", "ip", "ip6"}
	hooks         = []string{"input", "forward", "prerouting", "ingress"}
	routeTypes    = []string{"prohibit", "blackhole", "unreachable"}
)

var (
	ruleNames  = namePattern{first: letters + digits, rest: letters + digits + "_.-", max: 64}
	nftNames   = namePattern{first: letters, rest: letters + digits + "_.-", max: 64}
	chainNames = namePattern{first: letters + digits + "_", rest: letters + digits + "_-", max: 28}
	// deviceNames is an interface name (IFNAMSIZ 16 with its NUL) limited to
	// characters that are safe in an nft chain name and script.
	deviceNames = namePattern{first: letters + digits + "_", rest: letters + digits + "_.-", max: 15}
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

// atMost refuses got over limit, saying why the limit is there.
func (d *decoder) atMost(key string, got, limit int, why string) {
	if got > limit {
		d.errorf(key, "must be <= %d (%s), got %d", limit, why, got)
	}
}

func (d *decoder) positiveDuration(key string, got Duration) {
	if got.Duration <= 0 {
		d.errorf(key, "must be a duration > 0, got %s", got)
	}
}

// notBroader refuses a prefix aggregation length (key, got) shorter than
// the minimum ban length (minKey, min): every prefix ban would be left out.
// The error goes to whichever of the two keys the file sets, the
// aggregation length when both or neither.
func (d *decoder) notBroader(key string, got int, minKey string, min int) {
	if got >= min {
		return
	}
	if d.pos.has(minKey) && !d.pos.has(key) {
		d.errorf(minKey, "must be <= %s (%d, the default), got %d: every prefix ban would be broader than the minimum", key, got, min)
		return
	}
	d.errorf(key, "must be >= %s (%d%s), got %d: every prefix ban would be broader than the minimum", minKey, min, d.defaulted(minKey), got)
}

// timeout checks a duration that becomes a kernel timeout: > 0 and at most
// MaxTimeout.
func (d *decoder) timeout(key string, got Duration) {
	d.positiveDuration(key, got)
	d.notOverTimeout(key, got)
}

// notOverTimeout refuses a duration longer than MaxTimeout.
func (d *decoder) notOverTimeout(key string, got Duration) {
	if got.Duration > MaxTimeout {
		d.errorf(key, "must be <= %s (%ds, the longest timeout nft accepts), got %s",
			MaxTimeout, MaxTimeout/time.Second, got)
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
		case a.Bits() == 0:
			fam := "IPv6"
			if a.Addr().Is4() {
				fam = "IPv4"
			}
			msg = fmt.Sprintf("%s allows every %s address, so nothing could ever be banned; remove it", a, fam)
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
		case !ruleNames.MatchString(r.Name):
			d.errorf(k+".name", "must be 1..64 letters, digits, '-', '_' or '.', starting with a letter or digit, got %q", r.Name)
		default:
			if j, dup := names[r.Name]; dup {
				d.errorf(k+".name", "duplicate rule name %q (also rule[%d])", r.Name, j)
			} else {
				names[r.Name] = i
			}
		}
		d.oneOf(k+".state", string(r.State), states)
		if r.State == StateSynRate {
			if !p.Meter.Enabled {
				d.errorf(k+".state", "syn_rate counts the SYNs the meter finds over its limit: it needs [meter] enabled = true")
			}
			if len(r.Ports) > 0 {
				d.errorf(k+".ports", "a syn_rate rule counts the meter's SYNs; the meter's ports ([meter] ports) choose the ports, give none here")
			}
		}
		d.positive(k+".threshold", r.Threshold)
		d.portList(k+".ports", r.Ports)
		if r.BanFor.Duration < 0 || r.BanFor.Duration == 0 && d.pos.has(k+".ban_for") {
			d.errorf(k+".ban_for", "must be a duration > 0, got %s", r.BanFor)
		} else if r.BanFor.Duration > MaxTimeout {
			d.notOverTimeout(k+".ban_for", r.BanFor)
		} else if r.BanFor.Duration > 0 && p.Ban.MaxDuration.Duration > 0 && r.BanFor.Duration > p.Ban.MaxDuration.Duration {
			d.errorf(k+".ban_for", "must be <= ban.max_duration (%s%s), got %s",
				p.Ban.MaxDuration, d.defaulted("ban.max_duration"), r.BanFor)
		}
	}

	d.between("prefix.ipv4_length", p.Prefix.IPv4Length, 8, 32)
	d.between("prefix.ipv6_length", p.Prefix.IPv6Length, 16, 128)
	d.between("ban.min_ipv4_length", p.Ban.MinIPv4Length, 1, 32)
	d.between("ban.min_ipv6_length", p.Ban.MinIPv6Length, 1, 128)
	d.notBroader("prefix.ipv4_length", p.Prefix.IPv4Length, "ban.min_ipv4_length", p.Ban.MinIPv4Length)
	d.notBroader("prefix.ipv6_length", p.Prefix.IPv6Length, "ban.min_ipv6_length", p.Ban.MinIPv6Length)
	d.positive("prefix.ipv4_threshold", p.Prefix.IPv4Threshold)
	d.positive("prefix.ipv6_threshold", p.Prefix.IPv6Threshold)

	if n := len(p.Allow.Addresses); n > maxAllow {
		d.errorf("allow.addresses", "must have at most %d entries, got %d", maxAllow, n)
	} else {
		d.allowList(p.Allow.Addresses)
	}

	d.timeout("ban.duration", p.Ban.Duration)
	d.between("ban.max_entries", p.Ban.MaxEntries, 1, MaxSetSize)
	if f := p.Ban.EscalateFactor; math.IsNaN(f) || math.IsInf(f, 0) || f < 1 || f > 1000 {
		d.errorf("ban.escalate_factor", "must be in 1..1000 (1 disables escalation), got %v", f)
	}
	d.timeout("ban.max_duration", p.Ban.MaxDuration)
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
	d.atMost("meter.burst", p.Meter.Burst, MaxMeterBurst, "the kernel keeps the burst in 32 bits")
	d.timeout("meter.idle_timeout", p.Meter.IdleTimeout)
	d.portList("meter.ports", p.Meter.Ports)
	d.between("meter.ipv6_length", p.Meter.IPv6Length, 16, 128)
	d.between("meter.size", p.Meter.Size, 1, MaxSetSize)

	d.positive("connlimit.max", p.ConnLimit.Max)
	d.atMost("connlimit.max", p.ConnLimit.Max, MaxConnLimit, "the kernel keeps the count in 32 bits")
	d.portList("connlimit.ports", p.ConnLimit.Ports)

	switch t := p.NFTables.Table; {
	case !nftNames.MatchString(t):
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
	case !chainNames.MatchString(c):
		d.errorf("iptables.chain", "must be 1..28 letters, digits, '_' or '-', not starting with '-', got %q", c)
	case slices.Contains(reservedChains, strings.ToUpper(c)):
		d.errorf("iptables.chain", "%q is a built-in chain or target name", c)
	}
	if strings.ContainsFunc(p.IPTables.Path, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		d.errorf("iptables.path", "must be a program name or path without spaces or control characters, got %q", p.IPTables.Path)
	}

	d.validateOps(p)
	d.validateCrowdSec(p)
	d.validateUpstream(p)
	d.validateXDP(p)
}
