package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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
		if r.Method == "USE" || r.Path == "/" || r.Path == "" || strings.HasPrefix(r.Path, "/console") {
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

		// /v1 and /metrics need a bearer token; the rest is open.
		sec, hasSec := o["security"].([]any)
		if strings.HasPrefix(path, "/v1/") || path == "/metrics" {
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

// openapiSchemaErrors checks a decoded JSON value (numbers as json.Number)
// against a schema of the document and lists the violations. It knows the
// keywords the document uses: $ref, oneOf, allOf, type, enum, properties,
// required, additionalProperties, items, pattern, minimum, maximum,
// minLength, maxLength and the date-time and date formats.
func openapiSchemaErrors(doc map[string]any, schema any, v any, at string) []string {
	s, ok := schema.(map[string]any)
	if !ok {
		return nil
	}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
	if r, ok := s["$ref"].(string); ok {
		target, found := openapiPointer(doc, r)
		if !found {
			fail("$ref %s does not resolve", r)
			return errs
		}
		errs = append(errs, openapiSchemaErrors(doc, target, v, at)...)
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			errs = append(errs, openapiSchemaErrors(doc, sub, v, at)...)
		}
	}
	if one, ok := s["oneOf"].([]any); ok {
		matched := 0
		for _, sub := range one {
			if len(openapiSchemaErrors(doc, sub, v, at)) == 0 {
				matched++
			}
		}
		if matched != 1 {
			fail("matches %d of the oneOf alternatives, want 1", matched)
		}
	}
	if t, ok := s["type"]; ok {
		var types []string
		switch x := t.(type) {
		case string:
			types = []string{x}
		case []any:
			for _, e := range x {
				types = append(types, fmt.Sprint(e))
			}
		}
		if !slices.ContainsFunc(types, func(t string) bool { return openapiIsType(v, t) }) {
			fail("%s is not of type %v", openapiShort(v), types)
			return errs
		}
	}
	if enum, ok := s["enum"].([]any); ok {
		if !slices.ContainsFunc(enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
			fail("%s is not one of %v", openapiShort(v), enum)
		}
	}
	switch x := v.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, ok := x[r.(string)]; !ok {
					fail("required property %q is missing", r)
				}
			}
		}
		for _, k := range sortedKeys(x) {
			if ps, ok := props[k]; ok {
				errs = append(errs, openapiSchemaErrors(doc, ps, x[k], at+"."+k)...)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail("property %q is not in the schema", k)
				}
			case map[string]any:
				errs = append(errs, openapiSchemaErrors(doc, ap, x[k], at+"."+k)...)
			}
		}
	case []any:
		if items, ok := s["items"]; ok {
			for i, e := range x {
				errs = append(errs, openapiSchemaErrors(doc, items, e, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case string:
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(x) {
			fail("%q does not match %s", x, p)
		}
		n := utf8.RuneCountInString(x)
		if m, ok := s["minLength"].(float64); ok && float64(n) < m {
			fail("%q is shorter than %v", x, m)
		}
		if m, ok := s["maxLength"].(float64); ok && float64(n) > m {
			fail("%q is longer than %v", x, m)
		}
		switch s["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, x); err != nil {
				fail("%q is not an RFC 3339 date-time", x)
			}
		case "date":
			if _, err := time.Parse(time.DateOnly, x); err != nil {
				fail("%q is not a date", x)
			}
		}
	case json.Number:
		f, _ := x.Float64()
		if m, ok := s["minimum"].(float64); ok && f < m {
			fail("%s is below the minimum %v", x, m)
		}
		if m, ok := s["maximum"].(float64); ok && f > m {
			fail("%s is above the maximum %v", x, m)
		}
	}
	return errs
}

func openapiIsType(v any, t string) bool {
	switch x := v.(type) {
	case nil:
		return t == "null"
	case bool:
		return t == "boolean"
	case string:
		return t == "string"
	case []any:
		return t == "array"
	case map[string]any:
		return t == "object"
	case json.Number:
		_, err := x.Int64()
		return t == "number" || (t == "integer" && err == nil)
	}
	return false
}

func openapiShort(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}

// openapiTemplate finds the document's path template for a request path:
// a literal path first, else the template with the fewest parameters.
func openapiTemplate(doc map[string]any, path string) string {
	path, _, _ = strings.Cut(path, "?")
	paths := doc["paths"].(map[string]any)
	if _, ok := paths[path]; ok {
		return path
	}
	best, bestParams := "", -1
	for tmpl := range paths {
		rx := "^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(tmpl), "[^/]+") + "$"
		if regexp.MustCompile(rx).MatchString(path) {
			if n := strings.Count(tmpl, "{"); bestParams < 0 || n < bestParams {
				best, bestParams = tmpl, n
			}
		}
	}
	return best
}

// openapiConforms checks that the document describes the response r to
// method path: its status, its content type and its body.
func openapiConforms(t testing.TB, doc map[string]any, method, path string, r resp) {
	t.Helper()
	tmpl := openapiTemplate(doc, path)
	item, _ := doc["paths"].(map[string]any)[tmpl].(map[string]any)
	op, _ := item[strings.ToLower(method)].(map[string]any)
	if op == nil {
		t.Errorf("%s %s: no operation in openapi.json", method, path)
		return
	}
	responses, _ := op["responses"].(map[string]any)
	response := openapiDeref(doc, responses[strconv.Itoa(r.Status)])
	if response == nil {
		t.Errorf("%s %s answered %d, which %s %s does not document: %s", method, path, r.Status, method, tmpl, r.Body)
		return
	}
	content, _ := response["content"].(map[string]any)
	if len(r.Body) == 0 {
		if len(content) != 0 {
			t.Errorf("%s %s %d: empty body, but the document describes one", method, path, r.Status)
		}
		return
	}
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	media, _ := content[strings.TrimSpace(ct)].(map[string]any)
	if media == nil {
		t.Errorf("%s %s %d: content type %q is not documented", method, path, r.Status, ct)
		return
	}
	if ct = strings.TrimSpace(ct); ct != "application/json" && !strings.HasSuffix(ct, "+json") {
		// A text answer (the CSV export) is described as a string.
		if !utf8.Valid(r.Body) {
			t.Errorf("%s %s %d: %s body is not UTF-8", method, path, r.Status, ct)
		}
		for _, e := range openapiSchemaErrors(doc, media["schema"], string(r.Body), "body") {
			t.Errorf("%s %s %d: %s", method, path, r.Status, e)
		}
		return
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	var body any
	if err := dec.Decode(&body); err != nil {
		t.Errorf("%s %s %d: body is not JSON: %v", method, path, r.Status, err)
		return
	}
	for _, e := range openapiSchemaErrors(doc, media["schema"], body, "body") {
		t.Errorf("%s %s %d: %s", method, path, r.Status, e)
	}
}

func TestOpenAPISchemaCheckerCatchesMismatches(t *testing.T) {
	doc := openapiDoc(t)
	reward := map[string]any{"$ref": "#/components/schemas/Reward"}
	good := `{"id":"r1","code":"gift","name":"Gift","description":"","cost_points":10,"min_tier":null,"stock":null,
		"per_member_limit":null,"valid_from":null,"valid_until":"2026-04-01T00:00:00Z","active":true,
		"created_at":"2026-03-01T12:00:00Z","updated_at":"2026-03-01T12:00:00.5Z"}`
	decode := func(s string) map[string]any {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if errs := openapiSchemaErrors(doc, reward, decode(good), "body"); len(errs) != 0 {
		t.Fatalf("a good reward is refused: %v", errs)
	}
	for name, change := range map[string]func(m map[string]any){
		"ExtraField":      func(m map[string]any) { m["extra"] = true },
		"MissingField":    func(m map[string]any) { delete(m, "stock") },
		"WrongType":       func(m map[string]any) { m["cost_points"] = "10" },
		"Fraction":        func(m map[string]any) { m["cost_points"] = json.Number("1.5") },
		"NullNotAllowed":  func(m map[string]any) { m["active"] = nil },
		"Negative":        func(m map[string]any) { m["cost_points"] = json.Number("-1") },
		"BadPattern":      func(m map[string]any) { m["code"] = "Gift" },
		"BadDateTime":     func(m map[string]any) { m["created_at"] = "2026-03-01" },
		"BadNullableTime": func(m map[string]any) { m["valid_from"] = "soon" },
	} {
		m := decode(good)
		change(m)
		if len(openapiSchemaErrors(doc, reward, m, "body")) == 0 {
			t.Errorf("%s: the checker accepts %v", name, m)
		}
	}
}

// TestOpenAPIResponsesConform calls the rewards, redemptions, coupons, jobs,
// offers, gifts, analytics and segments routes the way integrators do, on
// every outcome the document describes, and checks each answer against it:
// the status is documented for the operation, and the body matches the
// documented schema exactly.
func TestOpenAPIResponsesConform(t *testing.T) {
	doc := openapiDoc(t)
	loyaltytest.Each(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.beautyLadder()
		admin, mk, pos := e.admin(), e.marketer(), e.pos()
		own := e.enrol()
		mem := e.token(loyalty.RoleMember, own)
		// call makes a request, checks the status wanted and the answer
		// against the document.
		call := func(want int, method, path, tok string, body any, headers ...string) resp {
			t.Helper()
			r := e.do(method, path, tok, body, headers...)
			if r.Status != want {
				t.Errorf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
			}
			openapiConforms(t, doc, method, path, r)
			return r
		}
		conflict := func(code, method, path, tok string, body any) {
			t.Helper()
			r := call(409, method, path, tok, body)
			if got := fmt.Sprint(r.JSON(t)["code"]); got != code {
				t.Errorf("%s %s: problem code %q, want %q", method, path, got, code)
			}
		}
		call(201, "POST", "/v1/members/"+own+"/adjustments", admin, map[string]any{"points": 1000, "reason": "conformance"})
		now := e.clock.Now()

		// Catalog.
		full := call(201, "POST", "/v1/rewards", mk, map[string]any{"code": "full", "name": "Full", "description": "Every field",
			"cost_points": 100, "min_tier": "insider", "stock": 5, "per_member_limit": 3,
			"valid_from": "2026-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00+02:00", "active": true},
			"Idempotency-Key", "conf-full").JSON(t)["id"].(string)
		r := call(201, "POST", "/v1/rewards", mk, map[string]any{"code": "full", "name": "Full", "description": "Every field",
			"cost_points": 100, "min_tier": "insider", "stock": 5, "per_member_limit": 3,
			"valid_from": "2026-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00+02:00", "active": true},
			"Idempotency-Key", "conf-full")
		if r.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replayed reward without Idempotent-Replayed: true")
		}
		add := func(code string, cost int, kv ...any) string {
			t.Helper()
			b := map[string]any{"code": code, "name": code, "cost_points": cost}
			for i := 0; i+1 < len(kv); i += 2 {
				b[kv[i].(string)] = kv[i+1]
			}
			return call(201, "POST", "/v1/rewards", admin, b).JSON(t)["id"].(string)
		}
		free := add("free", 0)
		dear := add("dear", 1_000_000)
		soldOut := add("sold-out", 0, "stock", 1)
		once := add("once", 1, "per_member_limit", 1)
		rouge := add("rouge-only", 1, "min_tier", "rouge")
		later := add("later", 1, "valid_from", now.Add(24*time.Hour).Format(time.RFC3339))
		gone := add("gone", 1)
		conflict("duplicate", "POST", "/v1/rewards", admin, map[string]any{"code": "free", "name": "Again", "cost_points": 1})
		call(422, "POST", "/v1/rewards", admin, map[string]any{"code": "Bad Code", "name": "", "cost_points": -1})
		call(422, "POST", "/v1/rewards", admin, map[string]any{"code": "no-tier", "name": "x", "cost_points": 1, "min_tier": "nope"})
		call(400, "POST", "/v1/rewards", admin, "{")
		t.Run("RewardTimeNotATime", func(t *testing.T) {
			// Bad input is 422 naming the field, as a purchase's occurred_at.
			r := e.do("POST", "/v1/rewards", admin, map[string]any{"code": "bad-time", "name": "x", "cost_points": 1, "valid_from": "soon"})
			assertProblem(t, r, 422, "valid_from")
		})

		r = call(200, "GET", "/v1/rewards?limit=2", admin, nil)
		var page struct {
			Items      []map[string]any `json:"items"`
			NextCursor *string          `json:"next_cursor"`
		}
		r.Decode(t, &page)
		if len(page.Items) != 2 || page.NextCursor == nil {
			t.Errorf("first page of 2: %s", r.Body)
		} else {
			call(200, "GET", "/v1/rewards?limit=2&cursor="+*page.NextCursor, admin, nil)
		}
		call(200, "GET", "/v1/rewards?include_retired=true", mk, nil)
		call(200, "GET", "/v1/rewards?member_id="+own, pos, nil)
		call(200, "GET", "/v1/rewards", mem, nil)
		call(404, "GET", "/v1/rewards?member_id=no-such-member", admin, nil)
		call(404, "GET", "/v1/rewards?member_id="+e.enrol(), mem, nil)
		call(422, "GET", "/v1/rewards?limit=0", admin, nil)
		call(200, "GET", "/v1/rewards/"+full, mem, nil)
		call(404, "GET", "/v1/rewards/no-such-reward", admin, nil)
		call(200, "PATCH", "/v1/rewards/"+full, mk, map[string]any{"description": nil, "stock": nil, "valid_until": nil})
		call(422, "PATCH", "/v1/rewards/"+full, mk, map[string]any{"name": nil})
		conflict("duplicate", "PATCH", "/v1/rewards/"+full, mk, map[string]any{"code": "free"})
		call(404, "PATCH", "/v1/rewards/no-such-reward", mk, map[string]any{"name": "x"})
		call(204, "DELETE", "/v1/rewards/"+gone, mk, nil)
		call(204, "DELETE", "/v1/rewards/"+gone, mk, nil)
		call(404, "DELETE", "/v1/rewards/no-such-reward", mk, nil)
		if got := call(200, "GET", "/v1/rewards/"+gone, admin, nil).JSON(t)["active"]; got != false {
			t.Errorf("retired reward: active %v", got)
		}

		// Redemptions.
		redeem := "/v1/members/" + own + "/redemptions"
		red := call(201, "POST", redeem, mem, map[string]any{"reward_id": full}, "Idempotency-Key", "conf-redeem").JSON(t)
		r = call(201, "POST", redeem, mem, map[string]any{"reward_id": full}, "Idempotency-Key", "conf-redeem")
		if r.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replayed redemption without Idempotent-Replayed: true")
		}
		toUse := call(201, "POST", redeem, pos, map[string]any{"reward_id": free}).JSON(t)
		call(201, "POST", redeem, admin, map[string]any{"reward_id": soldOut})
		call(201, "POST", redeem, admin, map[string]any{"reward_id": once})
		conflict("insufficient_points", "POST", redeem, admin, map[string]any{"reward_id": dear})
		conflict("out_of_stock", "POST", redeem, admin, map[string]any{"reward_id": soldOut})
		conflict("limit_reached", "POST", redeem, admin, map[string]any{"reward_id": once})
		conflict("tier_too_low", "POST", redeem, admin, map[string]any{"reward_id": rouge})
		conflict("not_available", "POST", redeem, admin, map[string]any{"reward_id": later})
		conflict("not_available", "POST", redeem, admin, map[string]any{"reward_id": gone})
		call(422, "POST", redeem, admin, map[string]any{"reward_id": "no-such-reward"})
		call(422, "POST", redeem, admin, map[string]any{})
		call(400, "POST", redeem, admin, "[]")
		call(404, "POST", "/v1/members/no-such-member/redemptions", admin, map[string]any{"reward_id": free})

		r = call(200, "GET", redeem+"?limit=1", mem, nil)
		r.Decode(t, &page)
		if page.NextCursor == nil {
			t.Errorf("first page of 1: %s", r.Body)
		} else {
			call(200, "GET", redeem+"?limit=1&cursor="+*page.NextCursor, mk, nil)
		}
		call(404, "GET", "/v1/members/no-such-member/redemptions", mk, nil)
		call(422, "GET", redeem+"?limit=501", mk, nil)
		id := red["id"].(string)
		call(200, "GET", "/v1/redemptions/"+id, mem, nil)
		call(404, "GET", "/v1/redemptions/no-such-redemption", admin, nil)
		call(200, "POST", "/v1/redemptions/"+id+"/cancel", mem, nil, "Idempotency-Key", "conf-cancel")
		r = call(200, "POST", "/v1/redemptions/"+id+"/cancel", mem, nil, "Idempotency-Key", "conf-cancel")
		if r.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replayed cancel without Idempotent-Replayed: true")
		}
		conflict("not_issued", "POST", "/v1/redemptions/"+id+"/cancel", pos, nil)
		call(404, "POST", "/v1/redemptions/no-such-redemption/cancel", pos, nil)

		// Coupons.
		coupon := toUse["coupon_code"].(string)
		call(200, "GET", "/v1/coupons/"+coupon, pos, nil)
		call(200, "GET", "/v1/coupons/"+strings.ToLower(strings.ReplaceAll(coupon, "-", "")), pos, nil)
		call(404, "GET", "/v1/coupons/NOPE-NOPE-NOPE-NOPE", pos, nil)
		call(200, "POST", "/v1/coupons/"+coupon+"/use", pos, nil, "Idempotency-Key", "conf-use")
		r = call(200, "POST", "/v1/coupons/"+coupon+"/use", pos, nil, "Idempotency-Key", "conf-use")
		if r.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replayed use without Idempotent-Replayed: true")
		}
		conflict("not_issued", "POST", "/v1/coupons/"+coupon+"/use", admin, nil)
		conflict("not_issued", "POST", "/v1/redemptions/"+toUse["id"].(string)+"/cancel", admin, nil)
		conflict("not_issued", "POST", "/v1/coupons/"+red["coupon_code"].(string)+"/use", pos, nil)
		call(404, "POST", "/v1/coupons/NOPE-NOPE-NOPE-NOPE/use", pos, nil)

		// Jobs.
		call(200, "GET", "/v1/jobs", mk, nil)
		call(200, "POST", "/v1/jobs/tier-review/run", mk, nil)
		call(200, "POST", "/v1/jobs/expire-points/run", mk, map[string]any{"as_of": "2026-03-01T00:00:00Z"})
		call(200, "POST", "/v1/jobs/expire-points/run", admin, map[string]any{"as_of": nil})
		call(200, "POST", "/v1/jobs/tier-review/run", admin, map[string]any{})
		var jobs struct {
			Items []struct {
				Name    string         `json:"name"`
				LastRun map[string]any `json:"last_run"`
			} `json:"items"`
		}
		call(200, "GET", "/v1/jobs", admin, nil).Decode(t, &jobs)
		for _, j := range jobs.Items {
			if (j.Name == "tier-review" || j.Name == "expire-points") && j.LastRun == nil {
				t.Errorf("job %s ran but has no last_run", j.Name)
			}
		}
		call(404, "POST", "/v1/jobs/no-such-job/run", admin, nil)
		call(422, "POST", "/v1/jobs/expire-points/run", admin, map[string]any{"as_of": now.Add(time.Hour).Format(time.RFC3339)})
		call(400, "POST", "/v1/jobs/tier-review/run", admin, "[1]")
		t.Run("JobAsOfNotATime", func(t *testing.T) {
			// Bad input is 422 naming the field, as a purchase's occurred_at.
			for _, asOf := range []any{"yesterday", "2026-03-01", 1772323200} {
				r := e.do("POST", "/v1/jobs/tier-review/run", admin, map[string]any{"as_of": asOf})
				assertProblem(t, r, 422, "as_of")
			}
		})

		openapiConformOffersGiftsAnalytics(t, e, call, conflict)
		e.checkLedger()
	})
}

// openapiCaller makes a request, checks the status wanted and the answer
// against the document.
type openapiCaller func(want int, method, path, tok string, body any, headers ...string) resp

// openapiConformOffersGiftsAnalytics is TestOpenAPIResponsesConform for the
// offers, offer templates, member offers, birthday gifts, analytics and
// segments routes and the jobs behind them. It buys first, so that no offer
// it creates applies to a purchase, and lets the clock run out the gifts
// last.
func openapiConformOffersGiftsAnalytics(t *testing.T, e *env, call openapiCaller, conflict func(code, method, path, tok string, body any)) {
	t.Helper()
	admin, mk, pos := e.admin(), e.marketer(), e.pos()
	now := e.clock.Now()
	replayed := func(what string, r resp) {
		t.Helper()
		if r.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replayed %s without Idempotent-Replayed: true", what)
		}
	}
	runJob := func(tok, name string) map[string]any {
		t.Helper()
		run := call(200, "POST", "/v1/jobs/"+name+"/run", tok, nil).JSON(t)
		if run["status"] != "succeeded" {
			t.Errorf("job %s: status %v, error %v", name, run["status"], run["error"])
		}
		summary, _ := run["summary"].(map[string]any)
		return summary
	}
	type page struct {
		Items      []map[string]any `json:"items"`
		NextCursor *string          `json:"next_cursor"`
	}

	// Purchase history over the last weeks: buyer has three purchases in
	// the last 30 days, all skincare; the others fewer than two.
	buyer, other, lapsed, steady := e.enrol(), e.enrol(), e.enrol(), e.enrol()
	buyerTok, otherTok := e.token(loyalty.RoleMember, buyer), e.token(loyalty.RoleMember, other)
	n := 0
	buy := func(member string, daysAgo int, category string, amount int64) {
		t.Helper()
		n++
		call(201, "POST", "/v1/purchases", pos, map[string]any{"member_id": member, "external_id": fmt.Sprintf("CONF-H-%d", n),
			"store_id": "store-1", "currency": "USD", "total": amount, "occurred_at": now.AddDate(0, 0, -daysAgo).Format(time.RFC3339),
			"items": []map[string]any{{"sku": "SKU-" + category, "category": category, "quantity": 1, "unit_price": amount, "amount": amount}}})
	}
	for _, d := range []int{40, 20, 10, 3} {
		buy(buyer, d, "skincare", 4000)
	}
	buy(other, 60, "makeup", 2500)
	buy(other, 5, "makeup", 1500)
	buy(lapsed, 200, "fragrance", 9000)
	for _, d := range []int{90, 76, 62, 48, 34, 6} {
		buy(steady, d, "hair", 3000)
	}

	// Offers.
	offerBody := map[string]any{"code": "conf-skincare", "name": "Double points on skincare", "kind": "multiplier", "multiplier": "2",
		"bonus_points": 0, "conditions": map[string]any{"categories": []string{"skincare"}, "skus": []string{}, "store_ids": []string{"store-1"},
			"channels": []string{"pos"}, "min_spend": 1000},
		"target":              map[string]any{"all": false, "segments": []string{"loyal"}, "member_ids": []string{buyer}},
		"requires_activation": true, "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-01-01T00:00:00+01:00",
		"max_uses_per_member": 2, "status": "active"}
	offer := call(201, "POST", "/v1/offers", mk, offerBody, "Idempotency-Key", "conf-offer").JSON(t)["id"].(string)
	replayed("offer", call(201, "POST", "/v1/offers", mk, offerBody, "Idempotency-Key", "conf-offer"))
	call(422, "POST", "/v1/offers", mk, map[string]any{"code": "conf-other", "name": "Other", "kind": "bonus", "bonus_points": 1},
		"Idempotency-Key", "conf-offer")
	bonus := call(201, "POST", "/v1/offers", admin, map[string]any{"code": "conf-bonus", "name": "Bonus for all", "kind": "bonus",
		"bonus_points": 50, "target": map[string]any{"all": true}}).JSON(t)["id"].(string)
	paused := call(201, "POST", "/v1/offers", admin, map[string]any{"code": "conf-paused", "name": "Paused", "kind": "bonus",
		"bonus_points": 5, "conditions": map[string]any{"min_spend": 100}, "target": map[string]any{"all": true}, "status": "paused"}).JSON(t)["id"].(string)
	conflict("duplicate", "POST", "/v1/offers", mk, map[string]any{"code": "conf-bonus", "name": "Again", "kind": "bonus", "bonus_points": 1})
	call(422, "POST", "/v1/offers", mk, map[string]any{})
	call(422, "POST", "/v1/offers", mk, map[string]any{"code": "Bad Code", "name": "", "kind": "double"})
	call(422, "POST", "/v1/offers", mk, map[string]any{"code": "conf-x1", "name": "x", "kind": "multiplier", "multiplier": "1"})
	call(422, "POST", "/v1/offers", mk, map[string]any{"code": "conf-b0", "name": "x", "kind": "bonus", "bonus_points": 0})
	// Points are never negative, whatever the kind.
	call(422, "POST", "/v1/offers", mk, map[string]any{"code": "conf-neg", "name": "x", "kind": "multiplier", "multiplier": "2", "bonus_points": -5})
	call(422, "POST", "/v1/offers", mk, map[string]any{"code": "conf-nobody", "name": "x", "kind": "bonus", "bonus_points": 1,
		"target": map[string]any{"member_ids": []string{"no-such-member"}}})
	call(422, "POST", "/v1/offers", mk, map[string]any{"code": "conf-when", "name": "x", "kind": "bonus", "bonus_points": 1, "starts_at": "soon"})
	call(400, "POST", "/v1/offers", mk, "{")

	var pg page
	call(200, "GET", "/v1/offers?limit=1", mk, nil).Decode(t, &pg)
	if len(pg.Items) != 1 || pg.NextCursor == nil {
		t.Errorf("first page of 1 offer: %+v", pg)
	} else {
		call(200, "GET", "/v1/offers?limit=1&cursor="+*pg.NextCursor, admin, nil)
	}
	call(200, "GET", "/v1/offers?personal=true", mk, nil)
	call(422, "GET", "/v1/offers?limit=501", mk, nil)
	call(422, "GET", "/v1/offers?cursor=!!", mk, nil)
	call(200, "GET", "/v1/offers/"+offer, mk, nil)
	call(404, "GET", "/v1/offers/no-such-offer", admin, nil)
	patched := call(200, "PATCH", "/v1/offers/"+offer, mk, map[string]any{"name": "Double points on skincare, open-ended",
		"ends_at": nil, "max_uses_per_member": nil}).JSON(t)
	if patched["ends_at"] != nil || patched["max_uses_per_member"] != nil || patched["starts_at"] == nil {
		t.Errorf("patch with nulls: %v", patched)
	}
	call(200, "PATCH", "/v1/offers/"+paused, admin, map[string]any{"status": "paused", "bonus_points": 6})
	call(422, "PATCH", "/v1/offers/"+offer, mk, map[string]any{"status": "gone"})
	call(422, "PATCH", "/v1/offers/"+offer, mk, map[string]any{"bonus_points": -1})
	call(422, "PATCH", "/v1/offers/"+offer, mk, map[string]any{"starts_at": "2027-01-01T00:00:00Z", "ends_at": "2026-06-01T00:00:00Z"})
	conflict("duplicate", "PATCH", "/v1/offers/"+offer, mk, map[string]any{"code": "conf-bonus"})
	call(404, "PATCH", "/v1/offers/no-such-offer", mk, map[string]any{"name": "x"})
	call(400, "PATCH", "/v1/offers/"+offer, mk, "[]")
	reach := call(200, "GET", "/v1/offers/"+offer+"/reach", mk, nil).JSON(t)
	if reach["offer_id"] != offer || reach["members"] != float64(1) {
		t.Errorf("reach of an offer for one member: %v", reach)
	}
	call(200, "GET", "/v1/offers/"+bonus+"/reach", admin, nil)
	call(404, "GET", "/v1/offers/no-such-offer/reach", mk, nil)

	// Personal-offer templates and the job that gives their offers.
	tplBody := map[string]any{"code": "conf-fav", "name": "Double points on your favourite", "kind": "multiplier", "multiplier": "2",
		"bonus_points": 0, "conditions": map[string]any{"categories": []string{"ignored"}, "min_spend": 500}, "duration_days": 14,
		"lookback_days": 30, "min_purchases": 2, "requires_activation": false, "max_uses_per_member": 3, "active": true}
	tpl := call(201, "POST", "/v1/offer-templates", mk, tplBody, "Idempotency-Key", "conf-tpl").JSON(t)
	replayed("template", call(201, "POST", "/v1/offer-templates", mk, tplBody, "Idempotency-Key", "conf-tpl"))
	if c, _ := tpl["conditions"].(map[string]any); c == nil || len(c["categories"].([]any)) != 0 {
		t.Errorf("template conditions keep categories: %v", tpl["conditions"])
	}
	tplID := tpl["id"].(string)
	call(201, "POST", "/v1/offer-templates", admin, map[string]any{"code": "conf-idle", "name": "Idle", "kind": "bonus",
		"bonus_points": 20, "active": false})
	conflict("duplicate", "POST", "/v1/offer-templates", mk, map[string]any{"code": "conf-idle", "name": "Again", "kind": "bonus", "bonus_points": 1})
	call(422, "POST", "/v1/offer-templates", mk, map[string]any{"code": "Bad Code", "name": "", "kind": "x"})
	call(422, "POST", "/v1/offer-templates", mk, map[string]any{"code": "conf-short", "name": "x", "kind": "bonus", "bonus_points": 1, "duration_days": 0})
	call(422, "POST", "/v1/offer-templates", mk, map[string]any{"code": "conf-neg", "name": "x", "kind": "multiplier", "multiplier": "2", "bonus_points": -5})
	call(400, "POST", "/v1/offer-templates", mk, "{")
	call(200, "GET", "/v1/offer-templates", mk, nil)
	call(200, "PATCH", "/v1/offer-templates/"+tplID, mk, map[string]any{"duration_days": 7})
	call(422, "PATCH", "/v1/offer-templates/"+tplID, admin, map[string]any{"lookback_days": 0})
	conflict("duplicate", "PATCH", "/v1/offer-templates/"+tplID, mk, map[string]any{"code": "conf-idle"})
	call(404, "PATCH", "/v1/offer-templates/no-such-template", mk, map[string]any{"name": "x"})
	call(400, "PATCH", "/v1/offer-templates/"+tplID, mk, "[]")
	if sum := runJob(mk, "personal-offers"); sum["offers"] != float64(1) {
		t.Errorf("personal-offers gave %v offers, want 1 (to buyer)", sum["offers"])
	}
	var personal string
	call(200, "GET", "/v1/offers?personal=true&limit=500", mk, nil).Decode(t, &pg)
	for _, o := range pg.Items {
		if o["template_id"] == tplID {
			personal = o["id"].(string)
			tgt, _ := o["target"].(map[string]any)
			if ids, _ := tgt["member_ids"].([]any); len(ids) != 1 || ids[0] != buyer {
				t.Errorf("personal offer target: %v", tgt)
			}
		}
	}
	if personal == "" {
		t.Fatalf("no personal offer from the template: %+v", pg.Items)
	}
	call(200, "GET", "/v1/offers/"+personal, admin, nil)
	call(200, "GET", "/v1/offers/"+personal+"/reach", admin, nil)

	// A member's offers.
	var mine page
	call(200, "GET", "/v1/members/"+buyer+"/offers", buyerTok, nil).Decode(t, &mine)
	got := map[string]bool{}
	for _, o := range mine.Items {
		got[o["id"].(string)] = o["activated"].(bool)
	}
	if len(got) != 3 || got[offer] || !got[bonus] || !got[personal] {
		t.Errorf("buyer's offers (id: activated) %v, want %s false, %s and %s true", got, offer, bonus, personal)
	}
	call(200, "GET", "/v1/members/"+buyer+"/offers", pos, nil)
	call(200, "GET", "/v1/members/"+other+"/offers", mk, nil)
	call(404, "GET", "/v1/members/"+other+"/offers", buyerTok, nil)
	call(404, "GET", "/v1/members/no-such-member/offers", admin, nil)
	activate := "/v1/members/" + buyer + "/offers/" + offer + "/activate"
	if a := call(200, "POST", activate, buyerTok, nil).JSON(t); a["activated"] != true || a["uses_left"] != nil {
		t.Errorf("activated offer: %v", a)
	}
	call(200, "POST", activate, pos, nil)
	call(200, "POST", "/v1/members/"+buyer+"/offers/"+bonus+"/activate", admin, nil)
	call(404, "POST", "/v1/members/"+buyer+"/offers/"+paused+"/activate", admin, nil)
	call(404, "POST", "/v1/members/"+buyer+"/offers/no-such-offer/activate", admin, nil)
	call(404, "POST", "/v1/members/"+other+"/offers/"+offer+"/activate", admin, nil)
	call(404, "POST", activate, otherTok, nil)
	call(404, "POST", "/v1/members/no-such-member/offers/"+bonus+"/activate", pos, nil)

	// Birthday gifts: three members born on the clock's day.
	giftReward := call(201, "POST", "/v1/rewards", admin, map[string]any{"code": "conf-gift", "name": "Birthday gift",
		"cost_points": 500}).JSON(t)["id"].(string)
	noStock := call(201, "POST", "/v1/rewards", admin, map[string]any{"code": "conf-gift-none", "name": "None left",
		"cost_points": 0, "stock": 0}).JSON(t)["id"].(string)
	call(200, "PUT", "/v1/program", mk, map[string]any{"birthday_gift": map[string]any{"enabled": true,
		"reward_ids": []string{giftReward, noStock}, "bonus_points": 25, "claim_days": 30, "min_tier": nil}})
	var born [3]string
	for i := range born {
		born[i] = call(201, "POST", "/v1/members", pos, map[string]any{"external_id": fmt.Sprintf("CONF-BDAY-%d", i),
			"birthday": now.AddDate(-30, 0, 0).Format(time.DateOnly)}).JSON(t)["id"].(string)
	}
	bornTok := e.token(loyalty.RoleMember, born[0])
	var gifts page
	call(200, "GET", "/v1/members/"+born[0]+"/gifts", bornTok, nil).Decode(t, &gifts)
	if len(gifts.Items) != 0 {
		t.Errorf("gifts before the job: %+v", gifts.Items)
	}
	if sum := runJob(mk, "birthday-gifts"); sum["given"] != float64(3) || sum["points"] != float64(75) {
		t.Errorf("birthday-gifts summary %v, want 3 given, 75 points", sum)
	}
	giftOf := func(member string) string {
		t.Helper()
		var l page
		call(200, "GET", "/v1/members/"+member+"/gifts", admin, nil).Decode(t, &l)
		if len(l.Items) != 1 || l.Items[0]["status"] != "available" {
			t.Fatalf("gifts of %s: %+v", member, l.Items)
		}
		return l.Items[0]["id"].(string)
	}
	gift := giftOf(born[0])
	claim := "/v1/members/" + born[0] + "/gifts/" + gift + "/claim"
	red := call(201, "POST", claim, bornTok, map[string]any{"reward_id": giftReward}, "Idempotency-Key", "conf-claim").JSON(t)
	if red["points_spent"] != float64(0) || red["status"] != "issued" {
		t.Errorf("claimed gift: %v", red)
	}
	replayed("claim", call(201, "POST", claim, bornTok, map[string]any{"reward_id": giftReward}, "Idempotency-Key", "conf-claim"))
	conflict("already_claimed", "POST", claim, pos, map[string]any{"reward_id": giftReward})
	call(200, "GET", "/v1/members/"+born[0]+"/gifts", bornTok, nil).Decode(t, &gifts)
	if len(gifts.Items) != 1 || gifts.Items[0]["status"] != "claimed" || gifts.Items[0]["redemption_id"] != red["id"] {
		t.Errorf("gift after the claim: %+v", gifts.Items)
	}
	second := "/v1/members/" + born[1] + "/gifts/" + giftOf(born[1]) + "/claim"
	conflict("out_of_stock", "POST", second, admin, map[string]any{"reward_id": noStock})
	call(422, "POST", second, admin, map[string]any{"reward_id": "no-such-reward"})
	call(422, "POST", second, admin, map[string]any{"reward_id": bonus})
	call(422, "POST", second, admin, map[string]any{})
	call(400, "POST", second, admin, "{")
	call(404, "POST", second, bornTok, map[string]any{"reward_id": giftReward})
	call(404, "POST", "/v1/members/"+born[1]+"/gifts/no-such-gift/claim", admin, map[string]any{"reward_id": giftReward})
	call(404, "POST", "/v1/members/"+born[1]+"/gifts/"+gift+"/claim", admin, map[string]any{"reward_id": giftReward})
	call(404, "POST", "/v1/members/no-such-member/gifts/"+gift+"/claim", pos, map[string]any{"reward_id": giftReward})
	call(200, "GET", "/v1/members/"+born[1]+"/gifts", mk, nil)
	call(404, "GET", "/v1/members/"+born[1]+"/gifts", bornTok, nil)
	call(404, "GET", "/v1/members/no-such-member/gifts", admin, nil)

	// Analytics before the churn-risk job.
	if r := call(404, "GET", "/v1/analytics/churn-model", mk, nil); r.JSON(t)["code"] != "no_model" {
		t.Errorf("churn model before the job: %s", r.Body)
	}
	call(200, "GET", "/v1/analytics/churn-risk", mk, nil).Decode(t, &pg)
	if len(pg.Items) != 0 {
		t.Errorf("churn risk before the job: %+v", pg.Items)
	}
	if r := call(200, "GET", "/v1/analytics/redemption-rate?from=2026-01-01&to=2026-03-01", mk, nil).JSON(t); r["rate_percent"] == nil {
		t.Errorf("redemption rate of a range with points issued: %v", r)
	}
	var months struct {
		Items []map[string]any `json:"items"`
	}
	call(200, "GET", "/v1/analytics/redemption-rate?from=2026-01-15&to=2026-03-01&interval=month", admin, nil).Decode(t, &months)
	if len(months.Items) != 3 || months.Items[0]["from"] != "2026-01-15" || months.Items[2]["to"] != "2026-03-01" {
		t.Errorf("monthly rates: %+v", months.Items)
	}
	if r := call(200, "GET", "/v1/analytics/redemption-rate?from=2020-01-01&to=2020-12-31", mk, nil).JSON(t); r["rate_percent"] != nil {
		t.Errorf("redemption rate of a range without points: %v", r)
	}
	call(422, "GET", "/v1/analytics/redemption-rate", mk, nil)
	call(422, "GET", "/v1/analytics/redemption-rate?from=2026-03-01&to=2026-01-01", mk, nil)
	call(422, "GET", "/v1/analytics/redemption-rate?from=01/01/2026&to=2026-03-01", mk, nil)
	call(422, "GET", "/v1/analytics/redemption-rate?from=2026-01-01&to=2026-03-01&interval=week", mk, nil)
	call(200, "GET", "/v1/analytics/summary?from=2026-02-01&to=2026-03-01", mk, nil)
	if r := call(200, "GET", "/v1/analytics/summary?from=2020-01-01&to=2020-01-31", admin, nil).JSON(t); fmt.Sprint(r["rates"]) !=
		"map[churn_rate:<nil> redemption_rate:<nil> retention_rate:<nil>]" {
		t.Errorf("rates of an empty range: %v", r["rates"])
	}
	call(422, "GET", "/v1/analytics/summary?from=2026-02-01", mk, nil)
	call(422, "GET", "/v1/analytics/summary?from=2000-01-01&to=2030-01-01", mk, nil)

	// Churn.
	if sum := runJob(mk, "churn-risk"); sum["scored"] == nil || sum["scored"].(float64) < 4 {
		t.Errorf("churn-risk summary: %v", sum)
	}
	if m := call(200, "GET", "/v1/analytics/churn-model", mk, nil).JSON(t); m["model"] != "bgnbd" || m["members"].(float64) < 4 {
		t.Errorf("churn model: %v", m)
	}
	call(200, "GET", "/v1/analytics/churn-risk?limit=1", admin, nil).Decode(t, &pg)
	if len(pg.Items) != 1 || pg.NextCursor == nil {
		t.Errorf("first page of 1 churn score: %+v", pg)
	} else {
		call(200, "GET", "/v1/analytics/churn-risk?limit=1&cursor="+*pg.NextCursor, mk, nil)
	}
	call(200, "GET", "/v1/analytics/churn-risk?min_risk=0.5", mk, nil)
	call(200, "GET", "/v1/analytics/churn-risk?min_risk=1", mk, nil)
	call(422, "GET", "/v1/analytics/churn-risk?min_risk=2", mk, nil)
	call(422, "GET", "/v1/analytics/churn-risk?min_risk=high", mk, nil)
	call(422, "GET", "/v1/analytics/churn-risk?limit=0", mk, nil)
	call(422, "GET", "/v1/analytics/churn-risk?cursor=!!", mk, nil)
	t.Run("ChurnRiskForeignCursor", func(t *testing.T) {
		// A cursor that decodes but is not one this list made is bad
		// input: never a 5xx.
		for _, c := range []string{"abc", "0.5", "x"} {
			path := "/v1/analytics/churn-risk?cursor=" + base64.RawURLEncoding.EncodeToString([]byte(c))
			r := e.do("GET", path, mk, nil)
			if r.Status >= 500 {
				t.Errorf("GET %s: status %d: %s", path, r.Status, r.Body)
				continue
			}
			openapiConforms(t, openapiDoc(t), "GET", path, r)
		}
	})

	// Customer experience and lifetime value (§17).
	if m := call(200, "GET", "/v1/analytics/clv-model", admin, nil).JSON(t); m["customers"].(float64) < 2 {
		t.Errorf("clv model: %v", m)
	}
	call(200, "GET", "/v1/analytics/clv?limit=1", mk, nil).Decode(t, &pg)
	if len(pg.Items) != 1 || pg.NextCursor == nil {
		t.Errorf("first page of 1 clv: %+v", pg)
	} else {
		call(200, "GET", "/v1/analytics/clv?limit=1&cursor="+*pg.NextCursor, mk, nil)
	}
	call(422, "GET", "/v1/analytics/clv?cursor=!!", mk, nil)
	call(200, "GET", "/v1/members/"+buyer, buyerTok, nil)
	fb := map[string]any{"member_id": buyer, "kind": "nps", "score": 9, "comment": "fast"}
	call(201, "POST", "/v1/feedback", buyerTok, fb, "Idempotency-Key", "conf-fb")
	replayed("feedback", call(201, "POST", "/v1/feedback", buyerTok, fb, "Idempotency-Key", "conf-fb"))
	conflict("duplicate", "POST", "/v1/feedback", pos, fb)
	call(201, "POST", "/v1/feedback", pos, map[string]any{"member_id": other, "kind": "csat", "score": 2, "store_id": "store-1", "channel": "pos"})
	call(422, "POST", "/v1/feedback", admin, map[string]any{"member_id": other, "kind": "ces", "score": 9})
	call(400, "POST", "/v1/feedback", admin, "{")
	call(404, "POST", "/v1/feedback", otherTok, map[string]any{"member_id": buyer, "kind": "ces", "score": 3})
	call(404, "POST", "/v1/feedback", admin, map[string]any{"member_id": "no-such-member", "kind": "ces", "score": 3})
	call(200, "GET", "/v1/analytics/cx", mk, nil)
	for _, g := range []string{"store", "channel", "tier", "segment"} {
		call(200, "GET", "/v1/analytics/cx?group_by="+g+"&from=2026-01-01&to=2026-03-01", mk, nil)
	}
	call(422, "GET", "/v1/analytics/cx?group_by=x", mk, nil)
	call(200, "GET", "/v1/analytics/store-categories?store_id=store-1", mk, nil)
	call(422, "GET", "/v1/analytics/store-categories", mk, nil)
	call(404, "GET", "/v1/analytics/store-categories?store_id=store-1&segment=nope", mk, nil)
	call(200, "GET", "/v1/analytics/category-lapse?segment=loyal&weeks=8", mk, nil)
	call(200, "GET", "/v1/analytics/category-lapse?category=hair", admin, nil)
	call(422, "GET", "/v1/analytics/category-lapse?weeks=99", mk, nil)

	// Segments.
	var segs page
	call(200, "GET", "/v1/segments", mk, nil).Decode(t, &segs)
	if len(segs.Items) == 0 || segs.Items[0]["code"] != "loyal" {
		t.Errorf("segments: %+v", segs.Items)
	}
	runJob(mk, "segments")
	if r := call(200, "GET", "/v1/segments", admin, nil); r.Status == 200 {
		segs = page{}
		r.Decode(t, &segs)
		inRFM := int64(0)
		for _, s := range segs.Items {
			if strings.HasPrefix(s["code"].(string), "rfm_") {
				inRFM += int64(s["members"].(float64))
				if s["members"].(float64) > 0 && s["computed_at"] == nil {
					t.Errorf("segment %v has members but no computed_at", s["code"])
				}
			}
		}
		if inRFM != 4 {
			t.Errorf("RFM segments hold %d members, want the 4 buyers of the last 365 days: %+v", inRFM, segs.Items)
		}
	}
	buyerSegs, _ := call(200, "GET", "/v1/members/"+buyer, admin, nil).JSON(t)["segments"].([]any)
	if len(buyerSegs) != 1 {
		t.Fatalf("buyer's segments after the job: %v", buyerSegs)
	}
	code := buyerSegs[0].(string)
	members := "/v1/segments/" + code + "/members"
	var ids struct {
		Items      []string `json:"items"`
		NextCursor *string  `json:"next_cursor"`
	}
	call(200, "GET", members+"?limit=1", mk, nil).Decode(t, &ids)
	if len(ids.Items) != 1 {
		t.Errorf("first page of 1 member of %s: %+v", code, ids)
	}
	if ids.NextCursor != nil {
		call(200, "GET", members+"?limit=1&cursor="+*ids.NextCursor, admin, nil)
	}
	call(200, "GET", "/v1/segments/loyal/members", mk, nil)
	call(404, "GET", "/v1/segments/no-such-segment/members", mk, nil)
	call(422, "GET", members+"?limit=0", mk, nil)
	csv := call(200, "GET", members, mk, nil, "Accept", "text/csv")
	if ct := csv.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("CSV export: Content-Type %q", ct)
	}
	lines := strings.Split(strings.TrimSpace(string(csv.Body)), "\n")
	if strings.TrimSpace(lines[0]) != "member_id,external_id,email,phone,first_name,last_name,tier" {
		t.Errorf("CSV header %q", lines[0])
	}
	found := false
	for _, l := range lines[1:] {
		found = found || strings.HasPrefix(l, buyer+",")
	}
	if !found {
		t.Errorf("CSV export of %s does not list buyer %s: %s", code, buyer, csv.Body)
	}
	call(404, "GET", "/v1/segments/no-such-segment/members", mk, nil, "Accept", "text/csv")

	// The other new jobs, then every job has run.
	if months, _ := runJob(admin, "redemption-rate")["months"].([]any); len(months) != 2 {
		t.Errorf("redemption-rate summary: months %v, want the month before and this one", months)
	}
	if sum := runJob(admin, "purge-idempotency-keys"); sum["deleted"] == nil {
		t.Errorf("purge-idempotency-keys summary: %v", sum)
	}
	if sum := runJob(admin, "purge-events"); sum["deleted"] == nil {
		t.Errorf("purge-events summary: %v", sum)
	}
	var jobs struct {
		Items []struct {
			Name    string         `json:"name"`
			LastRun map[string]any `json:"last_run"`
		} `json:"items"`
	}
	call(200, "GET", "/v1/jobs", mk, nil).Decode(t, &jobs)
	var ran []string
	for _, j := range jobs.Items {
		if j.LastRun != nil {
			ran = append(ran, j.Name)
		}
	}
	if want := "birthday-gifts churn-risk expire-points personal-offers purge-events purge-idempotency-keys redemption-rate segments tier-review"; strings.Join(ran, " ") != want {
		t.Errorf("jobs with a last run: %v, want %s", ran, want)
	}

	// A month later the unclaimed gifts are expired.
	third := "/v1/members/" + born[2] + "/gifts/" + giftOf(born[2]) + "/claim"
	e.clock.Advance(31 * 24 * time.Hour)
	conflict("gift_expired", "POST", third, admin, map[string]any{"reward_id": giftReward})
	call(200, "GET", "/v1/members/"+born[2]+"/gifts", admin, nil).Decode(t, &gifts)
	if len(gifts.Items) != 1 || gifts.Items[0]["status"] != "expired" {
		t.Errorf("gift past its time: %+v", gifts.Items)
	}
	if sum := runJob(admin, "birthday-gifts"); sum["expired"] != float64(2) || sum["given"] != float64(0) {
		t.Errorf("birthday-gifts a month later: %v, want 2 expired, none given", sum)
	}
}
