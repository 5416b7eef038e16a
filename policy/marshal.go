package policy

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
)

// Marshal renders p as a TOML policy file holding every key with its
// effective value (every default filled in), which Parse accepts and
// decodes back to the same policy. The keys, their order and their types
// come from the schema, the Policy struct's toml tags (see fields), as
// decoding does: a key added to Policy is written without a change here.
// A *int key that is nil (a [sysctl] setting not managed) is left out, as
// it is from a file that does not manage it; a rule without ban_for gets
// its effective value, ban.duration (a file may not give ban_for = "0s").
func Marshal(p *Policy) ([]byte, error) {
	q := *p
	q.Rules = append([]Rule(nil), p.Rules...)
	for i := range q.Rules {
		if q.Rules[i].BanFor.Duration <= 0 {
			q.Rules[i].BanFor = q.Ban.Duration
		}
	}
	var b bytes.Buffer
	b.WriteString("# synban policy with every default filled in (synban policy show).\n")
	if err := writeTable(&b, "", reflect.ValueOf(&q).Elem()); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeTable writes the keys of the struct s, whose table path is path
// ("" for the top level): its values first, then its tables and arrays of
// tables, as TOML requires.
func writeTable(b *bytes.Buffer, path string, s reflect.Value) error {
	t := s.Type()
	for i := range t.NumField() {
		name := tomlName(t.Field(i))
		if name == "" || isTable(s.Field(i).Type()) {
			continue
		}
		v, ok, err := tomlValue(join(path, name), s.Field(i))
		if err != nil {
			return err
		}
		if ok {
			fmt.Fprintf(b, "%s = %s\n", name, v)
		}
	}
	for i := range t.NumField() {
		name := tomlName(t.Field(i))
		f := s.Field(i)
		if name == "" || !isTable(f.Type()) {
			continue
		}
		sub := join(path, name)
		if f.Kind() == reflect.Struct {
			fmt.Fprintf(b, "\n[%s]\n", sub)
			if err := writeTable(b, sub, f); err != nil {
				return err
			}
			continue
		}
		if f.Len() == 0 {
			// An empty array of tables has no [[...]] header to write it with.
			fmt.Fprintf(b, "\n%s = []\n", name)
			continue
		}
		for j := range f.Len() {
			fmt.Fprintf(b, "\n[[%s]]\n", sub)
			if err := writeTable(b, sub, f.Index(j)); err != nil {
				return err
			}
		}
	}
	return nil
}

// isTable reports whether a field of type t is a table or an array of
// tables rather than a value (a Duration and a list of prefixes are
// structs written as strings).
func isTable(t reflect.Type) bool {
	if t == durationType || t == prefixesType {
		return false
	}
	return t.Kind() == reflect.Struct || t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct
}

// tomlValue renders the value v at schema path path; ok is false for a
// value left out (a nil *int). The cases mirror fieldOf's.
func tomlValue(path string, v reflect.Value) (text string, ok bool, err error) {
	switch t := v.Type(); {
	case t == durationType:
		return tomlString(v.Interface().(Duration).String()), true, nil
	case t == portsType:
		ports := v.Interface().([]uint16)
		items := make([]string, len(ports))
		for i, p := range ports {
			items[i] = strconv.Itoa(int(p))
		}
		return "[" + strings.Join(items, ", ") + "]", true, nil
	case t == prefixesType:
		ps := v.Interface().([]netip.Prefix)
		items := make([]string, len(ps))
		for i, p := range ps {
			items[i] = tomlString(allowString(p))
		}
		return "[" + strings.Join(items, ", ") + "]", true, nil
	case t == stringsType:
		ss := v.Interface().([]string)
		items := make([]string, len(ss))
		for i, s := range ss {
			items[i] = tomlString(s)
		}
		return "[" + strings.Join(items, ", ") + "]", true, nil
	case t == optIntType:
		if v.IsNil() {
			return "", false, nil
		}
		return strconv.Itoa(int(v.Elem().Int())), true, nil
	case t.Kind() == reflect.String:
		return tomlString(v.String()), true, nil
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), true, nil
	case t.Kind() == reflect.Float64:
		f := v.Float()
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return "", false, fmt.Errorf("policy: %s: %v has no TOML form synban reads", path, f)
		}
		s := strconv.FormatFloat(f, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return s, true, nil
	case t.Kind() == reflect.Bool:
		return strconv.FormatBool(v.Bool()), true, nil
	}
	return "", false, fmt.Errorf("policy: no TOML writer for %s (%s)", path, v.Type())
}

// allowString renders an allow entry as the policy writes it: a single
// address without its /32 or /128.
func allowString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
