package tds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Per-entity order. The jobs of one entity (source, entity type, entity
// id) are synced one at a time, in the order they were enqueued. What keeps
// it so is the blocked flag: every entity with unfinished jobs has exactly
// one that is not blocked, its head, and only heads are claimed.
//
//   - A job that becomes unfinished (enqueued, or a dead letter retried) is
//     blocked if its entity has a head already.
//   - A head that finishes (completed, dead-lettered) unblocks its entity's
//     oldest blocked job.
//   - Claims, retries and hand-backs keep a head the head.
//
// The first two read the entity's jobs and must see every change made to
// them before: on PostgreSQL both run under the entity's transaction-scoped
// advisory lock and read with a snapshot taken after it was granted; on
// SQLite the single writer orders them. The claim then needs no look at
// other jobs of the entity, so its cost does not grow with the backlog.

// entityKey names an entity.
type entityKey struct {
	source, entityType, entityID string
}

func jobEntity(j *Job) entityKey { return entityKey{j.Source, j.EntityType, j.SourceEntityID} }

func eventEntity(e *InboxEvent) entityKey { return entityKey{e.Source, e.EntityType, e.SourceEntityID} }

// entityLockClass is the first key of the transaction-scoped advisory locks
// that serialise, per entity, what changes the entity's head ("tdse").
const entityLockClass = 0x74647365

// entityLockKeys returns the second keys of the advisory locks of the
// entities, deduplicated and in ascending order, so that transactions
// taking several never deadlock on each other.
func entityLockKeys(keys []entityKey) []int32 {
	out := make([]int32, 0, len(keys))
	for _, k := range keys {
		h := fnv.New32a()
		for _, part := range []string{k.source, k.entityType, k.entityID} {
			h.Write([]byte(part))
			h.Write([]byte{0})
		}
		out = append(out, int32(h.Sum32()))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// lockEntitiesSQL takes the entity locks of a key array in one statement.
const lockEntitiesSQL = `SELECT count(pg_advisory_xact_lock(?, k)) FROM unnest(?::int4[]) AS k`

// errNeedsReadCommitted refuses a transaction whose later statements would
// not see what committed under the entity locks.
var errNeedsReadCommitted = errors.New("tds: changing an entity's line of jobs needs READ COMMITTED isolation")

// lockEntities takes, on PostgreSQL, the advisory locks of the entities in
// tx, held until it ends. It is a statement of its own so that the
// statements after it read with snapshots taken once the locks are held,
// which requires READ COMMITTED: at another isolation level it fails.
// SQLite needs no lock: its writer is alone.
func lockEntities(ctx context.Context, tx bun.IDB, keys []entityKey) error {
	if !isPostgres(tx) || len(keys) == 0 {
		return nil
	}
	var level string
	if err := tx.QueryRowContext(ctx, `SELECT current_setting('transaction_isolation'), (`+lockEntitiesSQL+`)`,
		entityLockClass, pgdialect.Array(entityLockKeys(keys))).Scan(&level, new(int64)); err != nil {
		return err
	}
	if level != "read committed" {
		return fmt.Errorf("%w, not %s", errNeedsReadCommitted, level)
	}
	return nil
}

// readCommitted is how tds begins its own transactions: at READ COMMITTED
// on PostgreSQL, whatever the server's default (see lockEntities).
func readCommitted(db bun.IDB) *sql.TxOptions {
	if isPostgres(db) {
		return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	return nil
}

// entityHeadSQL is true when the entity of the queue row aliased %[1]s has
// a head other than the jobs listed in %[2]s (a list of ids, possibly just
// 0): an unfinished job that is not blocked. While the rules above hold, an
// entity has a head exactly when it has unfinished jobs; asking for the
// head rather than for any unfinished job lets a new job unstick an entity
// whose head was lost (rows deleted by hand).
//
// It is two probes, each meant for one partial index: the waiting jobs'
// and the few running ones'. They must go there whatever the statistics,
// which lag behind a burst: so they are scalar subqueries, not EXISTS,
// which PostgreSQL may turn into a hash of every waiting job built in each
// statement; and "blocked" is tested in a form that does not match the
// claim index's predicate, which would otherwise offer a scan of every
// claimable job. tds_busy_entities (migrations/postgres/0002) asks the
// same for ingestion, in the same form: keep the two alike.
const entityHeadSQL = `((SELECT 1 FROM tds_sync_queue AS hw
	WHERE hw.entity_type = %[1]s.entity_type AND hw.source_entity_id = %[1]s.source_entity_id
	AND hw.source = %[1]s.source AND hw.status IN ('pending', 'retry') AND (NOT hw.blocked) IS TRUE
	AND hw.id NOT IN (%[2]s) LIMIT 1) IS NOT NULL
OR (SELECT 1 FROM tds_sync_queue AS hr
	WHERE hr.entity_type = %[1]s.entity_type AND hr.source_entity_id = %[1]s.source_entity_id
	AND hr.source = %[1]s.source AND hr.status = 'processing' AND hr.id NOT IN (%[2]s) LIMIT 1) IS NOT NULL)`

// idList renders ids as a literal SQL list; "0" (no job) when empty.
func idList(ids []int64) string {
	if len(ids) == 0 {
		return "0"
	}
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d", id)
	}
	return b.String()
}

// unblockSQL unblocks, for the entity of each job listed in %[1]s, its
// oldest blocked job, unless the entity still has a head other than the
// finishing jobs (%[2]s), which the statement's snapshot may still show
// unfinished. That second test never fails while the rules above hold; it
// keeps a slip from making two heads. The slots around the candidates are
// as in claimSQL: on PostgreSQL they go through ARRAY() so that the
// UPDATE finds them by primary key whatever the statistics say.
var unblockSQL = `UPDATE tds_sync_queue SET blocked = FALSE, updated_at = ?
WHERE id {in}
	SELECT (SELECT b.id FROM tds_sync_queue AS b
		WHERE b.blocked AND b.entity_type = f.entity_type
		AND b.source_entity_id = f.source_entity_id AND b.source = f.source
		ORDER BY b.id LIMIT 1)
	FROM tds_sync_queue AS f WHERE f.id IN (%[1]s){end}
AND NOT ` + fmt.Sprintf(entityHeadSQL, "tds_sync_queue", "%[2]s")

var (
	unblockPG     = strings.NewReplacer("{in}", "= ANY(ARRAY(", "{end}", "))").Replace(unblockSQL)
	unblockSQLite = strings.NewReplacer("{in}", "IN (", "{end}", ")").Replace(unblockSQL)
)

// unblockNext hands the head of the entity of each job in of on to the
// entity's oldest blocked job, after the jobs finishing (their ids) stopped
// being unfinished in tx, which must hold the entities' locks
// (lockEntities). It returns how many jobs it unblocked.
func unblockNext(ctx context.Context, tx bun.IDB, of, finishing []int64, now time.Time) (int64, error) {
	if len(of) == 0 {
		return 0, nil
	}
	q := unblockSQLite
	if isPostgres(tx) {
		q = unblockPG
	}
	res, err := tx.ExecContext(ctx, fmt.Sprintf(q, idList(of), idList(finishing)), now)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// entityValues renders keys, deduplicated, as the rows of a VALUES list
// and appends their arguments to args.
func entityValues(db bun.IDB, keys []entityKey, args []any) (string, []any) {
	var vals strings.Builder
	seen := make(map[entityKey]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		if len(seen) > 1 {
			vals.WriteString(", ")
		}
		if isPostgres(db) {
			vals.WriteString("(?::text, ?::text, ?::text)")
		} else {
			vals.WriteString("(?, ?, ?)")
		}
		args = append(args, k.source, k.entityType, k.entityID)
	}
	return vals.String(), args
}

// headsSQL selects the entities of a VALUES list (%s) that have a head.
var headsSQL = `WITH f (source, entity_type, source_entity_id) AS (VALUES %s)
SELECT f.source, f.entity_type, f.source_entity_id FROM f
WHERE ` + fmt.Sprintf(entityHeadSQL, "f", "0")

// blockBehindHeads sets the Blocked flag of jobs about to become
// unfinished, given in the order they are to run: a job is blocked when its
// entity has a head already, in db or earlier in jobs. On PostgreSQL db
// must hold the entities' locks (lockEntities).
func blockBehindHeads(ctx context.Context, db bun.IDB, jobs []*Job) error {
	if len(jobs) == 0 {
		return nil
	}
	keys := make([]entityKey, len(jobs))
	for i, j := range jobs {
		keys[i] = jobEntity(j)
	}
	vals, args := entityValues(db, keys, nil)
	var heads []struct {
		Source         string `bun:"source"`
		EntityType     string `bun:"entity_type"`
		SourceEntityID string `bun:"source_entity_id"`
	}
	if err := db.NewRaw(fmt.Sprintf(headsSQL, vals), args...).Scan(ctx, &heads); err != nil {
		return err
	}
	has := make(map[entityKey]bool, len(heads)+len(jobs))
	for _, h := range heads {
		has[entityKey{h.Source, h.EntityType, h.SourceEntityID}] = true
	}
	for i, j := range jobs {
		j.Blocked = has[keys[i]]
		has[keys[i]] = true
	}
	return nil
}
