-- +goose Up
-- The members' purchase summaries (member_activity, as of activity_state)
-- and each member's latest purchase by category (member_category_marks, as
-- of category_state) are the segments' and churn-risk runs' own state:
-- derived from the purchases and read by nothing but those runs. A night
-- rewrites the rows of the members who bought or whose purchases left the
-- window, a tenth of the base, and most of those writes went to the WAL as
-- whole pages (the first change of a page since a checkpoint): 125 MB of
-- the segments' WAL at a million members. Unlogged, they go to none.
-- PostgreSQL empties every unlogged table when it recovers from a crash,
-- so each table goes with the state row that says what it holds; a run
-- that finds no state row builds the table from the whole history, as a
-- first run does.
ALTER TABLE member_activity SET UNLOGGED;
ALTER TABLE activity_state SET UNLOGGED;
ALTER TABLE member_category_marks SET UNLOGGED;
ALTER TABLE category_state SET UNLOGGED;

-- +goose Down
ALTER TABLE category_state SET LOGGED;
ALTER TABLE member_category_marks SET LOGGED;
ALTER TABLE activity_state SET LOGGED;
ALTER TABLE member_activity SET LOGGED;
