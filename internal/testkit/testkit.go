// Package testkit holds the test helpers shared by the tests of tds'
// packages that need no database of their own: a settable clock, a log
// buffer, a child process of the test binary and small assertions. It
// imports no tds package, so the root's internal tests may use it too.
package testkit

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock at 2026-11-20 10:00 UTC.
func NewClock() *Clock {
	return &Clock{now: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// LogBuffer is a log destination whose output tests can read, safe for
// concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf []byte
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// String returns what was written.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// Reset forgets what was written.
func (b *LogBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = b.buf[:0]
}

// Logger is a text logger writing to b.
func (b *LogBuffer) Logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// Count runs a COUNT query and returns its result.
func Count(t testing.TB, db bun.IDB, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRowContext(context.Background(), query, args...).Scan(&n))
	return n
}

// RequireSameTime asserts two times are the same instant (databases give
// back times in their own location).
func RequireSameTime(t testing.TB, want, got time.Time, msgAndArgs ...any) {
	t.Helper()
	require.True(t, want.Equal(got), append([]any{"want %s, got %s", want, got}, msgAndArgs...)...)
}

// Child is the test binary started as a child process, talking with the
// test through lines on its stdin and stdout.
type Child struct {
	Cmd    *exec.Cmd
	Stdin  io.WriteCloser
	Stdout *bufio.Reader
	Stderr *strings.Builder
}

// StartChild starts the test binary as a child process running no test,
// with env added to the environment (its TestMain picks a mode from it);
// it is killed when the test ends.
func StartChild(t testing.TB, env ...string) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	c := &Child{Cmd: cmd, Stdin: stdin, Stdout: bufio.NewReader(stdout), Stderr: new(strings.Builder)}
	cmd.Stderr = c.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return c
}

// Release is a barrier across processes: it waits for a "READY" line from
// each child, then writes a "GO" line to each, so that they go on
// together.
func Release(t testing.TB, children ...*Child) {
	t.Helper()
	for _, c := range children {
		line, err := c.Stdout.ReadString('\n')
		require.NoError(t, err, "child stderr: %s", c.Stderr)
		require.Equal(t, "READY\n", line)
	}
	for _, c := range children {
		_, err := io.WriteString(c.Stdin, "GO\n")
		require.NoError(t, err)
	}
}
