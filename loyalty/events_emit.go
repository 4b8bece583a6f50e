package loyalty

import "time"

// The events of the writes that answer with a resource (writeOnce, and
// the purchase's PostgreSQL path): the resource's event, whose data is the
// answer's JSON as it was marshalled for the idempotency record, then what
// follows from it.

func (r PurchaseResult) events(body []byte, at time.Time) []newEvent {
	m := r.MemberID
	evs := make([]newEvent, 0, 3)
	evs = append(evs, newEvent{typ: EventPurchaseCreated, member: &m, at: ts(at), data: body})
	if r.TierAfter != nil && (r.TierBefore == nil || *r.TierAfter != *r.TierBefore) {
		evs = append(evs, tierEvent(m, r.TierBefore, r.TierAfter, at))
	}
	return append(evs, balanceEvent(r.Balance, trailingObject(body, "balance"), at))
}

func (r ReturnResult) events(body []byte, at time.Time) []newEvent {
	m := r.Balance.MemberID
	return []newEvent{{typ: EventPurchaseReturned, member: &m, at: ts(at), data: body}}
}

// Member's events: an enrolment answers the member created.
func (m Member) events(body []byte, at time.Time) []newEvent {
	id := m.ID
	return []newEvent{{typ: EventMemberCreated, member: &id, at: ts(at), data: body}}
}
