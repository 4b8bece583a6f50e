package loyalty

import (
	"testing"
	"time"
)

// TestIDFloor: ids compare as the instants they were made at, against the
// floor of an instant.
func TestIDFloor(t *testing.T) {
	// An id's milliseconds may run a little ahead of the clock after a
	// burst of ids (the UUIDv7 sequence carries into them): a second's
	// margin either side.
	before := time.Now().Add(-time.Second)
	id := newID()
	after := time.Now().Add(time.Second)
	if !(IDFloor(before) < id && id < IDFloor(after)) {
		t.Fatalf("id %s made between the floors %s and %s", id, IDFloor(before), IDFloor(after))
	}
	if f := IDFloor(time.UnixMilli(0x0192f1e2_3a4b)); f != "0192f1e2-3a4b" {
		t.Fatalf("floor %s", f)
	}
}
