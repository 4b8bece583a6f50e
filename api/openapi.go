package api

import (
	_ "embed"
	"strconv"
)

// OpenAPI is the OpenAPI 3 description of every route, served at
// /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
