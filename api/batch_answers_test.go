package api

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/gofiber/fiber/v2"
)

// appendAnswers writes what json.Marshal writes for the engine's bodies.
func TestAppendAnswersAsMarshal(t *testing.T) {
	answers := []batchAnswer{
		{Index: 0, Status: 201, Body: json.RawMessage(`{"id":"p1","points_earned":165,"breakdown":[{"source":"tier","points":125}]}`)},
		{Index: 1, Status: 201, Replayed: true, Body: json.RawMessage(`{"id":"p0","note":"\u003cb\u003e \u0026"}`)},
		{Index: 2, Status: 422, Body: json.RawMessage(`{"type":"about:blank","title":"Unprocessable","status":422,"errors":[{"field":"total","message":"must be \u003e 0"}]}`)},
		{Index: 3, Status: 400},
	}
	want, err := json.Marshal(fiber.Map{"results": answers})
	if err != nil {
		t.Fatal(err)
	}
	if got := appendAnswers(nil, answers); !bytes.Equal(got, want) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
