package loyalty

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
)

// A write transaction on PostgreSQL runs on a connection it holds from the
// pool (onConn), which its context carries: the statements that read
// thousands of rows a transaction (a job's catch-up of the balances it
// keeps) or send what database/sql cannot (COPY) go through pgx itself on
// that connection (withPGX), inside the same transaction, past
// database/sql's conversion of every value and GORM's reflection.

// txConnKey holds, in the context of a write on PostgreSQL, the connection
// its transaction runs on.
type txConnKey struct{}

// onConn runs fn with a handle on one connection of the write pool, whose
// context carries it for withPGX; fn begins its transaction on it.
func (s *Store) onConn(ctx context.Context, fn func(db *gorm.DB) error) error {
	return s.w.WithContext(ctx).Connection(func(db *gorm.DB) error {
		conn, ok := db.Statement.ConnPool.(*sql.Conn)
		if !ok {
			return fmt.Errorf("the store's connection is a %T", db.Statement.ConnPool)
		}
		return fn(db.Session(&gorm.Session{Context: context.WithValue(ctx, txConnKey{}, conn)}))
	})
}

// withPGX runs fn with the pgx connection under tx, a transaction begun on
// a connection of onConn, and reports true; outside one (SQLite, or a
// transaction begun elsewhere) it runs nothing and reports false.
func withPGX(tx *gorm.DB, fn func(ctx context.Context, c *pgx.Conn) error) (bool, error) {
	conn, ok := tx.Statement.Context.Value(txConnKey{}).(*sql.Conn)
	if !ok {
		return false, nil
	}
	return true, conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("the driver's connection is a %T", dc)
		}
		return fn(tx.Statement.Context, c.Conn())
	})
}
