package v1alpha1

// This file decodes one field's JSON value by its Go type (strings,
// numbers, booleans, pkeys, ipam objects, routes, the policy) and names
// the JSON type it found when the value has the wrong one.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	typeString = reflect.TypeFor[*string]()
	typeInt    = reflect.TypeFor[*int]()
	typeBool   = reflect.TypeFor[*bool]()
	typePKey   = reflect.TypeFor[*PKey]()
	typeRaw    = reflect.TypeFor[json.RawMessage]()
	typeRoutes = reflect.TypeFor[[]Route]()
	typePolicy = reflect.TypeFor[*Policy]()
)

// decodeValue decodes one field's JSON value into dst, by the field's Go
// type. JSON null leaves the field unset.
func decodeValue(p *field.Path, raw json.RawMessage, dst reflect.Value) field.ErrorList {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	switch dst.Type() {
	case typeString:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			detail := "must be a string"
			if raw[0] != '{' && raw[0] != '[' {
				detail += ` (in YAML, quote values such as yes, no, on, off or numbers: "no")`
			}
			return field.ErrorList{typeErr(p, raw, detail)}
		}
		dst.Set(reflect.ValueOf(&s))
	case typeBool:
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return field.ErrorList{typeErr(p, raw, "must be true or false")}
		}
		dst.Set(reflect.ValueOf(&b))
	case typeInt:
		n, err := parseInt(raw)
		if err != nil {
			if jsonTypeOf(raw) == "a number" { // name it: "not 1.5", not "not a number"
				shown := string(raw)
				if len(shown) > maxShownValue {
					shown = truncate(shown, maxShownValue)
				}
				return field.ErrorList{field.TypeInvalid(p, omit, err.Error()+", not "+shown)}
			}
			return field.ErrorList{typeErr(p, raw, err.Error())}
		}
		dst.Set(reflect.ValueOf(&n))
	case typePKey:
		var pk PKey
		if raw[0] == '"' {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return field.ErrorList{typeErr(p, raw, "must be a string or a number")}
			}
			v, err := parsePKeyString(s)
			if err != nil {
				return field.ErrorList{field.Invalid(p, s, err.Error())}
			}
			pk = v
		} else {
			n, err := parseInt(raw)
			if err != nil {
				return field.ErrorList{typeErr(p, raw, `must be a hex string like "0x8001" or a number`)}
			}
			pk = PKey(n)
		}
		dst.Set(reflect.ValueOf(&pk))
	case typeRaw:
		if raw[0] != '{' {
			return field.ErrorList{typeErr(p, raw, `must be an object: a CNI IPAM configuration with a "type"`)}
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return field.ErrorList{field.Invalid(p, omit, "not valid JSON: "+err.Error())}
		}
		dst.Set(reflect.ValueOf(json.RawMessage(buf.Bytes())))
	case typeRoutes:
		routes, errs := decodeRoutes(p, raw)
		if len(errs) > 0 {
			return errs
		}
		dst.Set(reflect.ValueOf(routes))
	case typePolicy:
		pol, errs := decodePolicy(p, raw)
		if len(errs) > 0 {
			return errs
		}
		dst.Set(reflect.ValueOf(pol))
	default:
		// A field type this decoder does not know is a programming error,
		// caught by the every-field tests.
		return field.ErrorList{field.InternalError(p, fmt.Errorf("no decoder for %s", dst.Type()))}
	}
	return nil
}

// decodeObjectList strictly decodes a JSON list of objects: list says
// what the list must be, item what each object must be, and one decodes
// the members of item i (at ip). An item that is no object is reported
// and left out; one whose members have errors is kept.
func decodeObjectList[T any](p *field.Path, raw json.RawMessage, list, item string, one func(ip *field.Path, members []member) (T, field.ErrorList)) ([]T, field.ErrorList) {
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, field.ErrorList{typeErr(p, raw, list)}
	}
	out := make([]T, 0, len(items))
	var errs field.ErrorList
	for i, it := range items {
		ip := p.Index(i)
		members, merrs := readObject(ip, func(k string) *field.Path { return ip.Child(k) }, it, item)
		if len(merrs) > 0 {
			errs = append(errs, merrs...)
			continue
		}
		v, verrs := one(ip, members)
		errs = append(errs, verrs...)
		out = append(out, v)
	}
	return out, errs
}

func decodeRoutes(p *field.Path, raw json.RawMessage) ([]Route, field.ErrorList) {
	return decodeObjectList(p, raw, `must be a list of {dst, gw} objects`, "an object with dst and gw", decodeRoute)
}

// decodeRoute decodes the members of one route object.
func decodeRoute(ip *field.Path, members []member) (Route, field.ErrorList) {
	var (
		r    Route
		errs field.ErrorList
	)
	for _, m := range members {
		var dst *string
		switch m.key {
		case "dst":
			dst = &r.Dst
		case "gw":
			dst = &r.GW
		default:
			errs = append(errs, field.Forbidden(ip.Child(m.key), "unknown field; a route has dst and gw"))
			continue
		}
		if string(m.raw) == "null" {
			continue
		}
		if err := json.Unmarshal(m.raw, dst); err != nil {
			errs = append(errs, typeErr(ip.Child(m.key), m.raw, "must be a string"))
		}
	}
	return r, errs
}

// parseInt reads a JSON number that must be a whole number. 1e3 is
// accepted (YAML turns some integers into that form); 1.5 is not.
func parseInt(raw json.RawMessage) (int, error) {
	var num json.Number
	if raw[0] == '"' || json.Unmarshal(raw, &num) != nil {
		return 0, errors.New("must be a number")
	}
	if n, err := strconv.ParseInt(string(num), 10, 64); err == nil {
		if n > math.MaxInt32 || n < math.MinInt32 {
			return 0, errors.New("number out of range (at most 2147483647)")
		}
		return int(n), nil
	}
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil || f != math.Trunc(f) || f > math.MaxInt32 || f < math.MinInt32 {
		return 0, errors.New("must be a whole number in range")
	}
	return int(f), nil
}

// typeErr reports a value of the wrong JSON type, naming the type found.
func typeErr(p *field.Path, raw json.RawMessage, detail string) *field.Error {
	return field.TypeInvalid(p, omit, detail+", not "+jsonTypeOf(raw))
}

func jsonTypeOf(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

func jsonTypeOfToken(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "a number"
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
