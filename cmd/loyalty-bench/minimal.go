package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/loyalty-engine/loyalty/loyalty"
	"github.com/valyala/fasthttp"
)

// The minimal server is the engine's work over HTTP without the engine: a
// fasthttp server that takes the bench's own requests (the same bodies on
// the same paths, from the same clients) and answers them with the
// engine's statements on the engine's schema, and nothing else: no
// authentication, no validation beyond decoding, no rules (a point per
// dollar), no plan, no group commit, one transaction per purchase. What it
// reaches bounds what the engine could reach with its data model on this
// machine; the engine's figure beside it is what the engine itself costs.
//
//   - PostgreSQL: the engine-statements reference (engineref.go) with the
//     request's member, receipt and lines, in the same two pipelined round
//     trips; a balance read is the engine's one prepared statement.
//   - SQLite: one writer connection (BEGIN IMMEDIATE), the engine's fixed
//     texts (loyalty.SQLitePurchaseSQL): the receipt's record read, the
//     account's read, offers_version, one multi-row INSERT per table, the
//     balance row's UPDATE, the receipt's record, COMMIT; a balance read is
//     the engine's statement on a pool of readers.

// minimalPurchase is what the server decodes of a bench purchase.
type minimalPurchase struct {
	MemberID   string        `json:"member_id"`
	ExternalID string        `json:"external_id"`
	StoreID    string        `json:"store_id"`
	Channel    string        `json:"channel"`
	Currency   string        `json:"currency"`
	Total      int64         `json:"total"`
	Items      []minimalItem `json:"items"`
}

// minimalItem is a line of a purchase.
type minimalItem struct {
	SKU       string `json:"sku"`
	Category  string `json:"category"`
	Quantity  int64  `json:"quantity"`
	UnitPrice int64  `json:"unit_price"`
	Amount    int64  `json:"amount"`
}

// minimalAnswer is the purchase's answer: the fields a till reads.
type minimalAnswer struct {
	Purchase struct {
		ID         string `json:"id"`
		MemberID   string `json:"member_id"`
		StoreID    string `json:"store_id"`
		ExternalID string `json:"external_id"`
		Total      int64  `json:"total"`
	} `json:"purchase"`
	PointsEarned int64 `json:"points_earned"`
	Balance      struct {
		Available int64 `json:"available"`
		Version   int64 `json:"version"`
	} `json:"balance"`
}

// minimalBalance is a balance read's answer.
type minimalBalance struct {
	MemberID        string `json:"member_id"`
	Available       int64  `json:"available"`
	Pending         int64  `json:"pending"`
	LifetimeEarned  int64  `json:"lifetime_earned"`
	QualifyingSpend int64  `json:"qualifying_spend"`
	Version         int64  `json:"version"`
	AsOf            string `json:"as_of"`
}

type minimalStore interface {
	post(ctx context.Context, in *minimalPurchase, body []byte) (minimalAnswer, error)
	balance(ctx context.Context, member string) (minimalBalance, bool, error)
}

type minimalServer struct {
	ln    net.Listener
	srv   *fasthttp.Server
	store minimalStore
}

func startMinimal(store minimalStore) (*minimalServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &minimalServer{ln: ln, store: store}
	m.srv = &fasthttp.Server{Handler: m.handle, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	go func() { _ = m.srv.Serve(ln) }()
	return m, nil
}

func (m *minimalServer) addr() string { return m.ln.Addr().String() }

func (m *minimalServer) close() { _ = m.srv.Shutdown() }

func (m *minimalServer) handle(c *fasthttp.RequestCtx) {
	ctx := context.Background()
	path := string(c.Path())
	var (
		v   any
		st  = fasthttp.StatusOK
		err error
	)
	switch {
	case c.IsPost() && path == "/v1/purchases":
		var in minimalPurchase
		if err = json.Unmarshal(c.PostBody(), &in); err == nil {
			v, err = m.store.post(ctx, &in, c.PostBody())
			st = fasthttp.StatusCreated
		}
	case c.IsGet() && strings.HasPrefix(path, "/v1/members/") && strings.HasSuffix(path, "/balance"):
		var b minimalBalance
		var found bool
		b, found, err = m.store.balance(ctx, strings.TrimSuffix(strings.TrimPrefix(path, "/v1/members/"), "/balance"))
		if err == nil && !found {
			c.SetStatusCode(fasthttp.StatusNotFound)
			return
		}
		v = b
	default:
		c.SetStatusCode(fasthttp.StatusNotFound)
		return
	}
	if err != nil {
		c.SetStatusCode(fasthttp.StatusInternalServerError)
		c.SetBodyString(err.Error())
		return
	}
	out, err := json.Marshal(v)
	if err != nil {
		c.SetStatusCode(fasthttp.StatusInternalServerError)
		return
	}
	c.SetStatusCode(st)
	c.SetContentType("application/json")
	c.SetBody(out)
}

// minimalEngine points the bench's clients at the minimal server: the
// reference's members, as many stores as the engine's run had.
func minimalEngine(addr string, members []string, stores int, timeout time.Duration) *engine {
	e := &engine{addr: addr, timeout: timeout, categories: benchCategories, runID: "M" + strconv.FormatInt(time.Now().UnixNano(), 36),
		memberIDs: members, loadN: len(members), memberAuth: make([][]byte, len(members)),
		expected: make([]atomic.Int64, len(members)), uncertain: make([]atomic.Bool, len(members))}
	for i := 0; i < stores; i++ {
		e.stores = append(e.stores, fmt.Sprintf("store-%02d", i+1))
		e.posAuth = append(e.posAuth, nil)
	}
	return e
}

// refMembers are the ids the references seed: ref-1 … ref-n.
func refMembers(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "ref-" + strconv.Itoa(i+1)
	}
	return ids
}

func requestHash(body []byte) string {
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:])
}

func minimalID(run string, seq int64, kind byte) string {
	return run + string(kind) + strconv.FormatInt(seq, 36)
}

// post is a purchase of in through the engine's PostgreSQL statements.
func (r *pgEngineRef) post(ctx context.Context, in *minimalPurchase, body []byte) (ans minimalAnswer, err error) {
	s := loyalty.PGPurchaseSQL
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return ans, err
	}
	defer conn.Release()
	defer func() {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			if _, rerr := conn.Exec(ctx, "rollback"); rerr != nil {
				_ = conn.Conn().Close(ctx)
			}
		}
	}()
	now := time.Now().UTC().Truncate(time.Microsecond)
	scope, key, hash := "purchase:"+in.StoreID, in.ExternalID, requestHash(body)

	b := &pgx.Batch{}
	b.Queue("begin")
	b.Queue(s.Claimed, scope, key)
	b.Queue(s.Lock, in.MemberID)
	var points, version int64
	err = func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		var h, resp string
		var st int
		if err := br.QueryRow().Scan(&h, &st, &resp); !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("receipt %s: %v", key, err)
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		found := false
		for rows.Next() {
			// The two numbers the purchase needs, as they come (binary
			// int8), and nothing decoded of the rest.
			raw := rows.RawValues()
			points, version = int64(binary.BigEndian.Uint64(raw[14])), int64(binary.BigEndian.Uint64(raw[19]))
			found = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if !found {
			return errors.New("no member " + in.MemberID)
		}
		return nil
	}()
	if err != nil {
		return ans, err
	}

	seq := r.seq.Add(1)
	pid, eid, lid := minimalID(r.run, seq, 'p'), minimalID(r.run, seq, 'e'), minimalID(r.run, seq, 'l')
	earned := in.Total / 100
	exp := now.AddDate(1, 0, 0)
	pts := points + earned
	n := len(in.Items)
	ip, il, isku, icat := make([]string, n), make([]int64, n), make([]string, n), make([]string, n)
	iq, iu, ia := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, it := range in.Items {
		ip[i], il[i], isku[i], icat[i], iq[i], iu[i], ia[i] = pid, int64(i+1), it.SKU, it.Category, it.Quantity, it.UnitPrice, it.Amount
	}
	ext, tier := in.ExternalID, (*string)(nil)
	ans.Purchase.ID, ans.Purchase.MemberID, ans.Purchase.StoreID, ans.Purchase.ExternalID, ans.Purchase.Total =
		pid, in.MemberID, in.StoreID, in.ExternalID, in.Total
	ans.PointsEarned, ans.Balance.Available, ans.Balance.Version = earned, pts, version+1
	answer, err := json.Marshal(ans)
	if err != nil {
		return ans, err
	}
	// The events the engine writes with a purchase (§14): purchase.created
	// with the answer, balance.changed with the balance.
	bal, err := json.Marshal(ans.Balance)
	if err != nil {
		return ans, err
	}
	b = &pgx.Batch{}
	b.Queue(s.Write,
		[]string{pid}, []string{in.MemberID}, []string{in.StoreID}, []*string{&ext}, []string{in.Channel}, []time.Time{now},
		[]string{now.Format("2006-01-02")}, []int64{now.Unix() / 86400}, []string{in.Currency}, []int64{in.Total}, []int64{0},
		[]int64{earned}, []int64{0}, []*string{tier}, []time.Time{now},
		ip, il, isku, icat, iq, iu, ia,
		[]string{eid}, []string{in.MemberID}, []string{"earn"}, []int64{earned}, []time.Time{now}, []time.Time{now},
		[]*time.Time{&exp}, []*string{&pid}, []*string{nil}, []*string{nil}, []*string{nil}, []string{"purchase " + pid},
		[]time.Time{now},
		[]string{lid}, []string{eid}, []string{in.MemberID}, []int64{earned}, []int64{earned}, []time.Time{now}, []*time.Time{&exp},
		[]time.Time{now},
		[]string{}, []string{}, []string{}, []int64{}, []time.Time{},
		"", now, in.MemberID, false,
		pts, int64(0), pts, int64(0), &now, version+1, now, pts, int64(0), in.Total, "[]", now, &exp, int64(0), in.MemberID,
		[]string{"purchase.created", "balance.changed"}, []*string{&in.MemberID, &in.MemberID}, []time.Time{now, now},
		[]string{string(answer), string(bal)})
	b.Queue(s.Record, scope, key, hash, 1, string(answer), now)
	b.Queue("commit")
	br := conn.SendBatch(ctx, b)
	tag, err := br.Exec()
	if err == nil && tag.RowsAffected() != 1 {
		err = fmt.Errorf("balance of %s: %d rows updated", in.MemberID, tag.RowsAffected())
	}
	for k := 0; k < 2 && err == nil; k++ {
		_, err = br.Exec()
	}
	return ans, errors.Join(err, br.Close())
}

// balance is a balance read through the engine's prepared statement.
func (r *pgEngineRef) balance(ctx context.Context, member string) (minimalBalance, bool, error) {
	return scanBalance(member, r.pool.QueryRow(ctx, loyalty.PGPurchaseSQL.Balance, member).Scan)
}

// scanBalance reads the row of the engine's balance statement into its
// answer; found is false when the member has none.
func scanBalance(member string, scan func(dest ...any) error) (b minimalBalance, found bool, err error) {
	var (
		cfg, debt, redeemed, bcfg  int64
		status, expiring           string
		tier                       *string
		last, next                 *time.Time
		asOf                       time.Time
		openAvailable, openPending int64
	)
	err = scan(&cfg, &status, &tier, &debt, &b.LifetimeEarned, &redeemed, &last, &b.Version, &openAvailable, &openPending,
		&b.QualifyingSpend, &expiring, &asOf, &next, &bcfg)
	if errors.Is(err, pgx.ErrNoRows) || errors.Is(err, sql.ErrNoRows) {
		return b, false, nil
	}
	b.MemberID, b.Available, b.Pending, b.AsOf = member, openAvailable-debt, openPending, asOf.UTC().Format(time.RFC3339Nano)
	return b, err == nil, err
}

// liteMinimal is the minimal server's SQLite store: a file migrated with
// the engine's migrations, one writer connection, a pool of readers.
type liteMinimal struct {
	w, r    *sql.DB
	stmts   map[string]*sql.Stmt
	run     string
	seq     atomic.Int64
	members int
}

func openLiteMinimal(ctx context.Context, path string, members, readers int) (*liteMinimal, error) {
	st, err := loyalty.Open(ctx, "sqlite://"+path)
	if err != nil {
		return nil, err
	}
	err = st.Migrate(ctx)
	st.Close()
	if err != nil {
		return nil, fmt.Errorf("minimal SQLite: migrate: %w", err)
	}
	// As the store opens its own (loyalty/store.go).
	base := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)" +
		"&_texttotime=1&_inttotime=1&_time_format=sqlite"
	w, err := sql.Open("sqlite", base+"&_txlock=immediate&_pragma=temp_store(MEMORY)")
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(readers)
	l := &liteMinimal{w: w, r: r, stmts: map[string]*sql.Stmt{}, run: strconv.FormatInt(time.Now().UnixNano(), 36), members: members}
	now := time.Now().UTC()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO program (id, name, currency, points_per_unit, pending_days, expiry_policy, expiry_days, tier_period,
			tier_window_days, timezone, birthday_gift, segments, churn, version, updated_at)
			VALUES (1, 'ref', 'USD', '1', 0, 'lot', 365, 'rolling', 365, 'UTC', '{}', '[]', '{}', 1, ?) ON CONFLICT (id) DO NOTHING`, []any{now}},
		{`WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?)
			INSERT INTO members (id, status, enrolled_at, updated_at) SELECT 'ref-' || i, 'active', ?, ? FROM g`, []any{members, now, now}},
		{`INSERT INTO member_balances (member_id, points, debt, lifetime_earned, lifetime_redeemed, version, updated_at, as_of)
			SELECT id, 0, 0, 0, 0, 1, ?, ? FROM members`, []any{now, now}},
	} {
		if _, err := w.ExecContext(ctx, q.sql, q.args...); err != nil {
			l.close()
			return nil, fmt.Errorf("minimal SQLite: %s: %w", firstLine(q.sql), err)
		}
	}
	if err := l.prepare(ctx); err != nil {
		l.close()
		return nil, fmt.Errorf("minimal SQLite: prepare: %w", err)
	}
	return l, nil
}

// prepare prepares the purchase's texts on the writer, before any
// transaction holds its one connection (lines: 1 to 5, as the bench sends).
func (l *liteMinimal) prepare(ctx context.Context) error {
	s := loyalty.SQLitePurchaseSQL
	qs := []string{s.Recorded, s.Lock, s.OffersVersion, s.Insert("purchases", 1), s.Insert("ledger_entries", 1),
		s.Insert("lots", 1), s.BalanceUpdate, s.Record}
	for n := 1; n <= 5; n++ {
		qs = append(qs, s.Insert("purchase_items", n))
	}
	for _, q := range qs {
		st, err := l.w.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		l.stmts[q] = st
	}
	return nil
}

// stmt is q prepared on the writer, bound to tx; a text not prepared runs
// as it is.
func (l *liteMinimal) stmt(ctx context.Context, tx *sql.Tx, q string) *sql.Stmt {
	if s, ok := l.stmts[q]; ok {
		return tx.StmtContext(ctx, s)
	}
	return nil
}

func (l *liteMinimal) post(ctx context.Context, in *minimalPurchase, body []byte) (ans minimalAnswer, err error) {
	s := loyalty.SQLitePurchaseSQL
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return ans, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	// The statements were prepared before the load (prepare): a prepare
	// now would wait for the writer's one connection, which tx holds.
	exec := func(q string, args ...any) (sql.Result, error) {
		if st := l.stmt(ctx, tx, q); st != nil {
			return st.ExecContext(ctx, args...)
		}
		return tx.ExecContext(ctx, q, args...)
	}
	query := func(q string, args ...any) (*sql.Rows, error) {
		if st := l.stmt(ctx, tx, q); st != nil {
			return st.QueryContext(ctx, args...)
		}
		return tx.QueryContext(ctx, q, args...)
	}
	now := time.Now().UTC()
	scope, key, hash := "purchase:"+in.StoreID, in.ExternalID, requestHash(body)
	rows, err := query(s.Recorded, scope, key)
	if err != nil {
		return ans, err
	}
	seen := rows.Next()
	if err = errors.Join(rows.Err(), rows.Close()); err != nil {
		return ans, err
	}
	if seen {
		return ans, fmt.Errorf("receipt %s already recorded", key)
	}
	if rows, err = query(s.Lock, in.MemberID); err != nil {
		return ans, err
	}
	var points, version int64
	found := rows.Next()
	if found {
		cols := make([]any, 29)
		dest := make([]any, len(cols))
		for i := range cols {
			dest[i] = &cols[i]
		}
		if err = rows.Scan(dest...); err == nil {
			points, _ = cols[14].(int64)
			version, _ = cols[19].(int64)
		}
	}
	if err = errors.Join(err, rows.Err(), rows.Close()); err != nil {
		return ans, err
	}
	if !found {
		return ans, errors.New("no member " + in.MemberID)
	}
	if rows, err = query(s.OffersVersion); err != nil {
		return ans, err
	}
	for rows.Next() {
	}
	if err = errors.Join(rows.Err(), rows.Close()); err != nil {
		return ans, err
	}

	seq := l.seq.Add(1)
	pid, eid, lid := minimalID(l.run, seq, 'p'), minimalID(l.run, seq, 'e'), minimalID(l.run, seq, 'l')
	earned := in.Total / 100
	exp := now.AddDate(1, 0, 0)
	pts := points + earned
	if _, err = exec(s.Insert("purchases", 1), pid, in.MemberID, in.StoreID, in.ExternalID, in.Channel, now, now.Format("2006-01-02"),
		now.Unix()/86400, in.Currency, in.Total, 0, earned, 0, nil, now); err != nil {
		return ans, err
	}
	items := make([]any, 0, 7*len(in.Items))
	for i, it := range in.Items {
		items = append(items, pid, i+1, it.SKU, it.Category, it.Quantity, it.UnitPrice, it.Amount)
	}
	if _, err = exec(s.Insert("purchase_items", len(in.Items)), items...); err != nil {
		return ans, err
	}
	if _, err = exec(s.Insert("ledger_entries", 1), eid, in.MemberID, "earn", earned, now, now, exp, pid, nil, nil, nil,
		"purchase "+pid, now); err != nil {
		return ans, err
	}
	if _, err = exec(s.Insert("lots", 1), lid, eid, in.MemberID, earned, earned, now, exp, now); err != nil {
		return ans, err
	}
	res, err := exec(s.BalanceUpdate, pts, 0, pts, 0, now, version+1, now, in.MemberID, pts, 0, in.Total, "[]", now, exp, 0)
	if err != nil {
		return ans, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ans, fmt.Errorf("balance of %s: %d rows updated", in.MemberID, n)
	}
	ans.Purchase.ID, ans.Purchase.MemberID, ans.Purchase.StoreID, ans.Purchase.ExternalID, ans.Purchase.Total =
		pid, in.MemberID, in.StoreID, in.ExternalID, in.Total
	ans.PointsEarned, ans.Balance.Available, ans.Balance.Version = earned, pts, version+1
	answer, err := json.Marshal(ans)
	if err != nil {
		return ans, err
	}
	// The events the engine writes with a purchase (§14).
	bal, err := json.Marshal(ans.Balance)
	if err != nil {
		return ans, err
	}
	if _, err = exec(s.Insert("events", 2), "purchase.created", in.MemberID, now, string(answer),
		"balance.changed", in.MemberID, now, string(bal)); err != nil {
		return ans, err
	}
	if _, err = exec(s.Record, scope, key, hash, 1, string(answer), now, nil); err != nil {
		return ans, err
	}
	return ans, tx.Commit()
}

func (l *liteMinimal) balance(ctx context.Context, member string) (minimalBalance, bool, error) {
	return scanBalance(member, l.r.QueryRowContext(ctx, loyalty.SQLitePurchaseSQL.Balance, member).Scan)
}

// check confirms the minimal server kept the books: every balance equals
// the sum of its ledger entries and of its open lots.
func (l *liteMinimal) check(ctx context.Context) error {
	var bad int64
	err := l.r.QueryRowContext(ctx, `SELECT count(*) FROM member_balances b WHERE b.points <>
		(SELECT coalesce(sum(points), 0) FROM ledger_entries e WHERE e.member_id = b.member_id)
		OR b.points <> (SELECT coalesce(sum(remaining), 0) FROM lots l WHERE l.member_id = b.member_id)`).Scan(&bad)
	return refBooks(bad, err)
}

func (l *liteMinimal) close() {
	for _, s := range l.stmts {
		_ = s.Close()
	}
	_ = l.w.Close()
	_ = l.r.Close()
}
