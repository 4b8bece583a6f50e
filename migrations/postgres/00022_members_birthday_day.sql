-- +goose NO TRANSACTION
-- +goose Up
-- The birthday gifts run finds the active members whose birthday (month
-- and day) is the run's day in their timezone. Without an index it read
-- every member twice a night (the timezones, then the day's members); by
-- this one it reads the few days' birthdays around the run's day, a 365th
-- of the base, so a night costs the day's gifts. Built without blocking
-- the tills; a build that failed part way is dropped first.
DROP INDEX CONCURRENTLY IF EXISTS members_birthday_day;
CREATE INDEX CONCURRENTLY members_birthday_day ON members ((substr(birthday, 6, 5)), (COALESCE(timezone, '')))
    WHERE status = 'active' AND birthday IS NOT NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS members_birthday_day;
