package ipt

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
)

// The ipsets synban creates. ipset names are global to a network namespace,
// so rules' set vocabulary is prefixed with "synban-" and uses dashes.
const (
	IPSetAllow4  = "synban-allow-v4"   // hash:net, no timeout
	IPSetAllow6  = "synban-allow-v6"   // hash:net, no timeout
	IPSetBan4    = "synban-ban-v4"     // hash:ip, per-entry timeout and comment
	IPSetBan6    = "synban-ban-v6"     // hash:ip, per-entry timeout and comment
	IPSetBanNet4 = "synban-ban-net-v4" // hash:net, per-entry timeout and comment
	IPSetBanNet6 = "synban-ban-net-v6" // hash:net, per-entry timeout and comment
)

// DefaultChain is the name of synban's own chain in the filter table.
const DefaultChain = "SYNBAN"

// JumpComment is the comment on the jump rules that lead to synban's chain;
// it marks them as synban's.
const JumpComment = "synban"

// maxTimeout is the longest per-entry timeout ipset accepts, in seconds
// (UINT_MAX/1000 in the kernel).
const maxTimeout = 2147483

// maxCommentLen is the longest ipset comment (IPSET_MAX_COMMENT_SIZE 255,
// keeping room for the terminating NUL).
const maxCommentLen = 255

// multiportMax is how many ports one multiport match takes.
const multiportMax = 15

// IPSet describes one ipset synban wants.
type IPSet struct {
	// Name is the set's name, e.g. IPSetBan4.
	Name string
	// Type is "hash:ip" or "hash:net".
	Type string
	// V6 is true for family inet6.
	V6 bool
	// Timeout is true when entries carry a timeout (and a comment).
	Timeout bool
	// Counters is true when every entry counts the packets it matched
	// (ipset's counters option): the ban sets, read by Backend.BanDrops.
	Counters bool
	// MaxElem is the set's capacity.
	MaxElem int
}

// Family is the ipset family name: "inet" or "inet6".
func (s IPSet) Family() string {
	if s.V6 {
		return "inet6"
	}
	return "inet"
}

// IPSets lists the ipsets rs needs, allow sets first, IPv4 before IPv6.
func IPSets(rs *rules.Ruleset) []IPSet {
	m := maxElem(rs)
	return []IPSet{
		{Name: IPSetAllow4, Type: "hash:net", MaxElem: allowMax(rs, false, m)},
		{Name: IPSetAllow6, Type: "hash:net", V6: true, MaxElem: allowMax(rs, true, m)},
		{Name: IPSetBan4, Type: "hash:ip", Timeout: true, Counters: true, MaxElem: m},
		{Name: IPSetBan6, Type: "hash:ip", V6: true, Timeout: true, Counters: true, MaxElem: m},
		{Name: IPSetBanNet4, Type: "hash:net", Timeout: true, Counters: true, MaxElem: m},
		{Name: IPSetBanNet6, Type: "hash:net", V6: true, Timeout: true, Counters: true, MaxElem: m},
	}
}

// maxElem is the ban sets' capacity: rs.MaxEntries, or ipset's default 65536.
func maxElem(rs *rules.Ruleset) int {
	if rs.MaxEntries > 0 {
		return rs.MaxEntries
	}
	return 65536
}

// allowMax sizes an allow set so that the allow list always fits.
func allowMax(rs *rules.Ruleset, v6 bool, m int) int {
	n := len(AllowEntries(rs, v6))
	if n > m {
		return n
	}
	return m
}

// BanIPSet names the ipset a banned prefix belongs in: IPSetBan4/IPSetBan6
// for a single address, IPSetBanNet4/IPSetBanNet6 for a shorter prefix. It
// follows rules.BanSet, the one choice between the address and prefix sets.
func BanIPSet(p netip.Prefix) string {
	switch rules.BanSet(p) {
	case rules.SetBan4:
		return IPSetBan4
	case rules.SetBanNet4:
		return IPSetBanNet4
	case rules.SetBan6:
		return IPSetBan6
	default:
		return IPSetBanNet6
	}
}

// BanEntry returns the ipset a banned prefix goes in and its element as
// ipset writes it: a bare address in the hash:ip sets, address/length in
// the hash:net sets.
func BanEntry(p netip.Prefix) (set, elem string) {
	p = policy.Canonical(p)
	set = BanIPSet(p)
	if set == IPSetBan4 || set == IPSetBan6 {
		return set, p.Addr().String()
	}
	return set, p.String()
}

// AllowEntries returns rs.Allow's prefixes of one family, canonical, as
// hash:net accepts them: a /0 (which hash:net refuses) becomes its two
// halves.
func AllowEntries(rs *rules.Ruleset, v6 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range rs.Allow {
		if !p.IsValid() {
			continue
		}
		p = policy.Canonical(p)
		if p.Addr().Is6() != v6 {
			continue
		}
		if p.Bits() == 0 {
			// The upper half starts with the top bit set.
			b := p.Addr().AsSlice()
			b[0] = 0x80
			upper, _ := netip.AddrFromSlice(b)
			out = append(out, netip.PrefixFrom(p.Addr(), 1), netip.PrefixFrom(upper, 1))
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, policy.ComparePrefixes)
	return slices.Compact(out)
}

// TimeoutSeconds is a ban's ipset timeout: whole seconds rounded up, at
// most ipset's maximum; 0 (no expiry) for a zero or negative timeout.
func TimeoutSeconds(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second
	if s > maxTimeout {
		s = maxTimeout
	}
	return uint32(s)
}

// Comment makes s safe for an ipset comment: printable ASCII, no double
// quotes or backslashes, white space runs collapsed, at most 255 bytes.
func Comment(s string) string { return rules.SafeText(s, maxCommentLen) }

// MeterName is the hashlimit table name of one family's SYN meter:
// "synban4-" or "synban6-" and seven hex digits of a digest of the meter's
// configuration (15 characters, hashlimit's limit). The kernel shares a
// hashlimit table by name and keeps the configuration of the first rule that
// created it, so a changed rate, burst, expiry, size or mask must get a new
// name to take effect.
func MeterName(m *rules.Meter, v6 bool) string {
	fam := "4"
	if v6 {
		fam = "6"
	}
	sum := sha256.Sum256([]byte(strings.Join(meterConfig(m, v6), " ")))
	return "synban" + fam + "-" + hex.EncodeToString(sum[:4])[:7]
}

// The iptables sensor. hashlimit publishes, per source, its token bucket
// (/proc/net/ipt_hashlimit/NAME), not a packet count; a bucket that
// refills at ten tokens a minute from a burst of SensorBurst is a counter:
// every packet takes one token, so the tokens missing are the packets
// seen (less one every 6 s). The sensor's rule puts such a bucket behind a
// twin of the meter (same configuration, its own table): the twin sees
// the same SYNs as the meter and so finds the same ones over the limit,
// and only those reach the counting bucket. The rule has no target: it
// counts and lets the packet go on to the meter's rule, which drops it.
const (
	// SensorBurst is the most SYNs over the meter the sensor counts per
	// source before its bucket is empty (hashlimit's largest burst).
	SensorBurst = 10000
	// SensorRefill is the counting bucket's rate: the slowest whose cap
	// the kernel can hold with that burst. The cap is the burst times a
	// token's cost in credits, which grows as the rate slows; at 1/min
	// it wraps around 2^64 and the bucket held 1,052 tokens, not 10000.
	SensorRefill = "10/min"
)

// SensorName is the hashlimit table of one family's sensor (its counting
// buckets): "synhot4-" or "synhot6-" and the meter's digest.
func SensorName(m *rules.Meter, v6 bool) string { return "synhot" + MeterName(m, v6)[len("synban"):] }

// sensorTwinName is the table of the sensor's twin of the meter.
func sensorTwinName(m *rules.Meter, v6 bool) string {
	return "synbaw" + MeterName(m, v6)[len("synban"):]
}

// sensorConfig is the counting hashlimit of the sensor's rule, in the
// order `iptables -S` prints it: keyed like the meter, as many entries,
// kept rules.SensorTimeout after a source's last SYN over the meter.
func sensorConfig(m *rules.Meter, v6 bool) []string {
	args := []string{
		"--hashlimit-upto", SensorRefill,
		"--hashlimit-burst", strconv.Itoa(SensorBurst),
		"--hashlimit-mode", "srcip",
		"--hashlimit-name", SensorName(m, v6),
	}
	if m.Size > 0 {
		args = append(args, "--hashlimit-htable-max", strconv.Itoa(m.Size))
	}
	args = append(args, "--hashlimit-htable-expire", strconv.FormatInt(rules.SensorTimeout.Milliseconds(), 10))
	if v6 {
		if l := m.IPv6Length; l > 0 && l < 128 {
			args = append(args, "--hashlimit-srcmask", strconv.Itoa(l))
		}
	}
	return args
}

// meterConfig is the hashlimit part of a meter rule, without its name, in
// the order `iptables -S` prints it.
func meterConfig(m *rules.Meter, v6 bool) []string {
	args := []string{
		"--hashlimit-above", strconv.Itoa(max(m.Rate, 1)) + "/sec",
		"--hashlimit-burst", strconv.Itoa(max(m.Burst, 1)),
		"--hashlimit-mode", "srcip",
	}
	args = append(args, "--hashlimit-name", "NAME")
	if m.Size > 0 {
		args = append(args, "--hashlimit-htable-max", strconv.Itoa(m.Size))
	}
	if m.Timeout > 0 {
		ms := (m.Timeout + time.Millisecond - 1) / time.Millisecond
		args = append(args, "--hashlimit-htable-expire", strconv.FormatInt(int64(ms), 10))
	}
	if v6 {
		if l := m.IPv6Length; l > 0 && l < 128 {
			args = append(args, "--hashlimit-srcmask", strconv.Itoa(l))
		}
	}
	return args
}

// synMatch matches TCP SYNs (what `--syn` means, spelled the way
// `iptables -S` prints it) to the given destination ports.
func synMatch(ports []uint16) [][]string {
	syn := []string{"-m", "tcp", "--tcp-flags", "FIN,SYN,RST,ACK", "SYN"}
	ps := slices.Clone(ports)
	slices.Sort(ps)
	ps = slices.Compact(slices.DeleteFunc(ps, func(p uint16) bool { return p == 0 }))
	switch len(ps) {
	case 0:
		return [][]string{append([]string{"-p", "tcp"}, syn...)}
	case 1:
		return [][]string{{"-p", "tcp", "-m", "tcp", "--dport", strconv.Itoa(int(ps[0])), "--tcp-flags", "FIN,SYN,RST,ACK", "SYN"}}
	}
	var out [][]string
	for chunk := range slices.Chunk(ps, multiportMax) {
		s := make([]string, len(chunk))
		for i, p := range chunk {
			s[i] = strconv.Itoa(int(p))
		}
		m := []string{"-p", "tcp", "-m", "multiport", "--dports", strings.Join(s, ",")}
		out = append(out, append(m, syn...))
	}
	return out
}

// ChainRules returns the rules of synban's chain for one family, each as
// iptables arguments after "-A CHAIN", in the form `iptables -S` prints them
// back: the allow list returns first, then the ban sets drop, then the SYN
// meter and the connection cap (when rs has them) drop.
func ChainRules(rs *rules.Ruleset, v6 bool) [][]string {
	allow, ban, banNet, fam, mask := IPSetAllow4, IPSetBan4, IPSetBanNet4, "v4", "32"
	if v6 {
		allow, ban, banNet, fam, mask = IPSetAllow6, IPSetBan6, IPSetBanNet6, "v6", "128"
	}
	out := [][]string{
		{"-m", "set", "--match-set", allow, "src", "-j", "RETURN"},
		{"-m", "set", "--match-set", ban, "src", "-m", "comment", "--comment", "ban_" + fam, "-j", "DROP"},
		{"-m", "set", "--match-set", banNet, "src", "-m", "comment", "--comment", "ban_net_" + fam, "-j", "DROP"},
	}
	if m := rs.Meter; m != nil {
		cfg := meterConfig(m, v6)
		cfg[slices.Index(cfg, "NAME")] = MeterName(m, v6)
		twin := meterConfig(m, v6)
		twin[slices.Index(twin, "NAME")] = sensorTwinName(m, v6)
		hot := sensorConfig(m, v6)
		for _, match := range synMatch(m.Ports) {
			// The sensor first: a rule without a target that counts, per
			// source, the SYNs its twin meter finds over the limit.
			r := append(slices.Clone(match), "-m", "hashlimit")
			r = append(r, twin...)
			r = append(r, "-m", "hashlimit")
			r = append(r, hot...)
			out = append(out, append(r, "-m", "comment", "--comment", "hot_"+fam))
			r = append(slices.Clone(match), "-m", "hashlimit")
			r = append(r, cfg...)
			r = append(r, "-m", "comment", "--comment", "meter_"+fam, "-j", "DROP")
			out = append(out, r)
		}
	}
	if c := rs.ConnLimit; c != nil {
		for _, match := range synMatch(c.Ports) {
			r := append(slices.Clone(match), "-m", "connlimit",
				"--connlimit-above", strconv.Itoa(max(c.Max, 0)),
				"--connlimit-mask", mask, "--connlimit-saddr",
				"-m", "comment", "--comment", "connlimit_"+fam, "-j", "DROP")
			out = append(out, r)
		}
	}
	return out
}

// JumpRule is the rule, after "-I BUILTIN 1", that sends packets to chain.
func JumpRule(chain string) []string {
	return []string{"-m", "comment", "--comment", JumpComment, "-j", chain}
}

// HookChains maps rs.Hooks to the built-in chains that jump to synban's
// chain: "input" to INPUT (also when Hooks is empty), "forward" to FORWARD.
func HookChains(rs *rules.Ruleset) ([]string, error) {
	if len(rs.Hooks) == 0 {
		return []string{"INPUT"}, nil
	}
	var out []string
	for _, h := range rs.Hooks {
		var c string
		switch h {
		case "input":
			c = "INPUT"
		case "forward":
			c = "FORWARD"
		default:
			return nil, fmt.Errorf("hook %q: the iptables backend supports input and forward", h)
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}
