package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// nameError is a JSON object name refused by checkNames, with the path of
// the field it names.
type nameError struct {
	path, msg string
}

func (e *nameError) Error() string { return e.path + ": " + e.msg }

// foldMode says which names checkNames refuses besides exact repeats and
// case variants of a known field.
type foldMode int

const (
	// foldAll also refuses two names of one object that differ only in
	// case, known or not: request bodies, whose names are all snake_case.
	foldAll foldMode = iota
	// foldKnown refuses case variants of the known names only: JWT claims,
	// whose other names are case-sensitive and someone else's (RFC 7519).
	foldKnown
)

// checkNames walks one JSON value and refuses, in every object, a name
// given twice, and a name that equals a field of t (a struct type, or nil
// when unknown) only when case is ignored: encoding/json matches names
// case-insensitively, the last match winning, so {"total":100,"TOTAL":5000}
// would decode as 5000 and {"ROLE":"admin"} fill Role. With foldAll, two
// names of one object that differ only in case are refused as well.
// Objects nested in fields, slices and maps are walked with their own types.
// A *nameError says which; other errors are the JSON's own.
func checkNames(body []byte, t reflect.Type, mode foldMode) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := walkNames(dec, t, "", mode); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("more than one JSON value")
	}
	return nil
}

func walkNames(dec *json.Decoder, t reflect.Type, path string, mode foldMode) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	t = deref(t)
	switch d {
	case '{':
		fields := fieldsOf(t)
		var elem reflect.Type
		if t != nil && t.Kind() == reflect.Map {
			elem = t.Elem()
		}
		seen := map[string]string{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			p := key
			if path != "" {
				p = path + "." + key
			}
			folded := foldName(key)
			if prev, ok := seen[folded]; ok && (prev == key || mode == foldAll) {
				if prev == key {
					return &nameError{p, "is given twice"}
				}
				return &nameError{p, fmt.Sprintf("is given twice, as %q and %q", prev, key)}
			}
			seen[folded] = key
			child := elem
			if fields != nil {
				if ft, ok := fields.byName[key]; ok {
					child = ft
				} else if name, ok := fields.byFold[folded]; ok {
					return &nameError{p, fmt.Sprintf("must be spelled %q: names are case-sensitive", name)}
				}
			}
			if err := walkNames(dec, child, p, mode); err != nil {
				return err
			}
		}
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walkNames(dec, elem, fmt.Sprintf("%s[%d]", path, i), mode); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

func deref(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// foldName maps a name to one spelling per class of names that
// strings.EqualFold (and encoding/json) hold equal: each rune becomes the
// smallest of its simple case-folding orbit, so "ſub" and "SUB" fold as
// "SUB" does.
func foldName(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(s)
	}
	var b strings.Builder
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < m {
				m = f
			}
		}
		b.WriteRune(m)
	}
	return b.String()
}

// jsonFields are the names encoding/json decodes into a struct type.
type jsonFields struct {
	byName map[string]reflect.Type
	byFold map[string]string // folded name → name
}

var fieldCache sync.Map // reflect.Type → *jsonFields

// fieldsOf lists the JSON names of a struct type's fields, with those of
// embedded structs promoted; nil for other types.
func fieldsOf(t reflect.Type) *jsonFields {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	if f, ok := fieldCache.Load(t); ok {
		return f.(*jsonFields)
	}
	f := &jsonFields{byName: map[string]reflect.Type{}, byFold: map[string]string{}}
	addFields(f, t, 0)
	fieldCache.Store(t, f)
	return f
}

func addFields(f *jsonFields, t reflect.Type, depth int) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" {
			if et := deref(sf.Type); et.Kind() == reflect.Struct && depth < 8 {
				addFields(f, et, depth+1)
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if _, ok := f.byName[name]; !ok {
			f.byName[name] = sf.Type
			f.byFold[foldName(name)] = name
		}
	}
}
