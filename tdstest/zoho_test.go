package tdstest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsreconcile"
	"github.com/tdscore/tds/tdstest"
)

// zohoItem is an item as Zoho's API holds it, at version minute past t0.
func zohoItem(id string, minute int) map[string]any {
	v := time.Date(2026, 11, 20, 10, minute, 0, 0, time.UTC).Format(tds.ZohoTimeLayout)
	return map[string]any{"item_id": id, "name": "Pump " + id, "rate": 1249.5, "last_modified_time": v,
		"tags": []any{map[string]any{"tag_id": "t1"}}} // nested: in the detail answer only
}

// A full reconciliation through the fake repairs what no webhook brought,
// then the deletion of a record in Zoho, across an expired token and a 429.
func TestZohoReconcile(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *bun.DB) {
		ctx := t.Context()
		zoho := tdstest.NewZoho(t)
		require.NoError(t, tds.MigrateMirror(ctx, db, tds.ZohoRegistry()))
		mirror, err := tds.NewMirrorSyncer()
		require.NoError(t, err)
		w, err := tds.NewWorker(db, mirror, tds.WithPollInterval(10*time.Millisecond), tds.WithLogger(quiet))
		require.NoError(t, err)
		proc, err := tds.NewProcessor(db)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, proc.Close()) })
		rc, err := tdsreconcile.New(db, proc, zoho.API(), tdsreconcile.WithLogger(quiet))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, rc.Close()) })

		// 4601 came by webhook and is applied; 4600 is only in Zoho.
		zoho.Put("items", zohoItem("4600", 1))
		zoho.Put("items", zohoItem("4601", 1))
		ev := product("4601", "Pump 4601", 1)
		_, err = proc.Process(ctx, &ev)
		require.NoError(t, err)
		require.Len(t, tdstest.Drain(t, db, w).Synced, 1)

		full := tdsreconcile.Request{Mode: tdsreconcile.Full, EntityTypes: []string{"product"}}
		run, err := rc.Run(ctx, full)
		require.NoError(t, err)
		require.Equal(t, tdsreconcile.RunCompleted, run.Status, run.Error)
		require.Equal(t, tdsreconcile.DriftCounts{MissingLocal: 1}, run.Counts)
		require.EqualValues(t, 1, run.Repaired)
		require.EqualValues(t, 2, run.APICalls, "a list page and the detail of 4600")
		require.Len(t, tdstest.Drain(t, db, w).Synced, 1)

		var row struct {
			Data      string     `bun:"data"`
			DeletedAt *time.Time `bun:"deleted_at"`
		}
		read := func() {
			t.Helper()
			require.NoError(t, db.NewRaw(`SELECT data, deleted_at FROM products WHERE entity_id = '4600'`).Scan(ctx, &row))
		}
		read()
		require.Nil(t, row.DeletedAt)
		var data map[string]any
		require.NoError(t, json.Unmarshal([]byte(row.Data), &data))
		require.Equal(t, "Pump 4600", data["name"])
		require.Contains(t, data, "tags", "repaired from the detail record")

		// Deleted in Zoho; meanwhile the token was revoked and the list is
		// rate-limited once.
		zoho.Delete("items", "4600")
		zoho.ExpireTokens()
		zoho.Fail(1, http.StatusTooManyRequests, "0")
		run, err = rc.Run(ctx, full)
		require.NoError(t, err)
		require.Equal(t, tdsreconcile.RunCompleted, run.Status, run.Error)
		require.Equal(t, tdsreconcile.DriftCounts{MissingRemote: 1}, run.Counts)
		require.EqualValues(t, 1, run.Repaired)
		require.Len(t, tdstest.Drain(t, db, w).Synced, 1)
		read()
		require.NotNil(t, row.DeletedAt, "the delete was applied")

		st := zoho.Stats()
		require.Equal(t, map[int]int{200: 3, 401: 1, 429: 1, 404: 1}, st.Status,
			"list and detail; then 401, refresh, 429, the list, and the detail that confirms the delete")
		require.Equal(t, 6, st.APICalls)
		require.Equal(t, 2, st.ListCalls)
		require.Equal(t, 2, st.DetailCalls)
		require.Equal(t, 2, st.TokenRefreshes)
	})
}

// Zoho's API description types ids as integers: a record whose id is a
// JSON number, decoded into a float64, is listed, fetched, repaired and
// deleted by the id as JSON writes it.
func TestZohoNumericIDsReconcile(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *bun.DB) {
		ctx := t.Context()
		zoho := tdstest.NewZoho(t)
		require.NoError(t, tds.MigrateMirror(ctx, db, tds.ZohoRegistry()))
		mirror, err := tds.NewMirrorSyncer()
		require.NoError(t, err)
		w, err := tds.NewWorker(db, mirror, tds.WithPollInterval(10*time.Millisecond), tds.WithLogger(quiet))
		require.NoError(t, err)
		proc, err := tds.NewProcessor(db)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, proc.Close()) })
		rc, err := tdsreconcile.New(db, proc, zoho.API(), tdsreconcile.WithLogger(quiet))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, rc.Close()) })

		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(`{"item_id":460000000026049,"name":"Pump",
			"last_modified_time":"2026-11-20T10:01:00+0000","tags":[{"tag_id":"t1"}]}`), &rec))
		zoho.Put("items", rec)
		_, ok := zoho.Get("items", "460000000026049")
		require.True(t, ok)

		full := tdsreconcile.Request{Mode: tdsreconcile.Full, EntityTypes: []string{"product"}}
		run, err := rc.Run(ctx, full)
		require.NoError(t, err)
		require.Equal(t, tdsreconcile.RunCompleted, run.Status, run.Error)
		require.Equal(t, tdsreconcile.DriftCounts{MissingLocal: 1}, run.Counts)
		require.EqualValues(t, 1, run.Repaired)
		require.Len(t, tdstest.Drain(t, db, w).Synced, 1)
		var row struct {
			Data      string     `bun:"data"`
			DeletedAt *time.Time `bun:"deleted_at"`
		}
		read := func() {
			t.Helper()
			require.NoError(t, db.NewRaw(`SELECT data, deleted_at FROM products WHERE entity_id = '460000000026049'`).Scan(ctx, &row))
		}
		read()
		require.Nil(t, row.DeletedAt)
		require.Contains(t, row.Data, `"tags"`, "repaired from the detail record")

		run, err = rc.Run(ctx, full)
		require.NoError(t, err)
		require.Equal(t, tdsreconcile.DriftCounts{}, run.Counts, "in sync: no drift")

		zoho.Delete("items", "460000000026049")
		run, err = rc.Run(ctx, full)
		require.NoError(t, err)
		require.Equal(t, tdsreconcile.DriftCounts{MissingRemote: 1}, run.Counts)
		require.Len(t, tdstest.Drain(t, db, w).Synced, 1)
		read()
		require.NotNil(t, row.DeletedAt, "the delete was applied")
	})
}

// zohoClient talks to a fake Zoho as Zoho's API clients do.
type zohoClient struct {
	t     *testing.T
	z     *tdstest.Zoho
	http  *http.Client
	token string
}

func newZohoClient(t *testing.T, z *tdstest.Zoho) *zohoClient {
	c := &zohoClient{t: t, z: z, http: &http.Client{Transport: &http.Transport{}}}
	t.Cleanup(c.http.CloseIdleConnections)
	c.refresh()
	return c
}

// refresh gets an access token with the credentials of z.API().
func (c *zohoClient) refresh() map[string]any {
	c.t.Helper()
	api := c.z.API()
	resp, err := c.http.PostForm(api.AccountsURL+"/oauth/v2/token", url.Values{
		"grant_type": {"refresh_token"}, "client_id": {api.ClientID},
		"client_secret": {api.ClientSecret}, "refresh_token": {api.RefreshToken},
	})
	require.NoError(c.t, err)
	defer resp.Body.Close()
	require.Equal(c.t, http.StatusOK, resp.StatusCode)
	var ans map[string]any
	require.NoError(c.t, json.NewDecoder(resp.Body).Decode(&ans))
	c.token, _ = ans["access_token"].(string)
	require.NotEmpty(c.t, c.token, ans)
	return ans
}

// get requests path (such as "/items") of the Books API.
func (c *zohoClient) get(path string) (int, http.Header, map[string]any) {
	c.t.Helper()
	api := c.z.API()
	req, err := http.NewRequest(http.MethodGet, api.APIURL+"/books/v3"+path+"?organization_id="+api.OrganizationID, nil)
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Zoho-oauthtoken "+c.token)
	resp, err := c.http.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	var ans map[string]any
	require.NoError(c.t, json.NewDecoder(resp.Body).Decode(&ans))
	return resp.StatusCode, resp.Header, ans
}

// The fake's records, faults and counters, without a database.
func TestZoho(t *testing.T) {
	t.Parallel()
	z := tdstest.NewZoho(t)
	api := z.API()
	require.Equal(t, z.URL(), api.AccountsURL)
	require.Equal(t, z.URL(), api.APIURL)
	require.Negative(t, api.RequestsPerMinute)
	require.NotEmpty(t, api.ClientID)
	require.NotEmpty(t, api.OrganizationID)
	c := newZohoClient(t, z)

	rec := zohoItem("1", 0)
	z.Put("items", rec)
	rec["name"] = "changed after Put"
	got, ok := z.Get("items", "1")
	require.True(t, ok)
	require.Equal(t, "Pump 1", got["name"], "the fake keeps a copy")
	z.Put("contacts", map[string]any{"contact_id": 7, "contact_name": "Ada"}) // a numeric id
	_, ok = z.Get("contacts", "7")
	require.True(t, ok)

	status, _, ans := c.get("/items")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, float64(0), ans["code"])
	items := ans["items"].([]any)
	require.Len(t, items, 1)
	require.NotContains(t, items[0], "tags", "lists carry top-level scalars")
	status, _, ans = c.get("/items/1")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, ans["item"], "tags")

	z.Fail(2, http.StatusTooManyRequests, "7")
	for range 2 {
		status, h, ans := c.get("/items")
		require.Equal(t, http.StatusTooManyRequests, status)
		require.Equal(t, "7", h.Get("Retry-After"))
		require.NotEmpty(t, ans["message"])
	}
	status, h, _ := c.get("/items")
	require.Equal(t, http.StatusOK, status)
	require.Empty(t, h.Get("Retry-After"))

	z.SetDown(true)
	status, _, _ = c.get("/items")
	require.Equal(t, http.StatusServiceUnavailable, status)
	c.refresh() // tokens are still issued
	z.SetDown(false)

	z.ExpireTokens()
	status, _, ans = c.get("/items")
	require.Equal(t, http.StatusUnauthorized, status)
	require.Equal(t, float64(14), ans["code"])
	c.refresh()

	z.Delete("items", "1")
	z.Delete("items", "1") // already gone
	_, ok = z.Get("items", "1")
	require.False(t, ok)
	status, _, ans = c.get("/items/1")
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, float64(1002), ans["code"])

	require.Equal(t, tdstest.ZohoStats{
		APICalls:       8,
		Status:         map[int]int{200: 3, 429: 2, 503: 1, 401: 1, 404: 1},
		ListCalls:      2,
		DetailCalls:    2,
		TokenRefreshes: 3,
	}, z.Stats())
}

// Outside a test, misuse panics; with one, it fails the test.
func TestZohoMisuse(t *testing.T) {
	t.Parallel()
	z := tdstest.StartZoho()
	defer z.Close()
	require.PanicsWithValue(t, `tdstest: Zoho.Put: unknown module "widgets" (known: bills, contacts, creditnotes, invoices, items, pricebooks)`,
		func() { z.Put("widgets", map[string]any{"id": "1"}) })
	require.PanicsWithValue(t, "tdstest: Zoho.Put: the items record has no item_id",
		func() { z.Put("items", map[string]any{"name": "x"}) })
	require.Panics(t, func() { z.Get("product", "1") }, "entity types are not modules")
	require.Panics(t, func() { z.Delete("product", "1") })
}

// NewZoho's server stops when its test ends; StartZoho's when closed.
func TestZohoClosed(t *testing.T) {
	t.Parallel()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	var u string
	t.Run("test", func(t *testing.T) {
		z := tdstest.NewZoho(t)
		u = z.URL()
		resp, err := client.Get(u + "/books/v3/items")
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	})
	_, err := client.Get(u + "/books/v3/items")
	require.Error(t, err, "closed with its test")

	z := tdstest.StartZoho()
	z.Close()
	_, err = client.Get(z.URL() + "/books/v3/items")
	require.Error(t, err)
}

// ZohoClock and ZohoTokenTTL: the fake's tokens expire by the test's clock.
func TestZohoClock(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}
	z := tdstest.NewZoho(t, tdstest.ZohoClock(clk.Now), tdstest.ZohoTokenTTL(30*time.Minute))
	z.Put("bills", map[string]any{"bill_id": "b1"})
	c := newZohoClient(t, z)
	status, _, _ := c.get("/bills")
	require.Equal(t, http.StatusOK, status)
	clk.Advance(30 * time.Minute)
	status, _, _ = c.get("/bills")
	require.Equal(t, http.StatusUnauthorized, status, "expired by the fake's clock")
	require.Equal(t, float64(1800), c.refresh()["expires_in"])

	// A Reconciler on the same clock agrees on when its token expires: it
	// keeps it for 20 minutes, then refreshes before the fake refuses it.
	db := tdstest.SQLite(t)
	proc, err := tds.NewProcessor(db, tds.WithClock(clk.Now))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, proc.Close()) })
	rc, err := tdsreconcile.New(db, proc, z.API(), tdsreconcile.WithClock(clk.Now), tdsreconcile.WithLogger(quiet))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rc.Close()) })
	for range 3 {
		run, err := rc.Run(t.Context(), tdsreconcile.Request{Mode: tdsreconcile.Full, EntityTypes: []string{"bill"}})
		require.NoError(t, err)
		require.Equal(t, tdsreconcile.RunCompleted, run.Status, run.Error)
		require.Equal(t, tdsreconcile.DriftCounts{MissingLocal: 1}, run.Counts, "no Worker applies the repair, so each run finds it again")
		clk.Advance(20 * time.Minute)
	}
	st := z.Stats()
	require.Equal(t, 1, st.Status[http.StatusUnauthorized], "only the test's own expired call")
	require.Equal(t, 2+2, st.TokenRefreshes, "the test's two, the Reconciler's at 0 and 40 minutes")
}
