-- +goose Up
-- Erasure must reach every copy of a member's personal data. An
-- idempotency record whose stored reply shows the member (an enrolment's
-- answer, replayed for a repeated Idempotency-Key) names the member in
-- personal_member_id, so that erasing the member replaces that reply with
-- the erased view in the same transaction. Other replies carry ids and
-- points only and are not named.
ALTER TABLE idempotency_keys ADD COLUMN personal_member_id text;
CREATE INDEX idempotency_personal_member ON idempotency_keys (personal_member_id)
    WHERE personal_member_id IS NOT NULL;

-- Records written before this migration: an enrolment's reply is the
-- member's JSON, which begins with its id and holds the contact fields.
-- Enrolments are only ever guarded by a caller's key.
-- (status is not 0: answered; it held the first HTTP status then.)
UPDATE idempotency_keys SET personal_member_id = response::jsonb ->> 'id'
WHERE scope LIKE 'key:%' AND status <> 0
  AND response LIKE '{"id":"%","external_id":%,"email":%,"phone":%,"first_name":%,"last_name":%,"birthday":%,"timezone":%,"status":%,"enrolled_at":%';
UPDATE idempotency_keys SET personal_member_id = NULL
WHERE personal_member_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.id = idempotency_keys.personal_member_id);

-- Members erased before this migration: their replies and gifts still
-- hold what the erasure removed from the member row.
UPDATE idempotency_keys k SET response = (k.response::jsonb || '{"external_id": null, "email": null, "phone": null,
    "first_name": null, "last_name": null, "birthday": null, "timezone": null, "status": "erased"}'::jsonb)::text
FROM members m
WHERE m.id = k.personal_member_id AND m.status = 'erased';
UPDATE member_gifts SET birthday = ''
WHERE member_id IN (SELECT id FROM members WHERE status = 'erased');

-- +goose Down
DROP INDEX idempotency_personal_member;
ALTER TABLE idempotency_keys DROP COLUMN personal_member_id;
