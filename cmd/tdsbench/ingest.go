package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
)

const benchKey = "tdsbench-webhook-key"

// productBody is a distinct, valid product webhook.
func productBody(run string, n int64, modified time.Time) []byte {
	id := fmt.Sprintf("%s-%d", run, n)
	return fmt.Appendf(nil, `{"event_type":"update","entity_type":"product","entity_id":%q,`+
		`"data":{"item_id":%q,"name":"Bench item %d","sku":"B-%d","rate":12.5,"stock_on_hand":3,`+
		`"last_modified_time":%q}}`, id, id, n, n, modified.Format(tds.ZohoTimeLayout))
}

// server serves h on a loopback port until stop is called.
type server struct {
	URL  string
	srv  *http.Server
	done chan struct{}
}

func serve(h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{URL: "http://" + ln.Addr().String(), srv: &http.Server{Handler: h}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *server) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
}

func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
		},
	}
}

// post sends one webhook and reports whether it was accepted (200).
func post(ctx context.Context, c *http.Client, url string, body []byte) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Webhook-Key", benchKey)
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK, nil
}

type throughput struct {
	events   int64
	elapsed  time.Duration
	p50, p99 time.Duration
	errors   int64
}

func (t throughput) rate() float64 { return float64(t.events) / t.elapsed.Seconds() }

// closedLoop runs senders goroutines calling op back to back for dur.
func closedLoop(ctx context.Context, senders int, dur time.Duration, op func(ctx context.Context, n int64) error) throughput {
	var (
		seq, ok, bad atomic.Int64
		wg           sync.WaitGroup
		lat          = make(latencies, senders)
	)
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	start := time.Now()
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := op(ctx, seq.Add(1)); err != nil {
					if ctx.Err() == nil {
						bad.Add(1)
					}
					continue
				}
				lat[s] = append(lat[s], time.Since(t0))
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	all := lat.sorted()
	return throughput{events: ok.Load(), elapsed: time.Since(start), p50: percentile(all, 50),
		p99: percentile(all, 99), errors: bad.Load()}
}

// ingest posts distinct webhooks to the real Handler over loopback HTTP.
func ingest(ctx context.Context, db *bun.DB, senders int, dur time.Duration, tr *tracing, opts ...tds.Option) (throughput, error) {
	h, err := tds.NewHandler(db, append([]tds.Option{tds.WithWebhookKeys(benchKey)}, opts...)...)
	if err != nil {
		return throughput{}, err
	}
	defer h.Close()
	srv, err := serve(tr.wrap(h))
	if err != nil {
		return throughput{}, err
	}
	defer srv.stop()
	client := newClient(senders)
	url := srv.URL + "/webhooks/products"
	run := fmt.Sprintf("ingest%d", time.Now().UnixNano())
	modified := time.Now()
	var firstErr atomic.Value
	t := closedLoop(ctx, senders, dur, func(ctx context.Context, n int64) error {
		accepted, err := post(ctx, client, url, productBody(run, n, modified))
		if err == nil && !accepted {
			err = fmt.Errorf("webhook %d not accepted", n)
		}
		if err != nil && ctx.Err() == nil {
			firstErr.CompareAndSwap(nil, err)
		}
		return err
	})
	if t.errors > 0 {
		return t, fmt.Errorf("%d webhooks failed, first: %v", t.errors, firstErr.Load())
	}
	return t, nil
}

// baseline is the least a durable receiver does: one transaction per event
// inserting one inbox row and one queue row, through the same driver.
func baseline(ctx context.Context, db *bun.DB, senders int, dur time.Duration) (throughput, error) {
	run := fmt.Sprintf("base%d", time.Now().UnixNano())
	now := time.Now().UTC()
	return closedLoop(ctx, senders, dur, func(ctx context.Context, n int64) error {
		id := fmt.Sprintf("%s-%d", run, n)
		body := productBody(run, n, now)
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			var eventID int64
			if err := tx.NewRaw(`INSERT INTO tds_inbox_events (source, event_type, entity_type, source_entity_id,
				idempotency_key, content_hash, payload, source_modified_at, received_at, is_valid, moved_to_queue)
				VALUES ('zoho', 'update', 'product', ?, ?, 'x', ?, ?, ?, TRUE, TRUE) RETURNING id`,
				id, id, string(body), now, now).Scan(ctx, &eventID); err != nil {
				return err
			}
			_, err := tx.NewRaw(`INSERT INTO tds_sync_queue (inbox_event_id, source, event_type, entity_type,
				source_entity_id, status, priority, max_retry_attempts, next_retry_at, created_at, updated_at)
				VALUES (?, 'zoho', 'update', 'product', ?, 'pending', 5, 3, ?, ?, ?)`,
				eventID, id, now, now, now).Exec(ctx)
			return err
		})
	}), nil
}
