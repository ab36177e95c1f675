package tds

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	neturl "net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// queryCounter is a TCP proxy in front of PostgreSQL that counts the
// simple-protocol queries ('Q' messages) clients send: with pgdriver, one
// per round trip.
type queryCounter struct {
	ln      net.Listener
	target  string
	queries atomic.Int64
	wg      sync.WaitGroup
}

func newQueryCounter(t *testing.T, target string) *queryCounter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &queryCounter{ln: ln, target: target}
	c.wg.Go(c.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		c.wg.Wait()
	})
	return c
}

func (c *queryCounter) accept() {
	var conns sync.WaitGroup
	defer conns.Wait()
	var open []net.Conn
	var mu sync.Mutex
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, cn := range open {
			_ = cn.Close()
		}
	}()
	for {
		client, err := c.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", c.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		mu.Lock()
		open = append(open, client, server)
		mu.Unlock()
		conns.Go(func() {
			_, _ = io.Copy(client, server)
			_ = client.Close()
		})
		conns.Go(func() {
			_ = c.count(client, server)
			_ = server.Close()
		})
	}
}

// count copies the client's messages to the server, counting queries.
func (c *queryCounter) count(client io.Reader, server io.Writer) error {
	var head [5]byte
	// The startup message has no type byte.
	if _, err := io.ReadFull(client, head[:4]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(head[:4])
	if _, err := server.Write(head[:4]); err != nil {
		return err
	}
	if _, err := io.CopyN(server, client, int64(n)-4); err != nil {
		return err
	}
	for {
		if _, err := io.ReadFull(client, head[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if head[0] == 'Q' {
			c.queries.Add(1)
		}
		n := binary.BigEndian.Uint32(head[1:])
		if _, err := server.Write(head[:]); err != nil {
			return err
		}
		if _, err := io.CopyN(server, client, int64(n)-4); err != nil {
			return err
		}
	}
}

// One webhook's way on PostgreSQL, from the Processor to its job's
// commit, in round trips: the ingest statement, the NOTIFY for other
// processes, the claim, and the batch (BEGIN, the Syncer's upsert, the
// completion, COMMIT). Each of them is one message; the worker does not
// claim again after a batch that only completed its job.
func TestOneWebhookRoundTrips(t *testing.T) {
	t.Parallel()
	tdb := openTestDB(t, "postgres")
	u, err := neturl.Parse(tdb.url)
	require.NoError(t, err)
	proxy := newQueryCounter(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	db, err := Open(t.Context(), u.String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	p, err := NewProcessor(db)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	require.NoError(t, MigrateMirror(t.Context(), db, ZohoRegistry()))
	mirror, err := NewMirrorSyncer()
	require.NoError(t, err)
	_, synced := runSyncing(t, db, mirror, WithHousekeepingInterval(time.Hour), WithLeaderLease(time.Hour))
	// The second event is counted, the first warms the connections.
	for i, id := range []string{"1", "2"} {
		_ = p.Close() // its NOTIFYs sent
		before := proxy.queries.Load()
		_, err := p.Process(t.Context(), productEvent(id, "Pump"))
		require.NoError(t, err)
		synced(id)
		_ = p.Close()
		if i == 1 {
			require.Equal(t, int64(7), proxy.queries.Load()-before,
				"round trips from Process to the job's commit")
		}
	}
}
