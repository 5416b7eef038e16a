package policy

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

//go:embed default.toml
var defaultTOML []byte

// DefaultSource is the Source (and error file name) of the embedded default policy.
const DefaultSource = "<embedded default>"

// maxFileSize bounds what Load reads; a policy is a few kilobytes.
const maxFileSize = 1 << 20

// DefaultTOML returns the text of the embedded default policy, comments included.
func DefaultTOML() []byte { return append([]byte(nil), defaultTOML...) }

// Default returns the embedded default policy (policy/default.toml), parsed
// and validated like a user file. Each call returns a fresh copy.
func Default() *Policy {
	p, err := parse(DefaultSource, defaultTOML, &Policy{})
	if err != nil {
		// default.toml is part of the binary and tested; this cannot happen
		// in a built synban.
		panic(fmt.Sprintf("policy: embedded default is invalid: %v", err))
	}
	return p
}

// Load reads and parses the policy file at path. Errors about the file's
// content are *Error values naming path; a file that cannot be read gives an
// *Error wrapping the os error.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read policy: %v", unwrapPath(err)), Err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read policy: %v", unwrapPath(err)), Err: err}
	}
	if len(data) > maxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("policy is larger than %d bytes", maxFileSize)}
	}
	return Parse(path, data)
}

// unwrapPath drops the path from an *os.PathError; the Error names the file.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse decodes and validates the policy in data; name is the file name
// used in errors and as Source. Keys missing from data take the defaults of
// Default; a data that gives any [[rule]] replaces the default rule list.
// Every problem found is reported (see Error).
func Parse(name string, data []byte) (*Policy, error) {
	return parse(name, data, Default())
}

// parse decodes data over base (which it modifies) and validates the result.
func parse(name string, data []byte, base *Policy) (*Policy, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return nil, syntaxError(name, err)
	}
	d := &decoder{file: name, pos: scanPositions(string(data))}
	base.Source = name
	d.policy(raw, base)
	d.validate(base)
	if err := joinErrors(d.errs); err != nil {
		return nil, err
	}
	return base, nil
}

func syntaxError(name string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if msg == "" {
			msg = err.Error()
		}
		return &Error{File: name, Line: pe.Position.Line, Col: pe.Position.Col, Key: pe.LastKey, Msg: "invalid TOML: " + msg, Err: err}
	}
	return &Error{File: name, Msg: "invalid TOML: " + err.Error(), Err: err}
}

// decoder turns the generic TOML tree into a Policy, collecting errors.
type decoder struct {
	file string
	pos  positions
	errs []*Error
}

func (d *decoder) errorf(key, format string, args ...any) {
	p, _ := d.pos.lookup(key)
	d.errs = append(d.errs, &Error{File: d.file, Line: p.line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// field decodes one key's value; key is the full path for errors.
type field func(key string, v any)

// table decodes m (the TOML table at path) through fields; keys not in
// fields are errors.
func (d *decoder) table(path string, v any, fields map[string]field) {
	m, ok := v.(map[string]any)
	if !ok {
		d.errorf(path, "must be a table, got %s", describe(v))
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key := join(path, k)
		f, ok := fields[k]
		if !ok {
			d.unknown(key, k, fields)
			continue
		}
		f(key, m[k])
	}
}

func (d *decoder) unknown(key, k string, fields map[string]field) {
	known := make([]string, 0, len(fields))
	for name := range fields {
		known = append(known, name)
	}
	sort.Strings(known)
	best, bestDist := "", 3
	for _, name := range known {
		if dist := editDistance(k, name); dist < bestDist {
			best, bestDist = name, dist
		}
	}
	if best != "" {
		d.errorf(key, "unknown key (did you mean %q?)", best)
		return
	}
	d.errorf(key, "unknown key (known keys: %s)", strings.Join(known, ", "))
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe names a TOML value's type for error messages.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case int64:
		return fmt.Sprintf("integer %d", x)
	case float64:
		return fmt.Sprintf("float %v", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case nil:
		return "nothing"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

func (d *decoder) str(dst *string) field {
	return func(key string, v any) {
		s, ok := v.(string)
		if !ok {
			d.errorf(key, "must be a string, got %s", describe(v))
			return
		}
		*dst = s
	}
}

func (d *decoder) integer(dst *int) field {
	return func(key string, v any) {
		n, ok := v.(int64)
		if !ok {
			d.errorf(key, "must be an integer, got %s", describe(v))
			return
		}
		if n > math.MaxInt32 || n < math.MinInt32 {
			d.errorf(key, "out of range, got %d", n)
			return
		}
		*dst = int(n)
	}
}

func (d *decoder) float(dst *float64) field {
	return func(key string, v any) {
		switch x := v.(type) {
		case float64:
			*dst = x
		case int64:
			*dst = float64(x)
		default:
			d.errorf(key, "must be a number, got %s", describe(v))
		}
	}
}

func (d *decoder) boolean(dst *bool) field {
	return func(key string, v any) {
		b, ok := v.(bool)
		if !ok {
			d.errorf(key, "must be true or false, got %s", describe(v))
			return
		}
		*dst = b
	}
}

func (d *decoder) duration(dst *Duration) field {
	return func(key string, v any) {
		s, ok := v.(string)
		if !ok {
			d.errorf(key, "must be a duration string such as \"90s\" or \"10m\", got %s", describe(v))
			return
		}
		var x Duration
		if err := x.UnmarshalText([]byte(s)); err != nil {
			d.errorf(key, "%v", err)
			return
		}
		*dst = x
	}
}

// array checks that v is an array and calls each for every element.
func (d *decoder) array(key string, v any, each func(key string, v any)) bool {
	a, ok := v.([]any)
	if !ok {
		d.errorf(key, "must be an array, got %s", describe(v))
		return false
	}
	for i, e := range a {
		each(fmt.Sprintf("%s[%d]", key, i), e)
	}
	return true
}

func (d *decoder) strings(dst *[]string) field {
	return func(key string, v any) {
		var out []string
		bad := false
		ok := d.array(key, v, func(k string, e any) {
			s, ok := e.(string)
			if !ok {
				d.errorf(k, "must be a string, got %s", describe(e))
				bad = true
				return
			}
			out = append(out, s)
		})
		if ok && !bad {
			*dst = out
		}
	}
}

func (d *decoder) ports(dst *[]uint16) field {
	return func(key string, v any) {
		var out []uint16
		bad := false
		ok := d.array(key, v, func(k string, e any) {
			n, ok := e.(int64)
			if !ok {
				d.errorf(k, "port must be an integer, got %s", describe(e))
				bad = true
				return
			}
			if n < 1 || n > 65535 {
				d.errorf(k, "port must be in 1..65535, got %d", n)
				bad = true
				return
			}
			out = append(out, uint16(n))
		})
		if ok && !bad {
			*dst = out
		}
	}
}

func (d *decoder) prefixes(dst *[]netip.Prefix) field {
	return func(key string, v any) {
		var out []netip.Prefix
		bad := false
		ok := d.array(key, v, func(k string, e any) {
			s, ok := e.(string)
			if !ok {
				d.errorf(k, "must be an address or prefix string, got %s", describe(e))
				bad = true
				return
			}
			p, err := ParseAllow(s)
			if err != nil {
				d.errorf(k, "%v", err)
				bad = true
				return
			}
			out = append(out, p)
		})
		if ok && !bad {
			*dst = out
		}
	}
}

// ParseAllow parses an allow-list entry: an address ("192.0.2.1",
// "2001:db8::1") or a prefix ("198.51.100.0/24", "2001:db8::/32"). A prefix
// with host bits set is an error naming the masked form; zones are
// rejected; IPv4-mapped IPv6 entries become IPv4.
func ParseAllow(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid prefix %q", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("prefix %q has host bits set; did you mean %q?", s, Canonical(m).String())
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid address %q", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("address %q has a zone; zones are not allowed", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() && p.Bits() < 96 {
		return netip.Prefix{}, fmt.Errorf("prefix %q covers more than the IPv4-mapped range ::ffff:0:0/96", s)
	}
	return Canonical(p), nil
}

func (d *decoder) policy(raw map[string]any, p *Policy) {
	d.table("", raw, map[string]field{
		"backend": d.str(&p.Backend),
		"sample": func(key string, v any) {
			s := &p.Sample
			d.table(key, v, map[string]field{
				"source":   d.str(&s.Source),
				"count":    d.integer(&s.Count),
				"interval": d.duration(&s.Interval),
				"min_hits": d.integer(&s.MinHits),
			})
		},
		"rule": func(key string, v any) { p.Rules = d.rules(key, v) },
		"prefix": func(key string, v any) {
			s := &p.Prefix
			d.table(key, v, map[string]field{
				"enabled":        d.boolean(&s.Enabled),
				"ipv4_length":    d.integer(&s.IPv4Length),
				"ipv6_length":    d.integer(&s.IPv6Length),
				"ipv4_threshold": d.integer(&s.IPv4Threshold),
				"ipv6_threshold": d.integer(&s.IPv6Threshold),
			})
		},
		"allow": func(key string, v any) {
			s := &p.Allow
			d.table(key, v, map[string]field{
				"addresses": d.prefixes(&s.Addresses),
				"host":      d.boolean(&s.Host),
			})
		},
		"ban": func(key string, v any) {
			s := &p.Ban
			d.table(key, v, map[string]field{
				"duration":        d.duration(&s.Duration),
				"max_entries":     d.integer(&s.MaxEntries),
				"escalate_factor": d.float(&s.EscalateFactor),
				"max_duration":    d.duration(&s.MaxDuration),
				"escalate_window": d.duration(&s.EscalateWindow),
			})
		},
		"meter": func(key string, v any) {
			s := &p.Meter
			d.table(key, v, map[string]field{
				"enabled":      d.boolean(&s.Enabled),
				"rate":         d.integer(&s.Rate),
				"burst":        d.integer(&s.Burst),
				"idle_timeout": d.duration(&s.IdleTimeout),
				"ports":        d.ports(&s.Ports),
				"ipv6_length":  d.integer(&s.IPv6Length),
				"size":         d.integer(&s.Size),
			})
		},
		"connlimit": func(key string, v any) {
			s := &p.ConnLimit
			d.table(key, v, map[string]field{
				"enabled": d.boolean(&s.Enabled),
				"max":     d.integer(&s.Max),
				"ports":   d.ports(&s.Ports),
			})
		},
		"nftables": func(key string, v any) {
			s := &p.NFTables
			d.table(key, v, map[string]field{
				"mode":                d.str(&s.Mode),
				"sets_table":          d.str(&s.SetsTable),
				"sets_family":         d.str(&s.SetsFamily),
				"table":               d.str(&s.Table),
				"family":              d.str(&s.Family),
				"hooks":               d.strings(&s.Hooks),
				"priority":            d.integer(&s.Priority),
				"prerouting_priority": d.integer(&s.PreroutingPriority),
				"ingress_devices":     d.strings(&s.IngressDevices),
				"ingress_priority":    d.integer(&s.IngressPriority),
			})
		},
		"spoof": func(key string, v any) {
			s := &p.Spoof
			d.table(key, v, map[string]field{
				"enabled":        d.boolean(&s.Enabled),
				"min_sources":    d.integer(&s.MinSources),
				"max_per_source": d.integer(&s.MaxPerSource),
				"cookie_ratio":   d.float(&s.CookieRatio),
				"apply_sysctl":   d.boolean(&s.ApplySysctl),
			})
		},
		"route": func(key string, v any) {
			s := &p.Route
			d.table(key, v, map[string]field{
				"type":     d.str(&s.Type),
				"protocol": d.integer(&s.Protocol),
			})
		},
		"iptables": func(key string, v any) {
			s := &p.IPTables
			d.table(key, v, map[string]field{
				"chain":       d.str(&s.Chain),
				"path":        d.str(&s.Path),
				"docker_user": d.boolean(&s.DockerUser),
			})
		},
		"sysctl":  func(key string, v any) { d.sysctl(key, v, &p.Sysctl) },
		"metrics": func(key string, v any) { d.metrics(key, v, &p.Metrics) },
	})
}

// rules decodes the rule list, given as [[rule]] tables (or an inline array
// of tables). It replaces the default list entirely.
func (d *decoder) rules(key string, v any) []Rule {
	var tables []map[string]any
	switch x := v.(type) {
	case []map[string]any:
		tables = x
	case []any:
		for i, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				d.errorf(fmt.Sprintf("%s[%d]", key, i), "must be a table, got %s", describe(e))
				continue
			}
			tables = append(tables, m)
		}
	default:
		d.errorf(key, "must be an array of tables ([[rule]]), got %s", describe(v))
		return nil
	}
	out := make([]Rule, len(tables))
	for i, m := range tables {
		r := &out[i]
		rk := fmt.Sprintf("%s[%d]", key, i)
		d.table(rk, m, map[string]field{
			"name":      d.str(&r.Name),
			"state":     func(k string, v any) { d.str((*string)(&r.State))(k, v) },
			"threshold": d.integer(&r.Threshold),
			"ports":     d.ports(&r.Ports),
			"ban_for":   d.duration(&r.BanFor),
		})
		for _, req := range []string{"name", "state", "threshold"} {
			if _, ok := m[req]; !ok {
				d.errorf(rk+"."+req, "required")
			}
		}
	}
	return out
}
