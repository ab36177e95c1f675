package tds

import (
	"context"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/tdscore/tds/internal/notify"
)

// notifyChannel is the PostgreSQL LISTEN/NOTIFY channel on which enqueues
// wake idle workers.
const notifyChannel = "tds_sync_queue"

// notifyQueued tells idle workers that db has new jobs. On PostgreSQL it
// runs pg_notify in db, which, inside a transaction, is delivered only when
// the transaction commits (and not at all if it rolls back). On SQLite it
// signals the workers of this process that use the same database handle;
// a worker woken before the commit waits for the single connection and so
// sees the job. Polling remains the fallback either way.
func notifyQueued(ctx context.Context, db bun.IDB) error {
	if isPostgres(db) {
		_, err := db.ExecContext(ctx, "SELECT pg_notify(?, '')", notifyChannel)
		return err
	}
	notify.Default.Signal(db.Dialect())
	return nil
}

// subscribe makes wake receive a value when jobs are enqueued, until ctx is
// done or the returned function is called.
func (w *Worker) subscribe(ctx context.Context, wake chan<- struct{}) func() {
	if !isPostgres(w.db) {
		ch, cancel := notify.Default.Subscribe(w.db.Dialect())
		go forward(ctx, ch, wake)
		return cancel
	}
	if _, ok := w.db.Driver().(pgdriver.Driver); !ok {
		w.log.Info("tds: the database driver is not pgdriver; polling only")
		return func() {}
	}
	ln := pgdriver.NewListener(w.db)
	if err := ln.Listen(ctx, notifyChannel); err != nil {
		w.log.Warn("tds: listening for enqueues failed; polling only", "err", err)
		_ = ln.Close()
		return func() {}
	}
	ch := make(chan struct{}, 1)
	lctx, cancel := context.WithCancel(ctx)
	go func() {
		// The listener's channel pings the server and reconnects on its own.
		for range ln.Channel(pgdriver.WithChannelSize(16)) {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	go forward(lctx, ch, wake)
	return func() {
		cancel()
		_ = ln.Close()
	}
}

func forward(ctx context.Context, from <-chan struct{}, to chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-from:
			select {
			case to <- struct{}{}:
			default:
			}
		}
	}
}
