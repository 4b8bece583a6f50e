package loyalty

import (
	"encoding/base64"
	"slices"
	"strings"
)

// Page is a request for one page of a list (§1: ?limit=&cursor=).
type Page struct {
	Limit  int
	Cursor string
}

// List is one page of results.
type List[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

func (p Page) limit() int {
	switch {
	case p.Limit <= 0:
		return 50
	case p.Limit > 500:
		return 500
	}
	return p.Limit
}

// encodeCursor makes an opaque cursor from the parts of a sort key.
func encodeCursor(parts ...string) *string {
	c := base64.RawURLEncoding.EncodeToString([]byte(strings.Join(parts, "\x1f")))
	return &c
}

func (p Page) decode(n int) ([]string, error) {
	if p.Cursor == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(p.Cursor)
	parts := strings.Split(string(b), "\x1f")
	if err != nil || len(parts) != n || strings.IndexByte(string(b), 0) >= 0 {
		return nil, Invalidf("cursor", "is not a cursor this list returned")
	}
	return parts, nil
}

func (p Page) afterID() (string, error) {
	parts, err := p.decode(1)
	if err != nil || parts == nil {
		return "", err
	}
	return parts[0], nil
}

// Size is the page size asked for, within the limits of §1.
func (p Page) Size() int { return p.limit() }

// AfterCursor decodes a one-part cursor made by Cursor.
func (p Page) AfterCursor() (string, error) { return p.afterID() }

// Cursor makes an opaque cursor from the parts of a sort key.
func Cursor(parts ...string) *string { return encodeCursor(parts...) }

// CursorParts decodes a cursor of n parts made by Cursor.
func (p Page) CursorParts(n int) ([]string, error) { return p.decode(n) }

// PageOf cuts the page p asks for out of a whole list held in memory: the
// list is ordered by key (compared as strings; keys are unique), the page
// holds the items whose key follows the cursor's, at most p.Size() of
// them, and its cursor is the key of its last item when more follow. Items
// is never nil, so an empty list encodes as [].
func PageOf[T any](items []T, p Page, key func(T) string) (List[T], error) {
	after, err := p.afterID()
	if err != nil {
		return List[T]{Items: []T{}}, err
	}
	sorted := slices.Clone(items)
	slices.SortStableFunc(sorted, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	start := 0
	if p.Cursor != "" {
		start, _ = slices.BinarySearchFunc(sorted, after, func(it T, k string) int { return strings.Compare(key(it), k) })
		for start < len(sorted) && key(sorted[start]) <= after {
			start++
		}
	}
	end := min(start+p.limit(), len(sorted))
	out := List[T]{Items: append([]T{}, sorted[start:end]...)}
	if end < len(sorted) {
		out.NextCursor = encodeCursor(key(sorted[end-1]))
	}
	return out, nil
}
