package loyalty

import (
	"context"
	"time"

	"gorm.io/gorm"
)

// AppendEvent appends an event of typ for member ("" none) with the JSON
// data in tx, as the writers do.
func AppendEvent(tx *gorm.DB, typ, member string, at time.Time, data string) error {
	var m *string
	if member != "" {
		m = &member
	}
	return appendEvents(tx, newEvent{typ: typ, member: m, at: at, data: []byte(data)})
}

// WriteEvent is AppendEvent in a write of its own.
func (s *Service) WriteEvent(ctx context.Context, typ, member, data string) error {
	return s.store.write(ctx, func(tx *gorm.DB) error { return AppendEvent(tx, typ, member, s.Now(), data) })
}

// TrailingObject is trailingObject.
var TrailingObject = trailingObject
