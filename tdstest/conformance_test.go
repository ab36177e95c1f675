package tdstest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdstest"
)

// eachDB runs fn as a parallel subtest on a fresh database of each dialect.
func eachDB(t *testing.T, fn func(t *testing.T, db *bun.DB)) {
	for name, open := range map[string]func(testing.TB, ...tdstest.DBOption) *bun.DB{"postgres": tdstest.Postgres, "sqlite": tdstest.SQLite} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, open(t))
		})
	}
}

// mirrorSubject reads what MirrorSyncer holds for a product.
func mirrorSubject(t testing.TB, db *bun.DB) tdstest.Subject {
	reg := tds.ZohoRegistry()
	require.NoError(t, tds.MigrateMirror(t.Context(), db, reg))
	return tdstest.Subject{
		EntityType: "product",
		Read: func(ctx context.Context, db bun.IDB, id string) (tdstest.State, error) {
			var row struct {
				Data      string     `bun:"data"`
				Version   time.Time  `bun:"source_modified_at"`
				DeletedAt *time.Time `bun:"deleted_at"`
			}
			err := db.NewRaw(`SELECT data, source_modified_at, deleted_at FROM products WHERE entity_id = ?`, id).Scan(ctx, &row)
			if errors.Is(err, sql.ErrNoRows) {
				return tdstest.State{}, nil
			}
			return tdstest.State{Found: true, Deleted: row.DeletedAt != nil, Version: row.Version, Value: row.Data}, err
		},
	}
}

func TestSyncerConformanceMirrorSyncer(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *bun.DB) {
		m, err := tds.NewMirrorSyncer()
		require.NoError(t, err)
		tdstest.SyncerConformance(t, db, m, mirrorSubject(t, db))
	})
}

// kvSyncer is a Syncer such as a user writes, on a table of its own; each
// flag breaks one clause of the contract.
type kvSyncer struct {
	db *bun.DB
	kvFlaws

	mu   sync.Mutex
	seen map[string]time.Time
}

// kvFlaws are the ways a kvSyncer breaks the contract.
type kvFlaws struct {
	stampAttempt  bool // writes the attempt number: a redelivery changes the row
	ignoreVersion bool // writes whatever comes last
	ignoreDelete  bool // skips deletes
	cache         bool // remembers versions in memory, past a rollback
	outsideTx     bool // writes through the *bun.DB
}

const kvTable = `CREATE TABLE kv (id VARCHAR(200) PRIMARY KEY, version BIGINT NOT NULL, deleted INTEGER NOT NULL, data TEXT NOT NULL)`

func (s *kvSyncer) Sync(ctx context.Context, tx bun.Tx, job *tds.SyncJob) error {
	if s.ignoreDelete && job.EventType == tds.EventDelete {
		return nil
	}
	if s.cache {
		s.mu.Lock()
		defer s.mu.Unlock()
		if v, ok := s.seen[job.EntityID]; ok && !job.Version.After(v) {
			return nil
		}
		if s.seen == nil {
			s.seen = map[string]time.Time{}
		}
		s.seen[job.EntityID] = job.Version
	}
	data := string(job.Data)
	if s.stampAttempt {
		data = fmt.Sprintf("%s (attempt %d)", data, job.Attempt)
	}
	deleted := 0
	if job.EventType == tds.EventDelete {
		deleted = 1
	}
	q := `INSERT INTO kv (id, version, deleted, data) VALUES (?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, data = excluded.data`
	if !s.ignoreVersion {
		q += ` WHERE kv.version <= excluded.version`
	}
	var db bun.IDB = tx
	if s.outsideTx {
		db = s.db
	}
	_, err := db.NewRaw(q, job.EntityID, job.Version.UnixMicro(), deleted, data).Exec(ctx)
	return err
}

func kvSubject() tdstest.Subject {
	return tdstest.Subject{
		Read: func(ctx context.Context, db bun.IDB, id string) (tdstest.State, error) {
			var row struct {
				Version int64  `bun:"version"`
				Deleted int    `bun:"deleted"`
				Data    string `bun:"data"`
			}
			err := db.NewRaw(`SELECT version, deleted, data FROM kv WHERE id = ?`, id).Scan(ctx, &row)
			if errors.Is(err, sql.ErrNoRows) {
				return tdstest.State{}, nil
			}
			return tdstest.State{Found: true, Deleted: row.Deleted == 1, Version: time.UnixMicro(row.Version), Value: row.Data}, err
		},
	}
}

// recorder stands in for a test to collect what SyncerConformance reports.
type recorder struct {
	ctx  context.Context
	errs []string
}

func (r *recorder) Helper()                  {}
func (r *recorder) Context() context.Context { return r.ctx }
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestSyncerConformance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		flaw kvFlaws
		want string // in one of the reported failures; "" for none
	}{
		{name: "correct"},
		{"redelivery not idempotent", kvFlaws{stampAttempt: true}, "a redelivered job changes nothing: running job"},
		{"older version overwrites", kvFlaws{ignoreVersion: true}, "an older version never overwrites a newer one: an update at version"},
		{"delete ignored", kvFlaws{ignoreDelete: true}, "a delete is applied: after a delete"},
		{"cache survives rollback", kvFlaws{cache: true}, "an error rolls back the Syncer's own writes: the retry of a job whose transaction was rolled back was not applied"},
		{"writes outside the transaction", kvFlaws{outsideTx: true}, "writes go through the job's transaction only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachDB(t, func(t *testing.T, db *bun.DB) {
				_, err := db.ExecContext(t.Context(), kvTable)
				require.NoError(t, err)
				s := &kvSyncer{db: db, kvFlaws: tc.flaw}
				rec := &recorder{ctx: t.Context()}
				tdstest.SyncerConformance(rec, db, s, kvSubject())
				for _, e := range rec.errs {
					t.Log(e)
				}
				if tc.want == "" {
					require.Empty(t, rec.errs)
					return
				}
				require.NotEmpty(t, rec.errs, "the broken Syncer passed")
				found := false
				for _, e := range rec.errs {
					found = found || strings.Contains(e, tc.want)
				}
				require.True(t, found, "no failure reads %q", tc.want)
			})
		})
	}
}
