package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdstest"
)

// replicaKey is the webhook key of the replicas tests.
const replicaKey = "replicas-test-webhook-key"

// replicas runs n server processes on one database and restarts any of
// them on demand; senders read the current addresses.
type replicas struct {
	t     *testing.T
	bin   string
	env   []string
	mu    sync.Mutex
	procs []*server
	addrs []string
}

func startReplicas(t *testing.T, bin string, n int, env ...string) *replicas {
	r := &replicas{t: t, bin: bin, env: env, procs: make([]*server, n), addrs: make([]string, n)}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { r.start(i) })
	}
	wg.Wait()
	return r
}

// start runs replica i and records its address once it listens.
func (r *replicas) start(i int) {
	cmd := exec.Command(r.bin)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, r.env...)
	s, addr := startServer(r.t, cmd)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs[i], r.addrs[i] = s, "http://"+addr
}

// kill sends SIGKILL to replica i and waits until it is gone.
func (r *replicas) kill(i int) {
	r.mu.Lock()
	s := r.procs[i]
	r.mu.Unlock()
	require.NoError(r.t, s.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		r.t.Fatal("a killed replica did not exit")
	}
}

// pid is replica i's process id.
func (r *replicas) pid(i int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.procs[i].cmd.Process.Pid
}

// addr is a random replica's base URL (maybe one just killed).
func (r *replicas) addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addrs[rand.IntN(len(r.addrs))]
}

// replicaEnv is the settings of replicas on dbURL: fast failover, so that
// a test waits seconds, not minutes, for a killed replica's jobs and lead.
func replicaEnv(dbURL string, extra ...string) []string {
	return append([]string{
		"TDS_ADDR=127.0.0.1:0", "TDS_DATABASE_URL=" + dbURL, "TDS_WEBHOOK_KEYS=" + replicaKey,
		"TDS_ADMIN_TOKEN=replicas-test-admin-token", "TDS_WORKERS=4", "TDS_DB_MAX_CONNS=12",
		"TDS_LEADER_LEASE=1s", "TDS_LEASE_DURATION=2s", "TDS_HOUSEKEEPING_INTERVAL=300ms",
	}, extra...)
}

// TestReplicasUnderKill runs three server processes on one PostgreSQL,
// directly (LISTEN wake-ups) and through PgBouncer in transaction mode
// (poll-only), with 16 senders spread over them, kills each replica in turn
// with SIGKILL under load and restarts it, then checks that every acked
// webhook is in the inbox and its entity's mirror, no event was queued
// twice, nothing was dead-lettered, and each entity holds its newest
// version although its versions arrived out of order over the replicas.
func TestReplicasUnderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three server processes")
	}
	eachPooling(t, replicasUnderKill)
}

// eachPooling builds the server and runs fn as parallel subtests on a
// fresh PostgreSQL database: "postgres", directly with LISTEN wake-ups,
// and "pgbouncer", through PgBouncer in transaction mode with
// TDS_POLL_ONLY, extra being the settings that mode adds.
func eachPooling(t *testing.T, fn func(t *testing.T, bin, dbURL string, extra ...string)) {
	bin := buildServer(t)
	for _, mode := range []string{"postgres", "pgbouncer"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			if mode == "pgbouncer" {
				fn(t, bin, tdstest.PostgresURL(t, tdstest.ThroughPgBouncer()), "TDS_POLL_ONLY=true")
				return
			}
			fn(t, bin, tdstest.PostgresURL(t))
		})
	}
}

// buildServer builds the server binary into the test's directory.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tds-server")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// sent is an entity's version as the senders number them.
type sent struct {
	entity string
	v      int
}

var versionBase = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func replicasUnderKill(t *testing.T, bin, dbURL string, extra ...string) {
	const (
		senders  = 16
		entities = 24
		perKill  = 250 // acks between two kills
	)
	r := startReplicas(t, bin, 3, replicaEnv(dbURL, extra...)...)

	var (
		next   atomic.Int64 // numbers the webhooks: entity next%entities, version next/entities
		acks   atomic.Int64
		ackMu  sync.Mutex
		acked  = map[sent]bool{}
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		client = &http.Client{Timeout: 10 * time.Second}
	)
	send := func(n int64) {
		e, v := fmt.Sprintf("P%02d", n%entities), int(n/entities)+1
		at := versionBase.Add(time.Duration(v) * time.Second).Format("2006-01-02T15:04:05-0700")
		body := fmt.Sprintf(`{"event_type":"update","entity_type":"product","entity_id":%q,"data":{"item_id":%q,"name":"v%d","last_modified_time":%q}}`, e, e, v, at)
		// As a sender does: on no answer or a 5xx, again, maybe to
		// another replica, until one acks; the body is unchanged, so a
		// redelivery of what was stored is a duplicate.
		for attempt := 0; ; attempt++ {
			req, _ := http.NewRequest(http.MethodPost, r.addr()+"/webhooks/products", bytes.NewReader([]byte(body)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Webhook-Key", replicaKey)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusAccepted {
					ackMu.Lock()
					acked[sent{e, v}] = true
					ackMu.Unlock()
					acks.Add(1)
					return
				}
				if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
					t.Errorf("webhook %s v%d: %s", e, v, resp.Status)
					return
				}
			}
			select {
			case <-stop:
				if attempt > 50 {
					return // not acked: not promised
				}
			default:
			}
			time.Sleep(time.Duration(10+rand.IntN(20)) * time.Millisecond) // a sender's backoff, not synchronisation
		}
	}
	for range senders {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				send(next.Add(1) - 1)
			}
		})
	}
	waitAcks := func(n int64) {
		deadline := time.Now().Add(2 * time.Minute)
		for acks.Load() < n {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("only %d of %d webhooks acked after 2m", acks.Load(), n)
			}
			time.Sleep(5 * time.Millisecond) // polling a counter with a deadline
		}
	}
	for i := range 3 {
		waitAcks(int64(i+1) * perKill)
		r.kill(i)
		r.start(i)
	}
	waitAcks(4 * perKill)
	close(stop)
	wg.Wait()

	ctx := context.Background()
	db, err := tds.Open(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()
	drained(t, db, 2*time.Minute, r)

	// Every acked version is in the inbox.
	var stored []struct {
		EntityID string    `bun:"source_entity_id"`
		At       time.Time `bun:"source_modified_at"`
	}
	require.NoError(t, db.NewRaw("SELECT source_entity_id, source_modified_at FROM tds_inbox_events WHERE entity_type = 'product'").Scan(ctx, &stored))
	inInbox := map[sent]bool{}
	newest := map[string]int{}
	for _, s := range stored {
		v := int(s.At.Sub(versionBase) / time.Second)
		inInbox[sent{s.EntityID, v}] = true
		newest[s.EntityID] = max(newest[s.EntityID], v)
	}
	newestAcked := map[string]int{}
	for a := range acked {
		require.True(t, inInbox[a], "acked %s v%d is not in the inbox", a.entity, a.v)
		newestAcked[a.entity] = max(newestAcked[a.entity], a.v)
	}
	require.Len(t, stored, len(inInbox), "a version stored twice")

	// Nothing queued twice, nothing dead-lettered, every job completed.
	var twice, notDone int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM (SELECT inbox_event_id FROM tds_sync_queue GROUP BY inbox_event_id HAVING COUNT(*) > 1) d").Scan(&twice))
	require.Zero(t, twice, "events queued twice")
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM tds_sync_queue WHERE status <> 'completed'").Scan(&notDone))
	require.Zero(t, notDone, "jobs not completed (dead letters included)")

	// Each entity's mirror row is its newest stored version, at least its
	// newest acked one.
	var rows []struct {
		EntityID string    `bun:"entity_id"`
		At       time.Time `bun:"source_modified_at"`
	}
	require.NoError(t, db.NewRaw("SELECT entity_id, source_modified_at FROM products").Scan(ctx, &rows))
	require.Len(t, rows, len(newest))
	for _, row := range rows {
		v := int(row.At.Sub(versionBase) / time.Second)
		require.Equal(t, newest[row.EntityID], v, "entity %s", row.EntityID)
		require.GreaterOrEqual(t, v, newestAcked[row.EntityID], "entity %s", row.EntityID)
	}
	t.Logf("%d webhooks acked, %d versions stored, over %d entities", len(acked), len(stored), len(rows))
}

// drained waits until no job is pending, running or waiting to retry,
// showing the replicas' output if they never finish.
func drained(t *testing.T, db *bun.DB, within time.Duration, r *replicas) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			for i := range r.procs {
				t.Logf("replica %d:\n%s", i, r.procs[i].output())
			}
		}
	})
	waitFor(t, within, "every job to finish", func() bool {
		var n int
		require.NoError(t, db.QueryRowContext(context.Background(),
			"SELECT COUNT(*) FROM tds_sync_queue WHERE status IN ('pending', 'processing', 'retry')").Scan(&n))
		return n == 0
	})
}

// alertLog records the alerts a receiver was sent, per fingerprint.
type alertLog struct {
	mu   sync.Mutex
	sent map[string][]string // "rule{entity_type}" → statuses in order
}

func (l *alertLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var msg struct {
		Alerts []struct {
			Status string            `json:"status"`
			Labels map[string]string `json:"labels"`
		} `json:"alerts"`
	}
	if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range msg.Alerts {
		k := a.Labels["alertname"] + "{" + a.Labels["entity_type"] + "}"
		l.sent[k] = append(l.sent[k], a.Status)
	}
}

func (l *alertLog) of(k string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sent[k])
}

// TestReplicasAlertFailover: with three replicas evaluating one rule
// (dead_letters), a dead letter is notified firing once and resolved once,
// although the leader that notified it and the next one are killed with
// SIGKILL before it resolves; each new leader takes the lead within the
// lease and evaluates at once, and finds the alert already notified.
func TestReplicasAlertFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three server processes")
	}
	eachPooling(t, alertFailover)
}

func alertFailover(t *testing.T, bin, dbURL string, extra ...string) {
	ctx := context.Background()
	log := &alertLog{sent: map[string][]string{}}
	receiver := httptest.NewServer(log)
	defer receiver.Close()
	r := startReplicas(t, bin, 3, replicaEnv(dbURL, append(extra,
		"TDS_ALERT_WEBHOOK_URL="+receiver.URL, "TDS_ALERT_EVAL_INTERVAL=100ms")...)...)
	db, err := tds.Open(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()

	// deadLetter stores a webhook of route for id, waits for its job to
	// complete, and turns the job into a dead letter as a failed sync would.
	deadLetter := func(route, idField, id, extraFields string) int64 {
		body := fmt.Sprintf(`{"event_type":"update","entity_type":%q,"entity_id":%q,"data":{%q:%q%s}}`,
			strings.TrimSuffix(route, "s"), id, idField, id, extraFields)
		req, _ := http.NewRequest(http.MethodPost, r.addr()+"/webhooks/"+route, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Webhook-Key", replicaKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var job int64
		waitFor(t, time.Minute, "the job to complete", func() bool {
			err := db.QueryRowContext(ctx, "SELECT id FROM tds_sync_queue WHERE source_entity_id = ? AND status = 'completed'", id).Scan(&job)
			return err == nil
		})
		_, err = db.ExecContext(ctx, "UPDATE tds_sync_queue SET status = 'dead_letter', last_error = 'failed for the test', last_error_code = 'TEST' WHERE id = ?", job)
		require.NoError(t, err)
		return job
	}
	leader := func() (holder string, replica int) {
		err := db.QueryRowContext(ctx, "SELECT holder FROM tds_leader WHERE name = 'housekeeping'").Scan(&holder)
		require.NoError(t, err)
		for i := range 3 {
			if strings.Contains(holder, fmt.Sprintf(":%d:", r.pid(i))) {
				return holder, i
			}
		}
		t.Fatalf("leader %q is none of the replicas", holder)
		return "", -1
	}
	// killLeader kills the leading replica, restarts it, and waits until
	// another holder leads.
	killLeader := func() {
		old, i := leader()
		r.kill(i)
		r.start(i)
		waitFor(t, time.Minute, "a new leader", func() bool {
			var h string
			err := db.QueryRowContext(ctx, "SELECT holder FROM tds_leader WHERE name = 'housekeeping' AND expires_at > now()").Scan(&h)
			return err == nil && h != old
		})
	}

	const product = "dead_letters{product}"
	job := deadLetter("products", "item_id", "AF1", `,"name":"Pump"`)
	waitFor(t, time.Minute, "the firing notification", func() bool { return len(log.of(product)) == 1 })
	killLeader()
	killLeader()
	// The dead letter is retried through the console of any replica.
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/admin/dead-letters/%d/retry", r.addr(), job), strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer replicas-test-admin-token")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	waitFor(t, time.Minute, "the resolved notification", func() bool { return len(log.of(product)) == 2 })
	// A barrier: another entity type's dead letter fires, so the leader has
	// evaluated after the resolution; a repeated notification of the first
	// alert would have been sent by then.
	deadLetter("customers", "contact_id", "AF2", `,"contact_name":"Ann"`)
	waitFor(t, time.Minute, "the barrier's notification", func() bool { return len(log.of("dead_letters{customer}")) == 1 })
	require.Equal(t, []string{"firing", "resolved"}, log.of(product))
}

// waitFor polls cond every 20 ms for up to within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}
