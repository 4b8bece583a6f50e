// Package loyalty is the engine's core: program settings, tiers as
// configured, members, the points ledger, purchases, quotes and returns.
// Every write is one transaction that a service method owns; helpers take the
// transaction. Nothing here knows about HTTP.
package loyalty

import (
	"time"
)

// Observer hears about business events, for metrics. All methods must be
// cheap and safe for concurrent use.
type Observer interface {
	PurchasePosted(pointsEarned int64)
	PointsIssued(n int64)
	PointsRedeemed(n int64)
}

type noObserver struct{}

func (noObserver) PurchasePosted(int64) {}
func (noObserver) PointsIssued(int64)   {}
func (noObserver) PointsRedeemed(int64) {}

// Service is the engine's business API.
type Service struct {
	store    *Store
	now      func() time.Time
	observer Observer
	// exportChunk is how many rows one query of an export reads (0:
	// DefaultExportChunk); see exports.go.
	exportChunk int
}

// Option configures a Service.
type Option func(*Service)

// WithClock makes the service read time from now instead of the wall clock.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithObserver reports business events to o.
func WithObserver(o Observer) Option { return func(s *Service) { s.observer = o } }

// NewService returns the service over store.
func NewService(store *Store, opts ...Option) *Service {
	s := &Service{store: store, now: time.Now, observer: noObserver{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Store returns the service's store.
func (s *Service) Store() *Store { return s.store }

// Now is the service's current time.
func (s *Service) Now() time.Time { return ts(s.now()) }
