-- +goose Up
-- A BRIN index answers for the page ranges it has summarized; a range not
-- summarized yet matches every search. PostgreSQL summarizes new ranges only
-- when VACUUM runs on the table (or when asked), so on a table that only
-- grows (purchases, ledger entries, returns, idempotency keys) a search for
-- "created since yesterday" read most of the table: at 100,000 members the
-- member summaries' refresh found its touched members in 885 ms with 178 of
-- 179 ranges of purchases unsummarized, and in 84 ms once they were.
-- autosummarize has autovacuum summarize a range as soon as inserts move
-- on to the next one; the jobs also summarize what is left before they run
-- (Store.SummarizeRanges), and the ranges there are now are summarized here.
ALTER INDEX ledger_time_brin SET (autosummarize = on);
ALTER INDEX purchases_local_date_brin SET (autosummarize = on);
ALTER INDEX idempotency_created_brin SET (autosummarize = on);
ALTER INDEX purchases_created_brin SET (autosummarize = on);
ALTER INDEX returns_created_brin SET (autosummarize = on);
SELECT brin_summarize_new_values('ledger_time_brin'::regclass), brin_summarize_new_values('purchases_local_date_brin'::regclass),
    brin_summarize_new_values('idempotency_created_brin'::regclass), brin_summarize_new_values('purchases_created_brin'::regclass),
    brin_summarize_new_values('returns_created_brin'::regclass);

-- +goose Down
ALTER INDEX returns_created_brin RESET (autosummarize);
ALTER INDEX purchases_created_brin RESET (autosummarize);
ALTER INDEX idempotency_created_brin RESET (autosummarize);
ALTER INDEX purchases_local_date_brin RESET (autosummarize);
ALTER INDEX ledger_time_brin RESET (autosummarize);
