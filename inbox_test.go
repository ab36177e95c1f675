package tds

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestInboxRedactsSecretHeaders(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		p := newTestProcessor(t, tdb.db, WithRedactHeaders("X-Tenant-Secret-Id", "X-Internal"))
		ev := fixture(t, "product.json")
		ev.Metadata = RequestMetadata{
			Headers: map[string][]string{
				"X-Webhook-Key":            {"key-AAAA"},
				"authorization":            {"Bearer tok-BBBB"},
				"Cookie":                   {"session=CCCC"},
				"X-Zoho-Webhook-Signature": {"sig-DDDD"},
				"Webhook-Signature":        {"v1,EEEE"},
				"X-Custom-Signature":       {"FFFF"},
				"X-Internal":               {"GGGG"},
				"Content-Type":             {"application/json"},
				"User-Agent":               {"Zoho-Webhook/1.0"},
			},
			ClientIP:          "203.0.113.7",
			SignatureVerified: true,
			Verifier:          "webhook-key",
		}
		res, err := p.Process(ctx, ev)
		require.NoError(t, err)

		var raw string
		require.NoError(t, tdb.db.QueryRowContext(ctx,
			"SELECT CAST(request_metadata AS TEXT) FROM tds_inbox_events WHERE id = ?", res.EventID).Scan(&raw))
		for _, secret := range []string{"AAAA", "BBBB", "CCCC", "DDDD", "EEEE", "FFFF", "GGGG"} {
			require.NotContains(t, raw, secret)
		}
		var md RequestMetadata
		require.NoError(t, json.Unmarshal([]byte(raw), &md))
		require.Equal(t, []string{Redacted}, md.Headers["X-Webhook-Key"])
		require.Equal(t, []string{Redacted}, md.Headers["Authorization"])
		require.Equal(t, []string{"application/json"}, md.Headers["Content-Type"])
		require.Equal(t, "203.0.113.7", md.ClientIP)
		require.True(t, md.SignatureVerified)
		require.Equal(t, "webhook-key", md.Verifier)
		// The caller's event is not modified.
		require.Equal(t, []string{"key-AAAA"}, ev.Metadata.Headers["X-Webhook-Key"])
	})
}

func TestInboxLifecycle(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		clock := newTestClock()
		in, err := NewInbox(tdb.db, WithClock(clock.Now))
		require.NoError(t, err)

		ev := fixture(t, "stock.json")
		stored, dup, err := in.Store(ctx, ev)
		require.NoError(t, err)
		require.False(t, dup)
		require.NotZero(t, stored.ID)
		require.False(t, stored.IsValid)
		require.Equal(t, "2026-11-20T04:51:07Z", stored.Version.Format("2006-01-02T15:04:05Z07:00"),
			"version is data.last_modified_time")
		require.Equal(t, clock.Now(), stored.ReceivedAt)

		again, dup, err := in.Store(ctx, fixture(t, "stock.json"))
		require.NoError(t, err)
		require.True(t, dup)
		require.Equal(t, stored.ID, again.ID)

		ok, err := in.HasContentHash(ctx, stored.ContentHash)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = in.HasContentHash(ctx, "0000")
		require.NoError(t, err)
		require.False(t, ok)

		errs := ValidationErrors{{Field: "data.a", Message: "is required"}, {Field: "data.b", Message: "is required"}}
		require.NoError(t, in.MarkValidated(ctx, stored.ID, errs))
		got, err := in.Get(ctx, stored.ID)
		require.NoError(t, err)
		require.False(t, got.IsValid)
		require.Equal(t, errs, got.ValidationErrors)

		require.NoError(t, in.MarkValidated(ctx, stored.ID, nil))
		require.NoError(t, in.MarkQueued(ctx, stored.ID))
		got, err = in.Get(ctx, stored.ID)
		require.NoError(t, err)
		require.True(t, got.IsValid)
		require.Empty(t, got.ValidationErrors)
		require.True(t, got.MovedToQueue)

		// A second event without last_modified_time is versioned by its arrival.
		clock.Advance(time.Minute)
		second, _, err := in.Store(ctx, productEvent("77", "Valve"))
		require.NoError(t, err)
		require.Equal(t, clock.Now(), second.Version)

		list, err := in.ListUnprocessed(ctx, 10)
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.Equal(t, stored.ID, list[0].ID)

		require.NoError(t, in.MarkProcessed(ctx, stored.ID))
		list, err = in.ListUnprocessed(ctx, 10)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, second.ID, list[0].ID)

		st, err := in.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, InboxStats{Total: 2, Valid: 1, Invalid: 1, Queued: 1, Unprocessed: 1,
			OldestAt: st.OldestAt, NewestAt: st.NewestAt}, *st)
		requireSameTime(t, stored.ReceivedAt, *st.OldestAt)
		requireSameTime(t, second.ReceivedAt, *st.NewestAt)

		_, err = in.Get(ctx, 999999)
		require.ErrorIs(t, err, ErrNotFound)
		require.ErrorIs(t, in.MarkProcessed(ctx, 999999), ErrNotFound)
	})
}

func TestIdempotencyKeyEscapesSeparators(t *testing.T) {
	t.Parallel()
	a := IdempotencyKey("zoho", &Event{EntityType: "a:b", EntityID: "c", EventType: "update"}, "h")
	b := IdempotencyKey("zoho", &Event{EntityType: "a", EntityID: "b:c", EventType: "update"}, "h")
	require.NotEqual(t, a, b)
	require.Equal(t, "zoho:product:123456:update:h:abc",
		IdempotencyKey("zoho", &Event{EntityType: "product", EntityID: "123456", EventType: "update"}, "abc"))
}

// The stored headers are capped at MaxStoredHeaderBytes: the largest go
// first, and their names are recorded.
func TestInboxCapsStoredHeaders(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		p := newTestProcessor(t, tdb.db)
		ev := fixture(t, "product.json")
		headers := map[string][]string{
			"User-Agent":    {"Zoho-Webhook/1.0"},
			"X-Large":       {strings.Repeat("a", 3000), strings.Repeat("b", 2000)},
			"X-Larger":      {strings.Repeat("c", 6000)},
			"X-Webhook-Key": {strings.Repeat("k", 9000)}, // redacted first, so small
			"X-Medium":      {strings.Repeat("d", 2500)},
		}
		ev.Metadata = RequestMetadata{Headers: headers}
		res, err := p.Process(ctx, ev)
		require.NoError(t, err)
		got, err := NewInboxOrFail(t, tdb).Get(ctx, res.EventID)
		require.NoError(t, err)
		md := got.RequestMetadata
		require.Equal(t, []string{"X-Larger"}, md.DroppedHeaders)
		require.Equal(t, []string{"User-Agent", "X-Large", "X-Medium", "X-Webhook-Key"}, slices.Sorted(maps.Keys(md.Headers)))
		require.Equal(t, []string{Redacted}, md.Headers["X-Webhook-Key"])
		require.Len(t, headers, 5, "the caller's headers are not modified")

		// Small headers are all kept, and nothing is said to be dropped.
		ev = fixture(t, "customer.json")
		ev.Metadata = RequestMetadata{Headers: map[string][]string{"X-A": {strings.Repeat("a", MaxStoredHeaderBytes-3)}}}
		res, err = p.Process(ctx, ev)
		require.NoError(t, err)
		got, err = NewInboxOrFail(t, tdb).Get(ctx, res.EventID)
		require.NoError(t, err)
		require.Nil(t, got.RequestMetadata.DroppedHeaders)
		require.Len(t, got.RequestMetadata.Headers, 1)
	})
}

func TestCapHeaders(t *testing.T) {
	h := map[string][]string{"A": {strings.Repeat("x", 5000)}, "B": {strings.Repeat("x", 5000)}, "C": {"c"}}
	out, dropped := capHeaders(h)
	require.Equal(t, []string{"A"}, dropped, "equal sizes: the first name goes")
	require.Equal(t, []string{"B", "C"}, slices.Sorted(maps.Keys(out)))
	require.Len(t, h, 3)
	out, dropped = capHeaders(nil)
	require.Nil(t, out)
	require.Nil(t, dropped)
}
