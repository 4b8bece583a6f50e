package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/loyalty-engine/loyalty/loyalty"
)

// checkNamesRef is checkNames as it was written over json.Decoder's
// tokens, kept as the reference the scanner is compared with.
func checkNamesRef(body []byte, t reflect.Type, mode foldMode) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := walkNamesRef(dec, t, "", mode); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("more than one JSON value")
	}
	return nil
}

func walkNamesRef(dec *json.Decoder, t reflect.Type, path string, mode foldMode) error {
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
			if err := walkNamesRef(dec, child, p, mode); err != nil {
				return err
			}
		}
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walkNamesRef(dec, elem, fmt.Sprintf("%s[%d]", path, i), mode); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// FuzzCheckNames holds checkNames to its reference: on valid JSON the same
// verdict, the same path and the same message; on invalid JSON an error
// that is not a name's, where the reference also let nesting deeper than
// encoding/json's limit through. One difference is allowed: a name given twice with
// a case variant between the two (unknown names of a token's claims, where
// case variants pass) is refused by checkNames and missed by the reference.
func FuzzCheckNames(f *testing.F) {
	for _, s := range append([]string{
		`{"sub":"op-1","role":"admin","exp":1}`, `{"sub":"a","Sub":"b"}`, `{"ſub":"x"}`, `{"\u0072ole":"admin","role":"x"}`,
		`{"custom":1,"Custom":2}`, `{"custom":1,"Custom":2,"custom":3}`, `{"items":[{"sku":"a","SKU":"b"}]}`,
		`{"items":[{},{"amount":1,"Amount":2}]}`, `{"a":{"b":{"c":1,"c":2}}}`, "{\"\xff\":1,\"\xfe\":2}",
		`{"a":[1,2,{"x":true,"X":null}]}`, `{ "a" : 1 , "b" : [ ] , "c" : { } }`,
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"K3":3}`,
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k3":3}`,
		`{"birthday_gift":{"enabled":true,"Enabled":false}}`, `{"target":{"all":false,"ALL":true}}`,
	}, hostileSeeds...) {
		f.Add([]byte(s))
	}
	types := []reflect.Type{nil, claimsWireType, reflect.TypeOf(&loyalty.PurchaseInput{}), reflect.TypeOf(&loyalty.ProgramPatch{}),
		reflect.TypeOf(&loyalty.OfferInput{})}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, typ := range types {
			for _, mode := range []foldMode{foldAll, foldKnown} {
				got, want := checkNames(b, typ, mode), checkNamesRef(b, typ, mode)
				var gn, wn *nameError
				gotName, wantName := errors.As(got, &gn), errors.As(want, &wn)
				switch {
				case !json.Valid(b):
					// The reference let through nesting deeper than
					// encoding/json decodes; checkNames refuses it.
					if got == nil || gotName {
						t.Fatalf("%.200q (%v, mode %d): invalid JSON gave %v, reference %v", b, typ, mode, got, want)
					}
				case got == nil && want == nil:
				case gotName && wantName && *gn == *wn:
				case gotName && want == nil && mode == foldKnown && gn.msg == "is given twice":
				default:
					t.Fatalf("%.200q (%v, mode %d): got %v, reference %v", b, typ, mode, got, want)
				}
			}
		}
	})
}
