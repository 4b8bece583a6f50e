package loyalty

import "gorm.io/gorm"

// TraceStatements calls fn with the SQL of every statement the store runs
// from now on: on PostgreSQL every statement either pool sends (at the pgx
// level, transaction control included), on SQLite every statement GORM
// runs on the read and write handles. Tests count what an operation reads
// with it (a structural measure, not a timing).
func (s *Store) TraceStatements(fn func(sql string)) error {
	if s.tracer != nil {
		s.tracer.stmt.Store(&fn)
		return nil
	}
	seen := map[*gorm.DB]bool{}
	for _, db := range []*gorm.DB{s.w, s.r} {
		if db == nil || seen[db] {
			continue
		}
		seen[db] = true
		cb := func(tx *gorm.DB) { fn(tx.Statement.SQL.String()) }
		c := db.Callback()
		for _, err := range []error{
			c.Query().After("gorm:query").Register("loyalty:trace", cb),
			c.Row().After("gorm:row").Register("loyalty:trace", cb),
			c.Raw().After("gorm:raw").Register("loyalty:trace", cb),
			c.Create().After("gorm:create").Register("loyalty:trace", cb),
			c.Update().After("gorm:update").Register("loyalty:trace", cb),
			c.Delete().After("gorm:delete").Register("loyalty:trace", cb),
		} {
			if err != nil {
				return err
			}
		}
	}
	return nil
}
