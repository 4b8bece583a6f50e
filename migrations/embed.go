// Package migrations holds the versioned SQL schema, one folder per dialect,
// embedded into the binary so that `loyalty serve` and `loyalty migrate` need
// no files beside them.
package migrations

import "embed"

// FS holds postgres/*.sql and sqlite/*.sql in goose's format.
//
//go:embed postgres/*.sql sqlite/*.sql
var FS embed.FS
