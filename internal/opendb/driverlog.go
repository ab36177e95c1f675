package opendb

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"
)

// driverLog is where pgdriver's and bun's own messages go once
// SetDriverLogger has been called; nil discards nothing, it means the
// drivers' defaults were never replaced.
var (
	driverLog     atomic.Pointer[slog.Logger]
	installDriver sync.Once
)

// SetDriverLogger routes what pgdriver and bun print by themselves (a
// discarded LISTEN connection after a reconnect, a write failing on a bad
// connection, bun's warnings about models) through log at WARN, instead of
// their own plain-text lines on stderr, which a JSON log collector cannot
// parse.
//
// Both drivers keep one logger per process, in package variables: the
// last call wins for every *bun.DB. The variables are written once, on the
// first call (pgdriver reads its logger without synchronisation, from the
// connections' goroutines); later calls only swap the slog.Logger behind
// them.
func SetDriverLogger(log *slog.Logger) {
	driverLog.Store(log)
	installDriver.Do(func() {
		pgdriver.Logger = pgLogger{}
		bun.SetLogger(bunLogger{})
	})
}

// pgLogger is pgdriver's logging interface over driverLog.
type pgLogger struct{}

func (pgLogger) Printf(ctx context.Context, format string, v ...any) {
	logDriver(ctx, "pgdriver", fmt.Sprintf(format, v...))
}

// bunLogger is bun's logging interface over driverLog.
type bunLogger struct{}

func (bunLogger) Printf(format string, v ...any) {
	logDriver(context.Background(), "bun", fmt.Sprintf(format, v...))
}

// logDriver logs one driver message at WARN: what the drivers print is a
// connection lost or a misuse, never routine. The level words bun puts in
// front ("WARN: ", "DEPRECATED: ") are dropped, the level says it.
func logDriver(ctx context.Context, driver, msg string) {
	log := driverLog.Load()
	if log == nil {
		return
	}
	msg = strings.TrimPrefix(msg, "WARN: ")
	log.LogAttrs(ctx, slog.LevelWarn, strings.TrimSpace(msg), slog.String("driver", driver))
}
