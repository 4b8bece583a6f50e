package loyalty

import (
	"context"
	"database/sql"
	"sync"

	"gorm.io/gorm"
)

// stmtPool is a SQLite connection pool that prepares each distinct SQL
// text once and reuses it, inside transactions too. SQLite compiles every
// statement it is given; on the purchase path that compiling cost as much
// as running the statements. (GORM's own PrepareStmt caches a statement
// first met inside a transaction on that transaction, so it is compiled
// again in the next one. PostgreSQL needs neither: pgx keeps its own
// per-connection cache of prepared statements.)
//
// A statement is prepared on the pool; a transaction uses it through
// Tx.StmtContext, which reuses the compiled form when the transaction's
// connection already holds one, as the single writer connection always
// does after the first use. A text first met inside a transaction runs
// unprepared there and is prepared before the next transaction begins:
// preparing needs a connection, and the writer's only one is the
// transaction's own.
type stmtPool struct {
	db      *sql.DB
	mu      sync.RWMutex
	stmts   map[string]*sql.Stmt // nil: could not be prepared, run as is
	pending map[string]bool
}

// maxCachedStmts bounds the cache; statements beyond it run unprepared.
// The engine issues a few hundred distinct texts; a text with a variable
// IN list can make more.
const maxCachedStmts = 1024

func newStmtPool(db *sql.DB) *stmtPool {
	return &stmtPool{db: db, stmts: map[string]*sql.Stmt{}, pending: map[string]bool{}}
}

// cached returns the prepared statement for query, or nil after noting the
// text to be prepared before the next transaction.
func (p *stmtPool) cached(query string) *sql.Stmt {
	p.mu.RLock()
	st, ok := p.stmts[query]
	p.mu.RUnlock()
	if ok {
		return st
	}
	p.mu.Lock()
	if _, ok := p.stmts[query]; !ok && len(p.stmts)+len(p.pending) < maxCachedStmts {
		p.pending[query] = true
	}
	p.mu.Unlock()
	return nil
}

// preparePending prepares the texts noted since the last call. It holds no
// lock while preparing, which may wait for a connection.
func (p *stmtPool) preparePending(ctx context.Context) {
	p.mu.RLock()
	n := len(p.pending)
	p.mu.RUnlock()
	if n == 0 {
		return
	}
	p.mu.Lock()
	queries := make([]string, 0, len(p.pending))
	for q := range p.pending {
		queries = append(queries, q)
	}
	clear(p.pending)
	p.mu.Unlock()
	for _, q := range queries {
		st, err := p.db.PrepareContext(ctx, q)
		if err != nil {
			st = nil
		}
		p.mu.Lock()
		if _, ok := p.stmts[q]; ok && st != nil {
			_ = st.Close()
		} else {
			p.stmts[q] = st
		}
		p.mu.Unlock()
	}
}

func (p *stmtPool) stmt(ctx context.Context, query string) *sql.Stmt {
	p.preparePending(ctx)
	return p.cached(query)
}

func (p *stmtPool) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return p.db.PrepareContext(ctx, query)
}

func (p *stmtPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return p.db.ExecContext(ctx, query, args...)
}

func (p *stmtPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.db.QueryContext(ctx, query, args...)
}

func (p *stmtPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.db.QueryRowContext(ctx, query, args...)
}

// BeginTx starts a transaction whose statements come from the cache.
func (p *stmtPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	p.preparePending(ctx)
	tx, err := p.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &stmtTx{Tx: tx, pool: p}, nil
}

// GetDBConn gives GORM (and Store.sqlDBs) the underlying pool.
func (p *stmtPool) GetDBConn() (*sql.DB, error) { return p.db, nil }

// close releases the prepared statements.
func (p *stmtPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for q, st := range p.stmts {
		if st != nil {
			_ = st.Close()
		}
		delete(p.stmts, q)
	}
}

type stmtTx struct {
	*sql.Tx
	pool *stmtPool
}

func (t *stmtTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.pool.cached(query); st != nil {
		return t.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *stmtTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.pool.cached(query); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t *stmtTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.pool.cached(query); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}
