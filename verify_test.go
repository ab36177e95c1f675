package tds

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The example published with the Standard Webhooks specification.
const (
	swExampleSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	swExampleID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	swExampleTimestamp = "1614265330"
	swExampleBody      = `{"test": 2432232314}`
	swExampleSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// Signatures computed here, independently of internal/verify.

func zohoSign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// zohoSignQuery signs params (sorted keyvalue pairs) then body, as
// documented on WithZohoSecret.
func zohoSignQuery(secret string, params url.Values, body []byte) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b []byte
	for _, k := range keys {
		for _, v := range params[k] {
			b = append(b, k+v...)
		}
	}
	return zohoSign(secret, append(b, body...))
}

func swSign(t testing.TB, secret, id, ts string, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(secret[len("whsec_"):])
	require.NoError(t, err)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "." + string(body)))
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// The names are part of the API: senders set the headers, and the
// verifier names are stored with every event.
func TestHeaderAndVerifierNames(t *testing.T) {
	t.Parallel()
	for got, want := range map[string]string{
		HeaderWebhookKey:         "X-Webhook-Key",
		HeaderZohoSignature:      "X-Zoho-Webhook-Signature",
		HeaderWebhookID:          "Webhook-Id",
		HeaderWebhookTimestamp:   "Webhook-Timestamp",
		HeaderWebhookSignature:   "Webhook-Signature",
		VerifierWebhookKey:       "webhook-key",
		VerifierZoho:             "zoho-signature",
		VerifierStandardWebhooks: "standard-webhooks",
	} {
		require.Equal(t, want, got)
	}
}

func TestWebhookSignedOverHTTP(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		clock := newTestClock()
		const zohoSecret = "zohoWebhookSecret2026"
		h := newTestHandler(t, tdb, WithZohoSecret(zohoSecret), WithStandardWebhooksSecrets(swExampleSecret),
			WithClock(clock.Now))
		body := fixtureBytes(t, "product.json")

		// Zoho: HMAC of the raw body.
		a := serve(t, h, "POST", "/webhooks/products", body, HeaderZohoSignature, zohoSign(zohoSecret, body))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		ev, err := NewInboxOrFail(t, tdb).Get(ctx, int64(a.body["event_id"].(float64)))
		require.NoError(t, err)
		require.Equal(t, VerifierZoho, ev.RequestMetadata.Verifier)
		require.True(t, ev.RequestMetadata.SignatureVerified)
		require.Equal(t, []string{Redacted}, ev.RequestMetadata.Headers[HeaderZohoSignature])
		requireError(t, serve(t, h, "POST", "/webhooks/products", body, HeaderZohoSignature, zohoSign("other", body)), 401, "invalid")
		requireError(t, serve(t, h, "POST", "/webhooks/products", body, HeaderWebhookKey, "a-key"), 401, "missing")

		// Standard Webhooks: the webhook-id is the delivery id, so a
		// redelivery (new timestamp, new signature) is a duplicate.
		cust := fixtureBytes(t, "customer.json")
		ts := strconv.FormatInt(clock.Now().Unix(), 10)
		a = serve(t, h, "POST", "/webhooks/customers", cust,
			"webhook-id", "msg_42", "webhook-timestamp", ts, "webhook-signature", swSign(t, swExampleSecret, "msg_42", ts, cust))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, "zoho:d:msg_42", a.body["idempotency_key"], "the signed message id alone, not the unsigned route or ?event=")
		clock.Advance(time.Minute)
		ts2 := strconv.FormatInt(clock.Now().Unix(), 10)
		again := serve(t, h, "POST", "/webhooks/customers", cust,
			"webhook-id", "msg_42", "webhook-timestamp", ts2, "webhook-signature", swSign(t, swExampleSecret, "msg_42", ts2, cust))
		require.Equal(t, http.StatusOK, again.status, again.raw)
		require.Equal(t, true, again.body["duplicate"])
		require.Equal(t, a.body["event_id"], again.body["event_id"])

		// Stale: refused before anything is stored.
		clock.Advance(10 * time.Minute)
		stale := serve(t, h, "POST", "/webhooks/customers", cust,
			"webhook-id", "msg_43", "webhook-timestamp", ts2, "webhook-signature", swSign(t, swExampleSecret, "msg_43", ts2, cust))
		requireError(t, stale, 401, "timestamp")
		require.Equal(t, 2, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
	})
}

// zohoItem is a Default Payload of product id whose version is base+minutes.
func zohoItem(t *testing.T, id, name string, minutes int) map[string]any {
	t.Helper()
	rec := zohoRecord(t, "item.json", "item")
	rec["item_id"], rec["name"] = id, name
	rec["last_modified_time"] = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).
		Add(time.Duration(minutes) * time.Minute).Format(ZohoTimeLayout)
	return rec
}

// TestZohoReplayWithFreshDeliveryIDIsDuplicate: Zoho signs no delivery id,
// so a captured Zoho-signed delivery re-sent with any new delivery header
// is a duplicate of the first.
func TestZohoReplayWithFreshDeliveryIDIsDuplicate(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		clock := newTestClock()
		h := newTestHandler(t, tdb, WithZohoSecret(testZohoSecret), WithStandardWebhooksSecrets(swExampleSecret), WithClock(clock.Now))
		ts := strconv.FormatInt(clock.Now().Unix(), 10)
		for _, shape := range []string{"default", "flat"} {
			body, form := zohoBody(t, shape, "item", zohoItem(t, "r-"+shape, "Pump", 0))
			first := zohoPost(t, h, "products", "event=update&token=abc", body, form, HeaderWebhookID, "msg_1")
			require.Equal(t, http.StatusOK, first.status, first.raw)
			require.Contains(t, first.body["idempotency_key"], ":update:h:", "the unsigned webhook-id is not the key")
			for _, headers := range [][]string{
				{HeaderWebhookID, "msg_2"},
				{"X-Delivery-Id", "d-9"},
				// A bad Standard Webhooks signature beside the valid Zoho one.
				{HeaderWebhookID, "msg_3", HeaderWebhookTimestamp, ts, HeaderWebhookSignature, "v1,AAAA"},
			} {
				again := zohoPost(t, h, "products", "event=update&token=abc", body, form, headers...)
				require.Equal(t, http.StatusOK, again.status, again.raw)
				require.Equal(t, true, again.body["duplicate"], "%v: %s", headers, again.raw)
				require.Equal(t, first.body["event_id"], again.body["event_id"])
			}
		}
		require.Equal(t, 2, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
		require.Equal(t, 2, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))

		// The same request with another query is another signature: a
		// changed ?event= does not pass as the captured one.
		body, _ := zohoBody(t, "default", "item", zohoItem(t, "r-default", "Pump", 0))
		sig := zohoSignQuery(testZohoSecret, url.Values{"event": {"update"}, "token": {"abc"}}, body)
		a := serve(t, h, http.MethodPost, "/webhooks/products?event=delete&token=abc", body, HeaderZohoSignature, sig)
		requireError(t, a, http.StatusUnauthorized, "invalid")
	})
}

// TestZohoReplayedOlderRecordOrDelete: the version (last_modified_time)
// orders Zoho deliveries, so neither an older record nor a delete
// delivered again changes a newer mirror row.
func TestZohoReplayedOlderRecordOrDelete(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		h := newTestHandler(t, tdb, WithZohoSecret(testZohoSecret), WithClock(e.clock.Now))
		require.NoError(t, MigrateMirror(ctx, tdb.db, ZohoRegistry()))
		m, err := NewMirrorSyncer(WithClock(e.clock.Now))
		require.NoError(t, err)
		e.start(t, m)
		post := func(query string, body []byte, form bool, headers ...string) answer {
			t.Helper()
			a := zohoPost(t, h, "products", query, body, form, headers...)
			require.Equal(t, http.StatusOK, a.status, a.raw)
			return a
		}
		settled := func(n int) {
			t.Helper()
			require.Eventually(t, func() bool {
				return count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'completed'") == n
			}, 30*time.Second, 10*time.Millisecond)
		}
		type row struct {
			Data      string     `bun:"data"`
			DeletedAt *time.Time `bun:"deleted_at"`
		}
		mirror := func() row {
			t.Helper()
			var r row
			require.NoError(t, tdb.db.NewSelect().Table("products").Column("data", "deleted_at").Where("entity_id = ?", "p1").Scan(ctx, &r))
			return r
		}

		older, _ := zohoBody(t, "default", "item", zohoItem(t, "p1", "v-older", 0))
		newer, _ := zohoBody(t, "default", "item", zohoItem(t, "p1", "v-newer", 10))
		post("event=update", newer, false)
		settled(1)
		// A captured older record, delivered (again) after the newer one.
		a := post("event=update", older, false)
		require.Equal(t, true, a.body["queued"])
		settled(2)
		require.Contains(t, mirror().Data, "v-newer")
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE outcome = 'superseded'"))

		// Delete, then re-create.
		delRec := zohoItem(t, "p1", "v-newer", 20)
		del, _ := zohoBody(t, "default", "item", delRec)
		post("event=delete", del, false)
		settled(3)
		require.NotNil(t, mirror().DeletedAt)
		back, _ := zohoBody(t, "default", "item", zohoItem(t, "p1", "v-back", 30))
		post("event=create", back, false)
		settled(4)
		require.Nil(t, mirror().DeletedAt)

		// The captured delete, replayed with a fresh delivery id or as the
		// same JSON in a form: a duplicate (same canonical data).
		a = post("event=delete", del, false, HeaderWebhookID, "msg_new")
		require.Equal(t, true, a.body["duplicate"], a.raw)
		js, _ := zohoBody(t, "JSONString", "item", delRec)
		a = post("event=delete", js, true)
		require.Equal(t, true, a.body["duplicate"], a.raw)
		// The same delete in another shape is new content, but its version
		// is older than the re-created row's: superseded.
		flat, _ := zohoBody(t, "flat", "item", delRec)
		a = post("event=delete", flat, true)
		require.Equal(t, false, a.body["duplicate"], a.raw)
		settled(5)
		require.Equal(t, 2, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE outcome = 'superseded'"))
		r := mirror()
		require.Nil(t, r.DeletedAt, "a replayed delete does not delete the re-created entity")
		require.Contains(t, r.Data, "v-back")
	})
}

// TestZohoRecordNeedsItsVersion: under Zoho's signature a type with a
// VersionField must carry it; the event is stored invalid (422), not
// queued. Other verifiers and types without a VersionField are unchanged.
func TestZohoRecordNeedsItsVersion(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		h := newTestHandler(t, tdb, WithZohoSecret(testZohoSecret), WithWebhookKeys(testWebhookKey))
		rec := zohoItem(t, "nv1", "Pump", 0)
		delete(rec, "last_modified_time")
		for _, tc := range []struct{ shape, query string }{{"default", ""}, {"flat", "event=delete"}} {
			body, form := zohoBody(t, tc.shape, "item", rec)
			a := zohoPost(t, h, "products", tc.query, body, form)
			require.Equal(t, http.StatusUnprocessableEntity, a.status, a.raw)
			require.Equal(t, []any{map[string]any{"field": "data.last_modified_time",
				"message": "is required under Zoho's signature, which signs no delivery id: the version orders replays"}},
				a.body["validation_errors"])
		}
		require.Equal(t, 2, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE NOT is_valid"))
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))

		// The shared key: no such rule.
		rec["item_id"] = "nv2"
		body, _ := zohoBody(t, "default", "item", rec)
		a := webhook(t, h, "products", body)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		// Price lists have no VersionField.
		pb, _ := zohoBody(t, "default", "pricebook", zohoRecord(t, "pricebook.json", "pricebook"))
		a = zohoPost(t, h, "prices", "", pb, false)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, 2, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
	})
}

// TestDeliveryIDOnlyWhenSigned: a delivery id keys an event only when the
// accepting signature covers it (Standard Webhooks), or, with no verifier,
// from the header the operator named.
func TestDeliveryIDOnlyWhenSigned(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		h := newTestHandler(t, tdb, WithWebhookKeys(testWebhookKey))
		body := fixtureBytes(t, "product.json")
		a := webhook(t, h, "products", body, HeaderWebhookID, "msg_1")
		require.Equal(t, "zoho:product:460000000038080:update:h:", a.body["idempotency_key"].(string)[:len("zoho:product:460000000038080:update:h:")])
		again := webhook(t, h, "products", body, HeaderWebhookID, "msg_2")
		require.Equal(t, true, again.body["duplicate"], again.raw)
	})
	_, err := NewHandler(openTestDB(t, "sqlite").db, WithWebhookKeys(testWebhookKey), WithDeliveryIDHeader("X-Delivery-Id"))
	require.ErrorContains(t, err, "tds: WithDeliveryIDHeader: only with WithoutAuthentication")
}

// TestStandardWebhooksResentElsewhereIsDuplicate: the signature covers
// the webhook-id and the body, not the URL, so one signed message is one
// event whatever route or ?event= it is re-sent to: a re-send with
// ?event=delete, or to /webhooks/stock?event=delete, is a duplicate and
// deletes nothing.
func TestStandardWebhooksResentElsewhereIsDuplicate(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		h := newTestHandler(t, tdb, WithStandardWebhooksSecrets(swExampleSecret), WithClock(e.clock.Now))
		require.NoError(t, MigrateMirror(ctx, tdb.db, ZohoRegistry()))
		m, err := NewMirrorSyncer(WithClock(e.clock.Now))
		require.NoError(t, err)
		e.start(t, m)

		rec := zohoItem(t, "sw1", "Pump", 0)
		rec["stock_on_hand"] = 5
		body, _ := zohoBody(t, "default", "item", rec)
		send := func(path string) answer {
			t.Helper()
			ts := strconv.FormatInt(e.clock.Now().Unix(), 10)
			return serve(t, h, http.MethodPost, path, body, HeaderWebhookID, "msg_item_1",
				HeaderWebhookTimestamp, ts, HeaderWebhookSignature, swSign(t, swExampleSecret, "msg_item_1", ts, body))
		}
		first := send("/webhooks/products")
		require.Equal(t, http.StatusOK, first.status, first.raw)
		require.Equal(t, false, first.body["duplicate"])
		for _, path := range []string{"/webhooks/products?event=delete", "/webhooks/stock?event=delete", "/webhooks/stock"} {
			e.clock.Advance(time.Minute)
			a := send(path)
			require.Equal(t, http.StatusOK, a.status, "%s: %s", path, a.raw)
			require.Equal(t, true, a.body["duplicate"], "%s: %s", path, a.raw)
			require.Equal(t, first.body["event_id"], a.body["event_id"], path)
		}
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
		require.Eventually(t, func() bool {
			return count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'completed'") == 1
		}, 30*time.Second, 10*time.Millisecond)
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM products WHERE entity_id = 'sw1' AND deleted_at IS NULL"))
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM stock"))
	})
}

// TestZohoDeliveryBoundToItsRoute: Zoho signs the query and the body, not
// the path. Where two routes take the same record (products and stock
// both take {"item":…}), a delivery must name its route in the signed
// query (?route=), so a delivery captured on /webhooks/products and
// re-sent to /webhooks/stock is refused, never a new stock event.
func TestZohoDeliveryBoundToItsRoute(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		h := newTestHandler(t, tdb, WithZohoSecret(testZohoSecret))
		for _, shape := range []string{"default", "JSONString", "flat"} {
			rec := zohoItem(t, "z-"+shape, "Pump", 0)
			rec["stock_on_hand"] = "5"
			body, form := zohoBody(t, shape, "item", rec)

			a := zohoPost(t, h, "products", "event=update&route=products", body, form)
			require.Equal(t, http.StatusOK, a.status, "%s: %s", shape, a.raw)
			// Captured and re-sent to the other route that takes items.
			requireError(t, zohoPost(t, h, "stock", "event=update&route=products", body, form),
				http.StatusBadRequest, `route "products"`)
			// Without the signed route, a record two routes take is refused
			// on either, with what to configure.
			requireError(t, zohoPostQuery(t, h, "products", "event=update", body, form),
				http.StatusBadRequest, "route=products")
			requireError(t, zohoPostQuery(t, h, "stock", "event=delete", body, form),
				http.StatusBadRequest, "route=stock")
			requireError(t, zohoPost(t, h, "stock", "route=stock&route=products", body, form),
				http.StatusBadRequest, "route")
		}
		require.Equal(t, 3, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE entity_type = 'stock'"))

		// A record only one route takes needs no ?route=; a wrong one is
		// still refused.
		cust, _ := zohoBody(t, "default", "contact", zohoRecord(t, "contact.json", "contact"))
		a := zohoPostQuery(t, h, "customers", "", cust, false)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		requireError(t, zohoPost(t, h, "customers", "route=products", cust, false), http.StatusBadRequest, `route "products"`)
	})
}
