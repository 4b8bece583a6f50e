package loyalty

import (
	"errors"
	"fmt"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// UpdateRow is the read-modify-write of one row by its primary key, the
// shape of every edit of a reward, an offer, a template, a tier or the
// program. It reads the row locked until the transaction ends (FOR UPDATE
// on PostgreSQL; on SQLite the IMMEDIATE write transaction already holds
// the database's write lock), lets change modify it, and writes back only
// the columns change altered.
//
// Both halves matter. Without the lock, two edits read the same row and
// the later write puts back what the earlier one changed; without the
// column list, an edit writes back every column it read, among them those
// other statements keep on their own, such as a reward's stock that each
// redemption takes with stock = stock - 1 and each cancel gives back.
//
// It returns the row as read and as written, gorm.ErrRecordNotFound when
// no row has the key, and change's error as it is.
func UpdateRow[T any](tx *gorm.DB, key any, change func(row *T) error) (before, after T, err error) {
	return UpdateRowByKey(tx, []any{key}, change)
}

// UpdateRowByKey is UpdateRow for a row whose primary key has several
// columns: key holds their values in the order of T's primary key fields.
func UpdateRowByKey[T any](tx *gorm.DB, key []any, change func(row *T) error) (before, after T, err error) {
	sch, err := schemaOf(tx, &after)
	if err != nil {
		return before, after, err
	}
	if len(sch.PrimaryFields) != len(key) {
		return before, after, fmt.Errorf("update %s: %d primary key columns, %d values", sch.Table, len(sch.PrimaryFields), len(key))
	}
	pk := make([]clause.Expression, len(key))
	for i, f := range sch.PrimaryFields {
		pk[i] = clause.Eq{Column: clause.Column{Name: f.DBName}, Value: key[i]}
	}
	if err := forUpdate(tx).Where(clause.And(pk...)).Take(&after).Error; err != nil {
		return before, after, err
	}
	before = clone(after)
	if err := change(&after); err != nil {
		return before, after, err
	}
	return before, after, updateChanged(tx, &before, &after)
}

// updateChanged writes the columns in which after differs from before to
// the row before names by its primary key. It writes exactly those: GORM's
// own update time is not added, the caller's (the transaction's clock) is
// the one stored.
func updateChanged[T any](tx *gorm.DB, before, after *T) error {
	sch, err := schemaOf(tx, after)
	if err != nil {
		return err
	}
	ctx := tx.Statement.Context
	b, a := reflect.ValueOf(before).Elem(), reflect.ValueOf(after).Elem()
	set := map[string]any{}
	for _, f := range sch.Fields {
		if f.DBName == "" {
			continue
		}
		old, _ := f.ValueOf(ctx, b)
		v, _ := f.ValueOf(ctx, a)
		if !reflect.DeepEqual(old, v) {
			if f.PrimaryKey {
				return fmt.Errorf("update %s: the primary key cannot change", sch.Table)
			}
			set[f.DBName] = v
		}
	}
	if len(set) == 0 {
		return nil
	}
	where := make([]clause.Expression, 0, len(sch.PrimaryFields))
	for _, f := range sch.PrimaryFields {
		v, _ := f.ValueOf(ctx, b)
		where = append(where, clause.Eq{Column: clause.Column{Name: f.DBName}, Value: v})
	}
	res := tx.Model(new(T)).Where(clause.And(where...)).UpdateColumns(set)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected != 1 {
		return fmt.Errorf("update %s: %d rows changed, want 1", sch.Table, res.RowsAffected)
	}
	return nil
}

// clone copies a row with its own copy of every pointed-to value, so a
// change made through a pointer field (*row.Stock = 0) still shows as a
// change against the copy.
func clone[T any](row T) T {
	out := row
	v := reflect.ValueOf(&out).Elem()
	if v.Kind() != reflect.Struct {
		return out
	}
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.Kind() == reflect.Pointer && !f.IsNil() && f.CanSet() {
			p := reflect.New(f.Type().Elem())
			p.Elem().Set(f.Elem())
			f.Set(p)
		}
	}
	return out
}

// schemaOf parses the GORM schema of a row type without touching tx's own
// statement.
func schemaOf(tx *gorm.DB, row any) (*schema.Schema, error) {
	stmt := &gorm.Statement{DB: tx}
	if err := stmt.Parse(row); err != nil {
		return nil, err
	}
	if stmt.Schema == nil {
		return nil, errors.New("parse schema: no schema")
	}
	return stmt.Schema, nil
}
