package policy

import (
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/synban/synban/internal/trust"
)

//go:embed default.toml
var defaultTOML []byte

// DefaultSource is the Source (and error file name) of the embedded default policy.
const DefaultSource = "<embedded default>"

// maxFileSize bounds what Load reads and Parse accepts; a policy is a few
// kilobytes.
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
//
// Only a regular file is read: a FIFO, device or directory is refused at
// once, never waited on. Run as root, Load also refuses (an *Error wrapping
// a *trust.Error, naming the path, owner, mode and fix) a policy that it,
// or a directory above it, symbolic links resolved, is owned by someone
// other than root or the invoking user or is writable by group or others,
// and a policy whose [iptables] path names a program synban would not run
// (see trust.Program): the policy decides what synban executes as root.
func Load(path string) (*Policy, error) {
	if err := trust.CheckFile(path); err != nil {
		return nil, loadError(path, err)
	}
	f, err := trust.OpenRegular(path, true)
	if err != nil {
		return nil, loadError(path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read policy: %v", unwrapPath(err)), Err: err}
	}
	if len(data) > maxFileSize {
		return nil, tooLarge(path)
	}
	p, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	if p.IPTables.Path != "" {
		// Refuse an untrusted program now, before any command runs it; a
		// program that does not exist here is the backend's business.
		var te *trust.Error
		if _, err := trust.Program("iptables", p.IPTables.Path); errors.As(err, &te) {
			return nil, &Error{File: path, Key: "iptables.path", Msg: "refusing to run it: " + te.Error(), Err: err}
		}
	}
	return p, nil
}

// loadError is the *Error of a policy file that cannot be opened or is
// refused by trust.
func loadError(path string, err error) error {
	var te *trust.Error
	if errors.As(err, &te) {
		return &Error{File: path, Msg: "refusing to read the policy: " + te.Error(), Err: err}
	}
	return &Error{File: path, Msg: fmt.Sprintf("cannot read policy: %v", unwrapPath(err)), Err: err}
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
// Every problem found is reported (see Error): the first 20 in file order,
// then a count of the rest.
//
// Before decoding, Parse rejects a data larger than 1 MiB, keys of more
// than 16 dotted parts, and nesting deeper than 16 levels, counting a level
// for each part of a table header or dotted key and for each array or
// inline table: the TOML decoder's time and memory grow with the square of
// the nesting (10,000 levels took it 18 s and 11 GB).
func Parse(name string, data []byte) (*Policy, error) {
	return parse(name, data, Default())
}

// parse decodes data over base (which it modifies) and validates the result.
func parse(name string, data []byte, base *Policy) (*Policy, error) {
	if len(data) > maxFileSize {
		return nil, tooLarge(name)
	}
	keys, err := scan(name, data)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return nil, syntaxError(name, err)
	}
	d := &decoder{file: name, pos: keys.positions()}
	base.Source = name
	d.table("", raw, d.fields("", reflect.ValueOf(base).Elem()))
	d.defaultHooks(base)
	if _, given := raw["rule"]; !given && !base.Meter.Enabled {
		// The default rule list's syn_rate rule reads the meter's sensor:
		// a file that turns the meter off and lists no rules of its own
		// keeps the other default rules.
		base.Rules = slices.DeleteFunc(base.Rules, func(r Rule) bool { return r.State == StateSynRate })
	}
	d.validate(base)
	if err := d.err(); err != nil {
		return nil, err
	}
	return base, nil
}

// join joins key parts into a dotted path under prefix.
func join(prefix string, parts ...string) string {
	for _, p := range parts {
		if prefix == "" {
			prefix = p
		} else {
			prefix += "." + p
		}
	}
	return prefix
}

func syntaxError(name string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if msg == "" {
			msg = err.Error()
		}
		return newError(name, pe.Position.Line, pe.Position.Col, pe.LastKey, "invalid TOML: "+msg, err)
	}
	return newError(name, 0, 0, "", "invalid TOML: "+err.Error(), err)
}

// decoder turns the generic TOML tree into a Policy, collecting errors.
type decoder struct {
	file string
	pos  positions
	errs []*Error
	// dropped counts problems found but not kept in errs (see array).
	dropped int
}

// err returns the problems found, nil if none (see joinErrors).
func (d *decoder) err() error { return joinErrors(d.file, d.errs, d.dropped) }

func (d *decoder) errorf(key, format string, args ...any) {
	p, _ := d.pos.lookup(key)
	d.errs = append(d.errs, newError(d.file, p.line, 0, key, fmt.Sprintf(format, args...), nil))
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
	var unknown []string
	for k := range m {
		if _, ok := fields[k]; ok {
			keys = append(keys, k)
		} else {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fields[k](join(path, k), m[k])
	}
	sort.Strings(unknown)
	if len(unknown) > maxErrors {
		// Name only the first few in the file; count the rest.
		type at struct {
			key  string
			line int
		}
		ats := make([]at, len(unknown))
		for i, k := range unknown {
			p, _ := d.pos.lookup(join(path, k))
			ats[i] = at{k, p.line}
		}
		slices.SortFunc(ats, func(a, b at) int {
			return cmp.Or(cmp.Compare(a.line, b.line), strings.Compare(a.key, b.key))
		})
		d.dropped += len(unknown) - maxErrors
		unknown = unknown[:maxErrors]
		for i := range unknown {
			unknown[i] = ats[i].key
		}
	}
	for _, k := range unknown {
		d.unknown(join(path, k), k, fields)
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
		if abs(len(k)-len(name)) >= bestDist {
			continue // the distance is at least the difference in length
		}
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

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
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

// Bounds on array lengths, checked before any element is looked at.
const (
	// maxPorts bounds a ports array: there are 65535 ports, so a longer
	// list repeats one.
	maxPorts = 65535
	// maxAllow bounds allow.addresses.
	maxAllow = 1 << 20
	// maxHooks bounds nftables.hooks: there are four hooks.
	maxHooks = 16
	// maxDevices bounds nftables.ingress_devices.
	maxDevices = 4096
	// maxRules bounds the [[rule]] list.
	maxRules = 1024
)

// array checks that v is an array of at most max elements and calls each
// for every element; each returns what is wrong with the element, or "".
// Only the first maxErrors bad elements of an array get an Error of their
// own (keyed "key[i]"); the rest are counted in d.dropped. array reports
// whether v was an acceptable array with no bad element.
func (d *decoder) array(key string, v any, max int, each func(v any) string) bool {
	a, ok := v.([]any)
	if !ok {
		d.errorf(key, "must be an array, got %s", describe(v))
		return false
	}
	if len(a) > max {
		d.errorf(key, "must have at most %d entries, got %d", max, len(a))
		return false
	}
	bad := 0
	for i, e := range a {
		msg := each(e)
		if msg == "" {
			continue
		}
		if bad++; bad > maxErrors {
			d.dropped++
			continue
		}
		k := fmt.Sprintf("%s[%d]", key, i)
		p, _ := d.pos.lookup(k)
		d.errs = append(d.errs, newError(d.file, p.line, 0, k, msg, nil))
	}
	return bad == 0
}

func (d *decoder) strings(dst *[]string, max int) field {
	return func(key string, v any) {
		var out []string
		ok := d.array(key, v, max, func(e any) string {
			s, ok := e.(string)
			if !ok {
				return "must be a string, got " + describe(e)
			}
			out = append(out, s)
			return ""
		})
		if ok {
			*dst = out
		}
	}
}

func (d *decoder) ports(dst *[]uint16) field {
	return func(key string, v any) {
		var out []uint16
		ok := d.array(key, v, maxPorts, func(e any) string {
			n, ok := e.(int64)
			if !ok {
				return "port must be an integer, got " + describe(e)
			}
			if n < 1 || n > 65535 {
				return fmt.Sprintf("port must be in 1..65535, got %d", n)
			}
			out = append(out, uint16(n))
			return ""
		})
		if ok {
			*dst = out
		}
	}
}

func (d *decoder) prefixes(dst *[]netip.Prefix) field {
	return func(key string, v any) {
		var out []netip.Prefix
		ok := d.array(key, v, maxAllow, func(e any) string {
			s, ok := e.(string)
			if !ok {
				return "must be an address or prefix string, got " + describe(e)
			}
			p, err := ParseAllow(s)
			if err != nil {
				return err.Error()
			}
			out = append(out, p)
			return ""
		})
		if ok {
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
