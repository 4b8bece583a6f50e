package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/loyalty-engine/loyalty/loyalty/loyaltytest"
)

// openapiMethods are the operation keys of an OpenAPI path item.
var openapiMethods = map[string]bool{
	"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true,
}

// openapiParam matches a Fiber route parameter (:id, optional :id?).
var openapiParam = regexp.MustCompile(`:([A-Za-z0-9_]+)\??`)

// openapiDoc parses the embedded document.
func openapiDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// openapiApp builds the real app over a fresh SQLite store.
func openapiApp(t *testing.T) *fiber.App {
	t.Helper()
	store := loyaltytest.MustOpen(t, loyalty.SQLite)
	m := NewMetrics()
	svc := loyalty.NewService(store, loyalty.WithObserver(m))
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	return New(svc, Config{Auth: AuthConfig{Secret: []byte("openapi-test-secret-openapi-test!")}, Logger: log}, m)
}

// openapiRegistered lists the app's routes as "METHOD /path/{param}",
// without middleware and without the HEAD twins Fiber adds to every GET.
func openapiRegistered(app *fiber.App) map[string]bool {
	all := map[string]bool{}
	for _, r := range app.GetRoutes(true) {
		if r.Method == "USE" || r.Path == "/" || r.Path == "" {
			continue
		}
		all[r.Method+" "+openapiParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	out := map[string]bool{}
	for k := range all {
		if rest, ok := strings.CutPrefix(k, fiber.MethodHead+" "); ok && all[fiber.MethodGet+" "+rest] {
			continue
		}
		out[k] = true
	}
	return out
}

// openapiOperations lists the document's operations as "METHOD /path".
func openapiOperations(t *testing.T, doc map[string]any) map[string]map[string]any {
	t.Helper()
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		t.Fatal("document has no paths object")
	}
	out := map[string]map[string]any{}
	for p, item := range paths {
		im, ok := item.(map[string]any)
		if !ok {
			t.Errorf("path %s is not an object", p)
			continue
		}
		for m, o := range im {
			if !openapiMethods[m] {
				continue
			}
			om, ok := o.(map[string]any)
			if !ok {
				t.Errorf("%s %s is not an object", m, p)
				continue
			}
			out[strings.ToUpper(m)+" "+p] = om
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestOpenAPIVersion(t *testing.T) {
	doc := openapiDoc(t)
	v, _ := doc["openapi"].(string)
	if !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi is %q, want 3.x", v)
	}
	if _, ok := doc["info"].(map[string]any); !ok {
		t.Error("document has no info object")
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := openapiDoc(t)
	ops := openapiOperations(t, doc)
	routes := openapiRegistered(openapiApp(t))
	if len(routes) == 0 {
		t.Fatal("the app registers no routes")
	}
	t.Run("EveryRouteDocumented", func(t *testing.T) {
		for _, r := range sortedKeys(routes) {
			if _, ok := ops[r]; !ok {
				t.Errorf("route %s is registered but not in openapi.json", r)
			}
		}
	})
	t.Run("EveryOperationRegistered", func(t *testing.T) {
		for _, o := range sortedKeys(ops) {
			if !routes[o] {
				t.Errorf("operation %s is in openapi.json but no such route is registered", o)
			}
		}
	})
}

func TestOpenAPIOperations(t *testing.T) {
	doc := openapiDoc(t)
	ops := openapiOperations(t, doc)
	paths := doc["paths"].(map[string]any)
	ids := map[string]string{}
	for _, key := range sortedKeys(ops) {
		o := ops[key]
		_, path, _ := strings.Cut(key, " ")
		id, _ := o["operationId"].(string)
		switch {
		case id == "":
			t.Errorf("%s has no operationId", key)
		case ids[id] != "":
			t.Errorf("%s and %s share operationId %q", ids[id], key, id)
		default:
			ids[id] = key
		}
		if s, _ := o["summary"].(string); s == "" {
			t.Errorf("%s has no summary", key)
		}
		resps, _ := o["responses"].(map[string]any)
		success := false
		for code := range resps {
			if strings.HasPrefix(code, "2") || strings.HasPrefix(code, "3") {
				success = true
			}
		}
		if !success {
			t.Errorf("%s has no 2xx or 3xx response", key)
		}

		// Each {param} in the template is declared as a path parameter on
		// the operation or its path item.
		declared := map[string]bool{}
		item := paths[path].(map[string]any)
		for _, ps := range []any{item["parameters"], o["parameters"]} {
			list, _ := ps.([]any)
			for _, p := range list {
				pm := openapiDeref(doc, p)
				if pm["in"] == "path" {
					name, _ := pm["name"].(string)
					declared[name] = true
				}
			}
		}
		for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
			if !declared[m[1]] {
				t.Errorf("%s does not declare path parameter %q", key, m[1])
			}
		}

		// /v1 needs a bearer token; the rest is open.
		sec, hasSec := o["security"].([]any)
		if strings.HasPrefix(path, "/v1/") {
			if hasSec && len(sec) == 0 {
				t.Errorf("%s is under /v1 but marked unauthenticated", key)
			}
			if !hasSec {
				if global, _ := doc["security"].([]any); len(global) == 0 {
					t.Errorf("%s is under /v1 but no security applies", key)
				}
			}
		} else if !hasSec || len(sec) != 0 {
			t.Errorf("%s is public but not marked security: []", key)
		}
	}
}

// openapiDeref follows a $ref, if v is one, to the object it names.
func openapiDeref(doc map[string]any, v any) map[string]any {
	m, _ := v.(map[string]any)
	if r, ok := m["$ref"].(string); ok {
		target, _ := openapiPointer(doc, r)
		m, _ = target.(map[string]any)
	}
	return m
}

// openapiPointer resolves a local reference such as
// #/components/schemas/Member.
func openapiPointer(doc map[string]any, ref string) (any, bool) {
	ptr, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = doc
	for _, tok := range strings.Split(ptr, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func TestOpenAPIRefsResolve(t *testing.T) {
	doc := openapiDoc(t)
	n := 0
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, k := range sortedKeys(x) {
				if k == "$ref" {
					n++
					ref, _ := x[k].(string)
					if !strings.HasPrefix(ref, "#/components/") {
						t.Errorf("%s: $ref %q does not point into components", at, ref)
					} else if _, ok := openapiPointer(doc, ref); !ok {
						t.Errorf("%s: $ref %q does not resolve", at, ref)
					}
					continue
				}
				walk(at+"/"+k, x[k])
			}
		case []any:
			for _, e := range x {
				walk(at, e)
			}
		}
	}
	walk("#", doc)
	if n == 0 {
		t.Error("the document has no $ref at all")
	}
}

func TestOpenAPIServed(t *testing.T) {
	app := openapiApp(t)
	res, err := app.Test(httptest.NewRequest("GET", "/openapi.json", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET /openapi.json: status %d", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if !bytes.Equal(body, OpenAPI) {
		t.Error("GET /openapi.json does not serve the embedded document")
	}
}
