package webhooks

import "testing"

// SetPruneChunk makes prune delete n rows a transaction until t ends.
func SetPruneChunk(t testing.TB, n int) {
	old := pruneChunk
	pruneChunk = n
	t.Cleanup(func() { pruneChunk = old })
}
