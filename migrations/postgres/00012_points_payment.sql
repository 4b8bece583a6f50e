-- +goose Up
-- Points as payment at the till (§16): the payment is a ledger entry of its
-- own kind, a return refunds part of it as another.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('earn', 'offer', 'bonus', 'gift', 'redeem', 'redeem_cancel', 'return', 'expire', 'adjust', 'feedback',
        'payment', 'payment_refund'));

-- What a purchase paid with points, and what returns gave back of it, so that
-- a return refunds in proportion and the qualifying spend counts the cash
-- part: total - amount_paid_with_points, less the cash part of the returns.
ALTER TABLE purchases ADD COLUMN points_paid bigint NOT NULL DEFAULT 0 CHECK (points_paid >= 0);
ALTER TABLE purchases ADD COLUMN amount_paid_with_points bigint NOT NULL DEFAULT 0
    CHECK (amount_paid_with_points >= 0 AND amount_paid_with_points <= total);
ALTER TABLE purchases ADD COLUMN points_refunded bigint NOT NULL DEFAULT 0
    CHECK (points_refunded >= 0 AND points_refunded <= points_paid);
ALTER TABLE purchases ADD COLUMN amount_paid_returned bigint NOT NULL DEFAULT 0
    CHECK (amount_paid_returned >= 0 AND amount_paid_returned <= amount_paid_with_points
        AND amount_paid_returned <= returned_amount);

-- +goose Down
ALTER TABLE purchases DROP COLUMN amount_paid_returned;
ALTER TABLE purchases DROP COLUMN points_refunded;
ALTER TABLE purchases DROP COLUMN amount_paid_with_points;
ALTER TABLE purchases DROP COLUMN points_paid;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('earn', 'offer', 'bonus', 'gift', 'redeem', 'redeem_cancel', 'return', 'expire', 'adjust', 'feedback'));
