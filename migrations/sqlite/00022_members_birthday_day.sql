-- +goose Up
-- The birthday gifts run finds the active members whose birthday (month
-- and day) is the run's day in their timezone, by this index rather than
-- by reading every member (see PostgreSQL's migration).
CREATE INDEX members_birthday_day ON members (substr(birthday, 6, 5), COALESCE(timezone, ''))
    WHERE status = 'active' AND birthday IS NOT NULL;

-- +goose Down
DROP INDEX members_birthday_day;
