package v1alpha1

// This file strictly decodes one opaque config object: the document, its
// members in order, apiVersion and kind, and the known field names.
// decodevalue.go decodes each member's value.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	maxShownField  = 200
)

// tidy shortens long bad values, details and field paths, so that a hostile
// input does not turn into a huge error message (claim status, Events,
// logs). A field path carries the input's own keys (an unknown field, an
// ipam key), so tidy also escapes what is not printable in it: a key with a
// newline or a terminal escape sequence does not reach a log line or an
// Event as it was written.
func tidy(errs field.ErrorList) field.ErrorList {
	for _, e := range errs {
		e.Field = shownField(e.Field)
		if s, ok := e.BadValue.(string); ok && len(s) > maxShownValue {
			e.BadValue = truncate(s, maxShownValue)
		}
		if len(e.Detail) > maxShownDetail {
			e.Detail = truncate(e.Detail, maxShownDetail)
		}
	}
	return errs
}

// shownField is a field path as an error shows it: characters that are not
// printable escaped as in a Go string literal, and cut to maxShownField
// bytes.
func shownField(f string) string {
	if len(f) <= maxShownField && !strings.ContainsFunc(f, func(r rune) bool { return !strconv.IsPrint(r) }) {
		return f
	}
	q := strconv.Quote(f)
	q = q[1 : len(q)-1]
	if len(q) > maxShownField {
		q = truncate(q, maxShownField)
	}
	return q
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
	eachJSONField(t, func(i int, name string) { out[name] = i })
	return out
}

// eachJSONField calls f with the index and JSON name of every field of
// the config struct type t but the inline TypeMeta. Decoding, merging and
// the policy checks all walk a config's fields through it, so that none
// of them can forget one.
func eachJSONField(t reflect.Type, f func(i int, name string)) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		f(i, name)
	}
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
