package v1alpha1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	yamlv2 "go.yaml.in/yaml/v2"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// omit hides the bad value in an error (too long, or not printable).
var omit = field.OmitValueType{}

// Decode strictly decodes and validates one opaque parameters blob (JSON,
// or YAML as `sriov-dra validate` reads it): apiVersion must be
// sriov.dra.dev/v1alpha1, kind VfConfig or PfConfig, and every key a known
// field of that kind with a value of the right type and range. Every error
// is reported at path (e.g. spec.devices.config[1].opaque.parameters) or
// below it. A nil path means the blob is the document itself: errors name
// top-level fields directly ("vlan") and whole-object errors use "(object)".
//
// Decode returns the config only when there are no errors. Values are kept
// as written (MAC, GUID); Resolve normalises them. Cross-field rules that
// need the merged result (vlanQoS needs vlan, when vlan comes from another
// config) are checked by Resolve; rules within one object are checked here.
func Decode(path *field.Path, raw []byte) (Config, field.ErrorList) {
	cfg, errs := decode(path, raw)
	return cfg, tidy(errs)
}

// Limits on what an error repeats back of the input.
const (
	maxShownValue  = 64
	maxShownDetail = 300
)

// tidy shortens long bad values and details, so that a hostile input does
// not turn into a huge error message (claim status, logs).
func tidy(errs field.ErrorList) field.ErrorList {
	for _, e := range errs {
		if s, ok := e.BadValue.(string); ok && len(s) > maxShownValue {
			e.BadValue = truncate(s, maxShownValue)
		}
		if len(e.Detail) > maxShownDetail {
			e.Detail = truncate(e.Detail, maxShownDetail)
		}
	}
	return errs
}

// truncate cuts s to at most n bytes on a rune boundary and marks the cut.
func truncate(s string, n int) string {
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func decode(path *field.Path, raw []byte) (Config, field.ErrorList) {
	whole := path
	if whole == nil {
		whole = field.NewPath("(object)")
	}
	child := func(name string) *field.Path {
		if path == nil {
			return field.NewPath(name)
		}
		return path.Child(name)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, field.ErrorList{field.Required(whole, "the parameters are empty; set apiVersion: "+APIVersion+" and kind: VfConfig or PfConfig")}
	}
	if len(raw) > MaxParametersSize {
		return nil, field.ErrorList{field.TooLong(whole, omit, MaxParametersSize)}
	}
	doc := raw
	if !json.Valid(raw) {
		j, err := yaml.YAMLToJSONStrict(raw)
		if err == nil {
			err = singleYAMLDocument(raw)
		}
		if err != nil {
			return nil, field.ErrorList{field.Invalid(whole, omit, "not valid JSON or YAML: "+oneLine(err.Error()))}
		}
		doc = j
	}
	members, errs := readObject(whole, child, doc, "an object with apiVersion, kind and settings")
	if len(errs) > 0 {
		return nil, errs
	}

	apiVersion, errs := typeMetaString(child("apiVersion"), members, "apiVersion", "set apiVersion: "+APIVersion)
	kind, kerrs := typeMetaString(child("kind"), members, "kind", "set kind: VfConfig (a virtual function) or PfConfig (a whole physical function)")
	errs = append(errs, kerrs...)
	if len(errs) == 0 && apiVersion != APIVersion {
		e := field.NotSupported(child("apiVersion"), apiVersion, []string{APIVersion})
		if strings.HasPrefix(apiVersion, GroupName+"/") {
			e.Detail += "; this driver understands only " + APIVersion
		}
		errs = append(errs, e)
	}
	var obj Config
	switch kind {
	case KindVfConfig:
		obj = &VfConfig{}
	case KindPfConfig:
		obj = &PfConfig{}
	case "":
	default:
		e := field.NotSupported(child("kind"), kind, []string{KindVfConfig, KindPfConfig})
		e.Detail += " (VfConfig for a virtual function, PfConfig for a whole physical function)"
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return nil, errs
	}

	v := reflect.ValueOf(obj).Elem()
	fields := jsonFields(v.Type())
	for _, m := range members {
		if m.key == "apiVersion" || m.key == "kind" {
			continue
		}
		idx, ok := fields[m.key]
		if !ok {
			errs = append(errs, unknownField(child(m.key), m.key, kind, fields))
			continue
		}
		errs = append(errs, decodeValue(child(m.key), m.raw, v.Field(idx))...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	obj.(interface{ setTypeMeta() }).setTypeMeta()
	if errs := validate(obj, child, false); len(errs) > 0 {
		return nil, errs
	}
	return obj, nil
}

func (c *VfConfig) setTypeMeta() { c.APIVersion, c.Kind = APIVersion, KindVfConfig }
func (c *PfConfig) setTypeMeta() { c.APIVersion, c.Kind = APIVersion, KindPfConfig }

// singleYAMLDocument refuses YAML with more than one document (or data
// after the first): the YAML-to-JSON conversion reads the first one only
// and would silently drop the rest.
func singleYAMLDocument(raw []byte) error {
	d := yamlv2.NewDecoder(bytes.NewReader(raw))
	var first any
	if err := d.Decode(&first); err != nil {
		return err
	}
	for {
		var next any
		err := d.Decode(&next)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if next != nil {
			return errors.New("more than one YAML document; the parameters are one object")
		}
	}
}

type member struct {
	key string
	raw json.RawMessage
}

// readObject reads a JSON object's members in order, refusing a non-object
// and duplicate keys.
func readObject(whole *field.Path, child func(string) *field.Path, doc []byte, what string) ([]member, field.ErrorList) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, field.ErrorList{field.Invalid(whole, omit, "not valid JSON: "+err.Error())}
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, field.ErrorList{field.TypeInvalid(whole, omit, "must be "+what+", not "+jsonTypeOfToken(tok))}
	}
	var out []member
	seen := map[string]bool{}
	var errs field.ErrorList
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, field.ErrorList{field.Invalid(whole, omit, "not valid JSON: "+err.Error())}
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, field.ErrorList{field.Invalid(child(key), omit, "not valid JSON: "+err.Error())}
		}
		if seen[key] {
			errs = append(errs, &field.Error{Type: field.ErrorTypeDuplicate, Field: child(key).String(), BadValue: key, Detail: "the key appears more than once; keep one"})
			continue
		}
		seen[key] = true
		out = append(out, member{key: key, raw: raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, field.ErrorList{field.Invalid(whole, omit, "not valid JSON: "+err.Error())}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, field.ErrorList{field.Invalid(whole, omit, "unexpected data after the object")}
	}
	return out, errs
}

func typeMetaString(p *field.Path, members []member, key, hint string) (string, field.ErrorList) {
	for _, m := range members {
		if m.key != key {
			continue
		}
		var s string
		if err := json.Unmarshal(m.raw, &s); err != nil {
			return "", field.ErrorList{field.TypeInvalid(p, omit, "must be a string; "+hint)}
		}
		if s == "" {
			return "", field.ErrorList{field.Required(p, hint)}
		}
		return s, nil
	}
	return "", field.ErrorList{field.Required(p, hint)}
}

// jsonFields maps each JSON field name of a config struct to its index,
// leaving out the inline TypeMeta.
func jsonFields(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out[name] = i
	}
	return out
}

func unknownField(p *field.Path, key, kind string, fields map[string]int) *field.Error {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
		if strings.EqualFold(n, key) {
			return field.Forbidden(p, fmt.Sprintf("unknown field; did you mean %q? (field names are case-sensitive)", n))
		}
	}
	sort.Strings(names)
	return field.Forbidden(p, fmt.Sprintf("unknown field; %s fields are apiVersion, kind, %s", kind, strings.Join(names, ", ")))
}

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

func decodeRoutes(p *field.Path, raw json.RawMessage) ([]Route, field.ErrorList) {
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, field.ErrorList{typeErr(p, raw, `must be a list of {dst, gw} objects`)}
	}
	routes := make([]Route, 0, len(items))
	var errs field.ErrorList
	for i, item := range items {
		ip := p.Index(i)
		members, merrs := readObject(ip, func(k string) *field.Path { return ip.Child(k) }, item, "an object with dst and gw")
		if len(merrs) > 0 {
			errs = append(errs, merrs...)
			continue
		}
		var r Route
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
		routes = append(routes, r)
	}
	return routes, errs
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
