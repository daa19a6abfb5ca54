package v1alpha1

import (
	"reflect"
	"slices"
	"strings"
)

// MarshalLog is what a log line shows of a resolved configuration (it
// implements logr.Marshaler): the fields that are set, by their Go names
// in lowerCamelCase (VLANQoS: vlanQoS), pointers dereferenced, the IPAM
// configuration as JSON. Reflection keeps a new field from being
// left out.
func (r *Resolved) MarshalLog() any {
	if r == nil {
		return nil
	}
	out := map[string]any{}
	v := reflect.ValueOf(r).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := v.Field(i)
		if f.IsZero() {
			continue
		}
		name := lowerCamel(t.Field(i).Name)
		switch {
		case f.Kind() == reflect.Pointer:
			out[name] = f.Elem().Interface()
		case t.Field(i).Name == "IPAM":
			out[name] = slices.Clone(r.IPAM) // JSON within the JSON
		case f.Type() == reflect.TypeFor[PKey]():
			out[name] = r.PKey.String()
		default:
			out[name] = f.Interface()
		}
	}
	return out
}

// lowerCamel lower-cases the leading capitals of a Go name, leaving the
// one that starts the next word: IfName: ifName, MTU: mtu, GUIDPrefix:
// guidPrefix.
func lowerCamel(name string) string {
	n := 0
	for n < len(name) && name[n] >= 'A' && name[n] <= 'Z' {
		n++
	}
	if n > 1 && n < len(name) {
		n-- // the capital that starts the next word
	}
	return strings.ToLower(name[:n]) + name[n:]
}
