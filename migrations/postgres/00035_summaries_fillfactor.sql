-- +goose Up
-- A night's segments and churn-risk runs update the summaries of the members
-- who bought (member_activity) and the latest purchase of each category
-- they bought in (member_categories) where they stand. With room left on
-- each page such an update stays on its page, and the key's index is not
-- written again. (Pages written before this keep no room until their rows
-- move; a new base fills them at this factor.)
ALTER TABLE member_activity SET (fillfactor = 70);
ALTER TABLE member_categories SET (fillfactor = 80);

-- +goose Down
ALTER TABLE member_activity RESET (fillfactor);
ALTER TABLE member_categories RESET (fillfactor);
