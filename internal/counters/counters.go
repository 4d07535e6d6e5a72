// Package counters reads slipway's counter structs by their tags, so the
// control API and the metrics show every counter from one place: the
// struct that keeps it. A field is a counter when it is tagged
// `counter:"name"` (or `counter:"name,gauge"` for a level rather than a
// running count); its type is an atomic.Uint64 or atomic.Int64, a uint64,
// int64 or int, or a map[string]uint64 (a count per reason). A counter-typed
// field without a tag is a mistake that Untagged reports, so a test can
// refuse it.
package counters

import (
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
)

// Value is one counter's reading. For a count kept per reason (a map) Map
// is set and Key is the reason; a map with no reason counted yet reads as
// one Value with an empty Key, so that it is seen all the same.
type Value struct {
	Name  string
	Key   string
	Value uint64
	Gauge bool
	Map   bool
}

var (
	uint64Type   = reflect.TypeFor[atomic.Uint64]()
	int64Type    = reflect.TypeFor[atomic.Int64]()
	mapType      = reflect.TypeFor[map[string]uint64]()
	counterKinds = map[reflect.Kind]bool{reflect.Uint64: true, reflect.Int64: true, reflect.Int: true}
)

// Walk reads every tagged counter of the struct v points to (or is), in
// field order; the entries of a map come sorted by key. Nested structs are
// walked too, their counters named by their own tags.
func Walk(v any) []Value {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	var out []Value
	walk(rv, &out)
	return out
}

func walk(rv reflect.Value, out *[]Value) {
	t := rv.Type()
	for i := 0; i < t.NumField(); i++ {
		f, fv := t.Field(i), rv.Field(i)
		tag, ok := f.Tag.Lookup("counter")
		if !ok {
			if f.Type.Kind() == reflect.Struct && f.Type != uint64Type && f.Type != int64Type && f.IsExported() {
				walk(fv, out)
			}
			continue
		}
		name, opt, _ := strings.Cut(tag, ",")
		gauge := opt == "gauge"
		switch {
		case f.Type == uint64Type:
			*out = append(*out, Value{Name: name, Value: fv.Addr().Interface().(*atomic.Uint64).Load(), Gauge: gauge})
		case f.Type == int64Type:
			*out = append(*out, Value{Name: name, Value: uint64(max(fv.Addr().Interface().(*atomic.Int64).Load(), 0)), Gauge: gauge})
		case f.Type == mapType:
			m := fv.Interface().(map[string]uint64)
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if len(keys) == 0 {
				*out = append(*out, Value{Name: name, Gauge: gauge, Map: true})
			}
			for _, k := range keys {
				*out = append(*out, Value{Name: name, Key: k, Value: m[k], Gauge: gauge, Map: true})
			}
		case fv.Kind() == reflect.Uint64:
			*out = append(*out, Value{Name: name, Value: fv.Uint(), Gauge: gauge})
		case fv.Kind() == reflect.Int64 || fv.Kind() == reflect.Int:
			*out = append(*out, Value{Name: name, Value: uint64(max(fv.Int(), 0)), Gauge: gauge})
		}
	}
}

// Names lists the counter names of the struct type v points to (or is),
// nested structs included: what Walk reports, map entries aside.
func Names(v any) []string {
	var out []string
	fields(reflect.TypeOf(v), func(f reflect.StructField) {
		if tag, ok := f.Tag.Lookup("counter"); ok {
			name, _, _ := strings.Cut(tag, ",")
			out = append(out, name)
		}
	})
	return out
}

// Untagged lists the fields of the struct type v points to (or is) that
// hold a counter but carry no tag: counters that would be kept and never
// shown.
func Untagged(v any) []string {
	var out []string
	fields(reflect.TypeOf(v), func(f reflect.StructField) {
		if _, ok := f.Tag.Lookup("counter"); ok {
			return
		}
		if f.Type == uint64Type || f.Type == int64Type || f.Type == mapType || counterKinds[f.Type.Kind()] {
			out = append(out, f.Name)
		}
	})
	return out
}

// fields calls fn for every exported field of t (a struct or a pointer to
// one), descending into untagged exported struct fields.
func fields(t reflect.Type, fn func(reflect.StructField)) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		_, tagged := f.Tag.Lookup("counter")
		if !tagged && f.Type.Kind() == reflect.Struct && f.Type != uint64Type && f.Type != int64Type {
			fields(f.Type, fn)
			continue
		}
		fn(f)
	}
}
