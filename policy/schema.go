package policy

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
)

// The schema of a policy file is the Policy struct: each exported field
// with a `toml:"name"` tag is a key, a struct field a table, a slice of
// structs an array of tables ([[rule]]); the field's Go type picks how the
// value is decoded and type-checked (fields). A field tagged
// `policy:"required"` must be given in every table of an array of tables.
// What a value may be beyond its type is validate's business.

// arrayLimits bounds the arrays whose element type does not bound them
// already (ports and allow entries have their own), by schema path:
// table names and keys without indices. The lengths are checked before
// any element is looked at.
var arrayLimits = map[string]int{
	"rule":                               maxRules,
	"nftables.hooks":                     maxHooks,
	"nftables.ingress_devices":           maxDevices,
	"crowdsec.pull_origins":              maxCrowdSecFilters,
	"crowdsec.pull_scenarios_containing": maxCrowdSecFilters,
	"upstream.interfaces":                maxDevices,
	"upstream.rtbh_communities":          maxRTBHCommunities,
	"upstream.neighbor":                  maxNeighbors,
	"upstream.neighbor.families":         maxFamilies,
	"xdp.interfaces":                     maxXDPInterfaces,
}

var (
	durationType = reflect.TypeFor[Duration]()
	portsType    = reflect.TypeFor[[]uint16]()
	prefixesType = reflect.TypeFor[[]netip.Prefix]()
	stringsType  = reflect.TypeFor[[]string]()
	optIntType   = reflect.TypeFor[*int]()
)

// tomlName returns the key a struct field is decoded from, "" for none.
func tomlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// fields returns a decoder for each key of the struct s (addressable),
// whose schema path is path.
func (d *decoder) fields(path string, s reflect.Value) map[string]field {
	t := s.Type()
	out := make(map[string]field, t.NumField())
	for i := range t.NumField() {
		if name := tomlName(t.Field(i)); name != "" {
			out[name] = d.fieldOf(join(path, name), s.Field(i))
		}
	}
	return out
}

// fieldOf returns the decoder of the value v (addressable) at schema path
// path, chosen by v's type. It panics on a type the schema does not know:
// a field added to Policy with a new type needs a case here, which every
// Parse test meets at once.
func (d *decoder) fieldOf(path string, v reflect.Value) field {
	switch t := v.Type(); {
	case t == durationType:
		return d.duration(v.Addr().Interface().(*Duration))
	case t == portsType:
		return d.ports(v.Addr().Interface().(*[]uint16))
	case t == prefixesType:
		return d.prefixes(v.Addr().Interface().(*[]netip.Prefix))
	case t == stringsType:
		limit, ok := arrayLimits[path]
		if !ok {
			panic("policy: no arrayLimits entry for the string array " + path)
		}
		return d.strings(v.Addr().Interface().(*[]string), limit)
	case t == optIntType:
		return d.optInt(v.Addr().Interface().(**int))
	case t.Kind() == reflect.String:
		// string and string types such as State.
		return d.str(v.Addr().Convert(reflect.TypeFor[*string]()).Interface().(*string))
	case t.Kind() == reflect.Int:
		return d.integer(v.Addr().Interface().(*int))
	case t.Kind() == reflect.Int64:
		return d.integer64(v.Addr().Interface().(*int64))
	case t.Kind() == reflect.Float64:
		return d.float(v.Addr().Interface().(*float64))
	case t.Kind() == reflect.Bool:
		return d.boolean(v.Addr().Interface().(*bool))
	case t.Kind() == reflect.Struct:
		return func(key string, raw any) { d.table(key, raw, d.fields(path, v)) }
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return func(key string, raw any) { d.tables(path, key, raw, v) }
	}
	panic(fmt.Sprintf("policy: no decoder for %s (%s)", path, v.Type()))
}

// optInt decodes an optional integer into *dst.
func (d *decoder) optInt(dst **int) field {
	return func(key string, v any) {
		var n int
		before := len(d.errs)
		d.integer(&n)(key, v)
		if len(d.errs) == before {
			*dst = &n
		}
	}
}

// tables decodes an array of tables ([[rule]], or an inline array of
// tables) at key into the slice dst, replacing what it held (the default
// rules).
func (d *decoder) tables(path, key string, v any, dst reflect.Value) {
	max := arrayLimits[path]
	var tables []map[string]any
	switch x := v.(type) {
	case []map[string]any:
		if len(x) > max {
			d.errorf(key, "must have at most %d %ss, got %d", max, path, len(x))
			dst.SetZero()
			return
		}
		tables = x
	case []any:
		if len(x) > max {
			d.errorf(key, "must have at most %d %ss, got %d", max, path, len(x))
			dst.SetZero()
			return
		}
		for i, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				d.errorf(fmt.Sprintf("%s[%d]", key, i), "must be a table, got %s", describe(e))
				continue
			}
			tables = append(tables, m)
		}
	default:
		d.errorf(key, "must be an array of tables ([[%s]]), got %s", path, describe(v))
		dst.SetZero()
		return
	}
	if len(tables) == 0 {
		// An empty array (name = []) holds what an absent one does: nil, so
		// that Marshal's output of it parses back to the same policy.
		dst.SetZero()
		return
	}
	out := reflect.MakeSlice(dst.Type(), len(tables), len(tables))
	et := dst.Type().Elem()
	for i, m := range tables {
		k := fmt.Sprintf("%s[%d]", key, i)
		d.table(k, m, d.fields(path, out.Index(i)))
		for j := range et.NumField() {
			f := et.Field(j)
			if name := tomlName(f); name != "" && f.Tag.Get("policy") == "required" {
				if _, ok := m[name]; !ok {
					d.errorf(k+"."+name, "required")
				}
			}
		}
	}
	dst.Set(out)
}
