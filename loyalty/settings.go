package loyalty

import (
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/loyalty-engine/loyalty/tiers"
)

// settings is the program and its tiers, parsed, as of one config_version.
// Every purchase, quote and balance needs them; parsing them (decimals,
// JSON, the timezone) and reading the tiers cost more than the rest of a
// balance read, so each store keeps the last version it read and checks it
// is still current with one primary-key read of config_version, which
// schema triggers advance on every change to the program row or the tiers
// (migration 00006), whichever engine makes it.
type settings struct {
	version int64
	prog    *Program
	tiers   []Tier
	ladder  tiers.Ladder
}

// settingsCache hangs off the store's GORM configuration (shared by its
// write and read handles) as a plugin, so that code holding only a
// transaction reaches the cache of the store it belongs to.
type settingsCache struct{ cur atomic.Pointer[settings] }

const settingsPlugin = "loyalty:settings"

func (*settingsCache) Name() string                 { return settingsPlugin }
func (*settingsCache) Initialize(db *gorm.DB) error { return nil }

// cacheOf is the settings cache of the store db belongs to; nil for a
// handle not opened by Open.
func cacheOf(db *gorm.DB) *settingsCache {
	c, _ := db.Config.Plugins[settingsPlugin].(*settingsCache)
	return c
}

// last is the settings kept, nil before the first read.
func (c *settingsCache) last() *settings {
	if c == nil {
		return nil
	}
	return c.cur.Load()
}

// loadSettings returns the program and tiers as tx sees them. The result is
// shared: callers must not change it (loadProgram and loadTiers copy).
func loadSettings(tx *gorm.DB) (*settings, error) {
	var version int64
	if err := tx.Raw("SELECT config_version FROM program WHERE id = 1").Scan(&version).Error; err != nil {
		return nil, err
	}
	return settingsAt(tx, version)
}

// settingsAt returns the settings of config_version version, read in tx:
// from memory when they are the ones kept, else read afresh.
func settingsAt(tx *gorm.DB, version int64) (*settings, error) {
	cache := cacheOf(tx)
	if c := cache.last(); c != nil && c.version == version {
		return c, nil
	}
	prog, err := readProgram(tx)
	if err != nil {
		return nil, err
	}
	ts, ladder, err := readTiers(tx)
	if err != nil {
		return nil, err
	}
	c := &settings{version: version, prog: prog, tiers: ts, ladder: ladder}
	// Outside a snapshot a change may have committed between the reads:
	// keep what was read only if the version still stands.
	var again int64
	if err := tx.Raw("SELECT config_version FROM program WHERE id = 1").Scan(&again).Error; err != nil {
		return nil, err
	}
	if cache != nil && again == version {
		// In a write transaction the version may be this transaction's
		// own change, which a rollback would undo and a later change
		// number again: keep it only once committed.
		afterCommit(tx, func() {
			if old := cache.last(); old == nil || old.version <= version {
				cache.cur.Store(c)
			}
		})
	}
	return c, nil
}

// loadProgram returns the settings as tx sees them, a copy the caller may
// change.
func loadProgram(tx *gorm.DB) (*Program, error) {
	c, err := loadSettings(tx)
	if err != nil {
		return nil, err
	}
	p := *c.prog
	p.BirthdayGift.RewardIDs = append([]string{}, c.prog.BirthdayGift.RewardIDs...)
	return &p, nil
}

// loadTiers returns the tiers by rank and their ladder as tx sees them,
// copies the caller may change.
func loadTiers(tx *gorm.DB) ([]Tier, tiers.Ladder, error) {
	c, err := loadSettings(tx)
	if err != nil {
		return nil, nil, err
	}
	return append([]Tier(nil), c.tiers...), append(tiers.Ladder(nil), c.ladder...), nil
}

// locations caches time.LoadLocation, which reads and parses the zone
// data on every call.
var locations sync.Map // name → *time.Location

func loadLocation(name string) (*time.Location, error) {
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations.Store(name, l)
	return l, nil
}
