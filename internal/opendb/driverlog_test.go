package opendb

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun/driver/pgdriver"
)

// syncBuffer is a log destination safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSetDriverLogger: pgdriver's and bun's own lines come out of the
// slog.Logger given, as JSON at WARN, and a second call moves them to the
// new logger. Not parallel: the drivers' loggers belong to the process.
func TestSetDriverLogger(t *testing.T) {
	var first, second syncBuffer
	SetDriverLogger(slog.New(slog.NewJSONHandler(&first, nil)))
	pgdriver.Logger.Printf(context.Background(), "bun: discarding bad listener connection: %s", "EOF")

	var line map[string]any
	require.NoError(t, json.Unmarshal(bytes.TrimSpace([]byte(first.String())), &line), first.String())
	require.Equal(t, "WARN", line["level"])
	require.Equal(t, "bun: discarding bad listener connection: EOF", line["msg"])
	require.Equal(t, "pgdriver", line["driver"])

	SetDriverLogger(slog.New(slog.NewJSONHandler(&second, nil)))
	pgdriver.Logger.Printf(context.Background(), "pgdriver: Conn.Write failed (zero-length): %s", "broken pipe")
	require.Contains(t, second.String(), `"msg":"pgdriver: Conn.Write failed (zero-length): broken pipe"`)
	require.NotContains(t, first.String(), "broken pipe")
}
