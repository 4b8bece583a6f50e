package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
//
// It runs on every request body and token, so it scans the bytes itself
// once json.Valid has accepted them, rather than through json.Decoder's
// tokens, which allocate for each; names are compared in place, and a path
// is only spelled out for an error.
func checkNames(body []byte, t reflect.Type, mode foldMode) error {
	if !json.Valid(body) {
		return errors.New("not one valid JSON value")
	}
	w := nameWalker{b: body, mode: mode}
	return w.value(t)
}

// nameWalker scans valid JSON.
type nameWalker struct {
	b    []byte
	i    int
	mode foldMode
	path []pathSeg // where the walk is, for an error
}

// pathSeg is an object name or an array index.
type pathSeg struct {
	name  []byte
	index int // when name is nil
}

func (w *nameWalker) where() string {
	var b strings.Builder
	for _, s := range w.path {
		if s.name == nil {
			fmt.Fprintf(&b, "[%d]", s.index)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.Write(s.name)
	}
	return b.String()
}

func (w *nameWalker) space() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

func (w *nameWalker) value(t reflect.Type) error {
	w.space()
	switch w.b[w.i] {
	case '{':
		return w.object(deref(t))
	case '[':
		return w.array(deref(t))
	case '"':
		w.str()
	default: // a number, true, false or null
		for w.i < len(w.b) {
			switch w.b[w.i] {
			case ',', ']', '}', ' ', '\t', '\n', '\r':
				return nil
			}
			w.i++
		}
	}
	return nil
}

// str skips a string and returns its raw contents and whether they hold
// an escape.
func (w *nameWalker) str() (raw []byte, escaped bool) {
	w.i++ // the opening quote
	start := w.i
	for w.b[w.i] != '"' {
		if w.b[w.i] == '\\' {
			escaped = true
			w.i++
		}
		w.i++
	}
	raw = w.b[start:w.i]
	w.i++
	return raw, escaped
}

// smallObject is how many names an object may hold before checking them
// against one another takes maps instead of comparing each pair.
const smallObject = 16

func (w *nameWalker) object(t reflect.Type) error {
	fields := fieldsOf(t)
	var elem reflect.Type
	if t != nil && t.Kind() == reflect.Map {
		elem = t.Elem()
	}
	var small [smallObject][]byte
	names := small[:0]
	var exact map[string]bool
	var folds map[string][]byte // folded name → the first name of its class
	w.i++
	w.space()
	if w.b[w.i] == '}' {
		w.i++
		return nil
	}
	for {
		w.space()
		quoted := w.i
		name, escaped := w.str()
		if escaped || !isASCII(name) {
			// encoding/json's own unquoting: escapes, and U+FFFD for
			// invalid UTF-8.
			var s string
			if err := json.Unmarshal(w.b[quoted:w.i], &s); err != nil {
				return err
			}
			name = []byte(s)
		}
		w.path = append(w.path, pathSeg{name: name})
		if err := w.seen(name, names, exact, folds); err != nil {
			return err
		}
		if exact == nil && len(names) < smallObject {
			names = append(names, name)
		} else {
			if exact == nil {
				exact, folds = map[string]bool{}, map[string][]byte{}
				for _, n := range names {
					exact[string(n)] = true
					if _, ok := folds[foldName(string(n))]; !ok {
						folds[foldName(string(n))] = n
					}
				}
			}
			exact[string(name)] = true
			if _, ok := folds[foldName(string(name))]; !ok {
				folds[foldName(string(name))] = name
			}
		}
		child := elem
		if fields != nil {
			if ft, ok := fields.byName[string(name)]; ok {
				child = ft
			} else if spelled, ok := lookupFold(fields.byFold, name); ok {
				return &nameError{w.where(), fmt.Sprintf("must be spelled %q: names are case-sensitive", spelled)}
			}
		}
		w.space()
		w.i++ // the colon
		if err := w.value(child); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
		w.space()
		c := w.b[w.i]
		w.i++
		if c == '}' {
			return nil
		}
	}
}

// seen refuses name when the object named it before, or, with foldAll, a
// name equal to it but for case.
func (w *nameWalker) seen(name []byte, names [][]byte, exact map[string]bool, folds map[string][]byte) error {
	var prev []byte
	if exact != nil {
		if exact[string(name)] {
			return &nameError{w.where(), "is given twice"}
		}
		prev = folds[foldName(string(name))]
	} else {
		for _, n := range names {
			if bytes.Equal(n, name) {
				return &nameError{w.where(), "is given twice"}
			}
			if prev == nil && bytes.EqualFold(n, name) {
				prev = n
			}
		}
	}
	if prev != nil && w.mode == foldAll {
		return &nameError{w.where(), fmt.Sprintf("is given twice, as %q and %q", prev, name)}
	}
	return nil
}

func (w *nameWalker) array(t reflect.Type) error {
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	w.i++
	w.space()
	if w.b[w.i] == ']' {
		w.i++
		return nil
	}
	for i := 0; ; i++ {
		w.path = append(w.path, pathSeg{index: i})
		if err := w.value(elem); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
		w.space()
		c := w.b[w.i]
		w.i++
		if c == ']' {
			return nil
		}
	}
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// lookupFold looks name up in a map keyed by foldName, without
// allocating for a short ASCII name: the map index reads the folded bytes
// in place.
func lookupFold(m map[string]string, name []byte) (string, bool) {
	var buf [64]byte
	if len(name) > len(buf) || !isASCII(name) {
		v, ok := m[foldName(string(name))]
		return v, ok
	}
	for i, c := range name {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		buf[i] = c
	}
	v, ok := m[string(buf[:len(name)])]
	return v, ok
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
