package loyalty

import "time"

// AsOf checks the instant a job is asked to compute as of against the
// engine's clock. An as_of more than ClockSkew ahead is refused (422): a
// job run as of the future would give, expire or count what has not
// happened yet, and its one-per-period keys would then block the real run.
// One within ClockSkew (a caller's clock a little ahead) is taken as now,
// so that no job ever computes as of the future. A past as_of is returned
// as is: each job decides what it may still do as of then (docs/JOBS.md).
func (s *Service) AsOf(asOf time.Time) (time.Time, error) {
	asOf = ts(asOf)
	now := ts(s.now())
	switch {
	case asOf.After(now.Add(ClockSkew)):
		return asOf, Invalidf("as_of", "must not be in the future (the engine's clock reads %s)", now.Format(time.RFC3339))
	case asOf.After(now):
		return now, nil
	case asOf.Year() < 1970:
		return asOf, Invalidf("as_of", "must be after 1970")
	}
	return asOf, nil
}
