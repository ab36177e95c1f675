package zohofake

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type bundle struct {
	s     *Server
	token string
}

func setup(t testing.TB, opts Options) bundle {
	t.Helper()
	s := New(opts)
	t.Cleanup(s.Close)
	status, ans := postToken(t, s, url.Values{
		"grant_type": {"refresh_token"}, "client_id": {"client-id"},
		"client_secret": {"client-secret"}, "refresh_token": {"refresh-token"},
	})
	require.Equal(t, http.StatusOK, status)
	return bundle{s: s, token: ans["access_token"].(string)}
}

func postToken(t testing.TB, s *Server, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(s.URL()+"/oauth/v2/token", form)
	require.NoError(t, err)
	defer resp.Body.Close()
	var ans map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ans))
	return resp.StatusCode, ans
}

// get sends an API request; path includes the query (organization_id is not
// added for you).
func (b bundle) get(t testing.TB, path string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.s.URL()+path, nil)
	require.NoError(t, err)
	if b.token != "" {
		req.Header.Set("Authorization", "Zoho-oauthtoken "+b.token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var ans map[string]any
	require.NoError(t, json.Unmarshal(body, &ans), string(body))
	return resp.StatusCode, resp.Header, ans
}

func item(i int) map[string]any {
	return map[string]any{
		"item_id":            fmt.Sprint(i),
		"name":               fmt.Sprintf("item %d", i),
		"rate":               1.5,
		"is_taxable":         true,
		"sku":                nil,
		"created_time":       fmt.Sprintf("2025-01-01T00:00:%02d+0000", i%60),
		"last_modified_time": "2025-03-01T00:00:00+0000",
		"tags":               []any{"a"},
		"custom":             map[string]any{"k": "v"},
	}
}

func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	s := New(Options{TokenTTL: 30 * time.Minute})
	t.Cleanup(s.Close)
	good := url.Values{"grant_type": {"refresh_token"}, "client_id": {"client-id"}, "client_secret": {"client-secret"}, "refresh_token": {"refresh-token"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range good {
			f[kk] = vv
		}
		f.Set(k, v)
		return f
	}
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		err    string
	}{
		{"bad refresh token", with("refresh_token", "nope"), 200, "invalid_code"},
		{"bad secret", with("client_secret", "nope"), 200, "invalid_client"},
		{"bad grant", with("grant_type", "authorization_code"), 200, "unsupported_grant_type"},
	} {
		status, ans := postToken(t, s, tc.form)
		require.Equal(t, tc.status, status, tc.name)
		require.Equal(t, tc.err, ans["error"], tc.name)
	}
	for i := range 10 {
		status, ans := postToken(t, s, good)
		require.Equal(t, 200, status, i)
		require.Equal(t, s.URL(), ans["api_domain"])
		require.Equal(t, float64(1800), ans["expires_in"])
		require.Equal(t, "Bearer", ans["token_type"])
		require.NotEmpty(t, ans["access_token"])
	}
	status, ans := postToken(t, s, good)
	require.Equal(t, 400, status)
	require.Equal(t, map[string]any{"error": "Access Denied",
		"error_description": "You have made too many requests continuously. Please try again after some time."}, ans)
	require.Equal(t, 14, s.Stats().TokenRefreshes)
	require.Zero(t, s.Stats().APICalls)
}

func TestRefreshWindowSlides(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := New(Options{Now: clock})
	t.Cleanup(s.Close)
	good := url.Values{"grant_type": {"refresh_token"}, "client_id": {"client-id"}, "client_secret": {"client-secret"}, "refresh_token": {"refresh-token"}}
	for range 10 {
		status, _ := postToken(t, s, good)
		require.Equal(t, 200, status)
	}
	status, _ := postToken(t, s, good)
	require.Equal(t, 400, status)
	mu.Lock()
	now = now.Add(10 * time.Minute)
	mu.Unlock()
	status, _ = postToken(t, s, good)
	require.Equal(t, 200, status)
}

func TestAuthAndOrganization(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	b := setup(t, Options{OrganizationID: "77", Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	b.s.Put("items", item(1))
	for _, tc := range []struct {
		name   string
		token  string
		path   string
		status int
		code   float64
	}{
		{"ok", b.token, "/books/v3/items?organization_id=77", 200, 0},
		{"inventory ok", b.token, "/inventory/v1/items/1?organization_id=77", 200, 0},
		{"no token", "", "/books/v3/items?organization_id=77", 401, 14},
		{"unknown token", "forged", "/books/v3/items?organization_id=77", 401, 14},
		{"no organization", b.token, "/books/v3/items", 400, 6041},
		{"other organization", b.token, "/books/v3/items?organization_id=78", 400, 6041},
		{"unknown module", b.token, "/books/v3/widgets?organization_id=77", 404, 5},
		{"unknown prefix", b.token, "/crm/v2/items?organization_id=77", 404, 5},
	} {
		status, _, ans := bundle{s: b.s, token: tc.token}.get(t, tc.path)
		require.Equal(t, tc.status, status, tc.name)
		require.Equal(t, tc.code, ans["code"], tc.name)
		require.NotEmpty(t, ans["message"], tc.name)
	}

	req, _ := http.NewRequest(http.MethodGet, b.s.URL()+"/books/v3/items?organization_id=77", nil)
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode, "Zoho wants the Zoho-oauthtoken scheme")

	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	status, _, ans := b.get(t, "/books/v3/items?organization_id=77")
	require.Equal(t, 401, status, "token past its TTL")
	require.Equal(t, float64(14), ans["code"])

	b2 := setup(t, Options{})
	b2.s.ExpireTokens()
	status, _, _ = b2.get(t, "/books/v3/items?organization_id=org-1")
	require.Equal(t, 401, status)
}

func TestListAndDetail(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	for i := range 5 {
		b.s.Put("items", item(i))
	}
	status, _, ans := b.get(t, "/books/v3/items?organization_id=org-1&per_page=2&page=2")
	require.Equal(t, 200, status)
	require.Equal(t, float64(0), ans["code"])
	require.Equal(t, "success", ans["message"])
	pc := ans["page_context"].(map[string]any)
	require.Equal(t, float64(2), pc["page"])
	require.Equal(t, float64(2), pc["per_page"])
	require.Equal(t, true, pc["has_more_page"])
	recs := ans["items"].([]any)
	require.Len(t, recs, 2)
	require.Equal(t, map[string]any{"item_id": "2", "name": "item 2", "rate": 1.5, "is_taxable": true, "sku": nil,
		"created_time": "2025-01-01T00:00:02+0000", "last_modified_time": "2025-03-01T00:00:00+0000"}, recs[0],
		"lists carry top-level scalars only")

	_, _, ans = b.get(t, "/books/v3/items?organization_id=org-1&per_page=2&page=3")
	require.Equal(t, false, ans["page_context"].(map[string]any)["has_more_page"])
	require.Len(t, ans["items"], 1)
	_, _, ans = b.get(t, "/books/v3/items?organization_id=org-1&page=9")
	require.Empty(t, ans["items"])
	require.Equal(t, float64(200), ans["page_context"].(map[string]any)["per_page"])

	status, _, ans = b.get(t, "/inventory/v1/items/3?organization_id=org-1")
	require.Equal(t, 200, status)
	got := ans["item"].(map[string]any)
	require.Equal(t, []any{"a"}, got["tags"])
	require.Equal(t, map[string]any{"k": "v"}, got["custom"])

	for _, q := range []string{"per_page=201", "per_page=0", "page=0", "page=x", "sort_column=name", "sort_order=X"} {
		status, _, ans = b.get(t, "/books/v3/items?organization_id=org-1&"+q)
		require.Equal(t, 400, status, q)
		require.Equal(t, float64(2), ans["code"], q)
	}
	st := b.s.Stats()
	require.Equal(t, 3, st.ListCalls)
	require.Equal(t, 1, st.DetailCalls)
	require.Equal(t, 10, st.APICalls)
	require.Equal(t, map[int]int{200: 4, 400: 6}, st.Status)
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	for _, status := range []int{0, 400} {
		b := setup(t, Options{NotFoundStatus: status})
		got, _, ans := b.get(t, "/books/v3/creditnotes/9?organization_id=org-1")
		if status == 0 {
			status = 404
		}
		require.Equal(t, status, got)
		require.Equal(t, map[string]any{"code": float64(1002), "message": "Credit Note does not exist."}, ans)
		require.Equal(t, 1, b.s.Stats().DetailCalls)
	}
}

func TestSortStable(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	// created_time: ids 0 and 2 tie at :05, 1 is earlier, 3 later.
	for i, sec := range []int{5, 1, 5, 9} {
		b.s.Put("contacts", map[string]any{"contact_id": fmt.Sprint(i),
			"created_time": fmt.Sprintf("2025-01-01T00:00:%02d+0000", sec)})
	}
	ids := func(q string) []string {
		status, _, ans := b.get(t, "/books/v3/contacts?organization_id=org-1&"+q)
		require.Equal(t, 200, status)
		var out []string
		for _, r := range ans["contacts"].([]any) {
			out = append(out, r.(map[string]any)["contact_id"].(string))
		}
		return out
	}
	require.Equal(t, []string{"0", "1", "2", "3"}, ids(""))
	require.Equal(t, []string{"1", "0", "2", "3"}, ids("sort_column=created_time"))
	require.Equal(t, []string{"1", "0", "2", "3"}, ids("sort_column=created_time&sort_order=A"))
	require.Equal(t, []string{"3", "0", "2", "1"}, ids("sort_column=created_time&sort_order=D"))
	require.Equal(t, []string{"0", "1", "2", "3"}, ids("sort_column=last_modified_time"), "missing values tie")
	// A replaced record keeps its place; the cached order is refreshed.
	b.s.Put("contacts", map[string]any{"contact_id": "3", "created_time": "2025-01-01T00:00:00+0000"})
	require.Equal(t, []string{"3", "1", "0", "2"}, ids("sort_column=created_time"))
	require.Equal(t, []string{"0", "1", "2", "3"}, ids(""))
	b.s.Delete("contacts", "1")
	b.s.Delete("contacts", "nope")
	require.Equal(t, []string{"3", "0", "2"}, ids("sort_column=created_time"))
	require.Equal(t, []string{"0", "2", "3"}, ids(""))
	_, ok := b.s.Get("contacts", "1")
	require.False(t, ok)
	rec, ok := b.s.Get("contacts", "3")
	require.True(t, ok)
	require.Equal(t, "2025-01-01T00:00:00+0000", rec["created_time"])
}

func TestCopies(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	t.Cleanup(s.Close)
	rec := map[string]any{"bill_id": "b1", "line_items": []any{map[string]any{"x": 1.0}}}
	s.Put("bills", rec)
	rec["line_items"].([]any)[0].(map[string]any)["x"] = 2.0
	got, _ := s.Get("bills", "b1")
	require.Equal(t, 1.0, got["line_items"].([]any)[0].(map[string]any)["x"])
	got["bill_id"] = "changed"
	all := s.All("bills")
	require.Equal(t, "b1", all[0]["bill_id"])
	all[0]["bill_id"] = "changed"
	require.Equal(t, "b1", s.All("bills")[0]["bill_id"])
	require.Empty(t, s.All("pricebooks"))
	require.Panics(t, func() { s.Put("widgets", map[string]any{}) })
	require.Panics(t, func() { s.Put("bills", map[string]any{"name": "no id"}) })
}

func TestFailAndDown(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.s.Put("invoices", map[string]any{"invoice_id": "i1"})
	path := "/books/v3/invoices?organization_id=org-1"

	b.s.Fail(2, 429, "30")
	for range 2 {
		status, h, ans := b.get(t, path)
		require.Equal(t, 429, status)
		require.Equal(t, "30", h.Get("Retry-After"))
		require.Equal(t, float64(429), ans["code"])
	}
	status, h, _ := b.get(t, path)
	require.Equal(t, 200, status)
	require.Empty(t, h.Get("Retry-After"))

	b.s.Fail(1, 500, "")
	status, h, _ = b.get(t, path)
	require.Equal(t, 500, status)
	require.Empty(t, h.Get("Retry-After"))

	b.s.SetDown(true)
	for range 3 {
		status, _, _ = b.get(t, path)
		require.Equal(t, 503, status)
	}
	b.s.SetDown(false)
	status, _, _ = b.get(t, path)
	require.Equal(t, 200, status)
	st := b.s.Stats()
	require.Equal(t, map[int]int{200: 2, 429: 2, 500: 1, 503: 3}, st.Status)
	require.Equal(t, 8, st.APICalls)
	require.Equal(t, 2, st.ListCalls)
}

func TestOnRequestChangesRecords(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.s.Put("pricebooks", map[string]any{"pricebook_id": "p1", "name": "old"})
	var seen []string
	b.s.OnRequest(func(r *http.Request) {
		seen = append(seen, r.URL.Path)
		b.s.Put("pricebooks", map[string]any{"pricebook_id": "p1", "name": "new"})
	})
	_, _, ans := b.get(t, "/books/v3/pricebooks/p1?organization_id=org-1")
	require.Equal(t, "new", ans["pricebook"].(map[string]any)["name"])
	require.Equal(t, []string{"/books/v3/pricebooks/p1"}, seen)
	b.s.OnRequest(nil)
	_, _, _ = b.get(t, "/books/v3/pricebooks?organization_id=org-1")
	require.Len(t, seen, 1)
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				id := fmt.Sprintf("%d-%d", w, i)
				b.s.Put("items", map[string]any{"item_id": id, "created_time": "2025-01-01T00:00:00+0000"})
				if i%5 == 0 {
					b.s.Delete("items", id)
				}
			}
		})
		wg.Go(func() {
			for range 20 {
				status, _, _ := b.get(t, "/books/v3/items?organization_id=org-1&sort_column=created_time&sort_order=D")
				if status != 200 {
					t.Errorf("status %d", status)
				}
				_ = b.s.All("items")
				_ = b.s.Stats()
			}
		})
	}
	wg.Wait()
	require.Len(t, b.s.All("items"), 4*40)
}

// BenchmarkList100k lists 100,000 records in pages of 200, as the
// reconciler's benchmark does.
func BenchmarkList100k(b *testing.B) {
	for _, sort := range []string{"", "&sort_column=last_modified_time&sort_order=D"} {
		b.Run(strings.TrimPrefix(sort, "&"), func(b *testing.B) {
			bd := setup(b, Options{})
			for i := range 100_000 {
				bd.s.Put("items", map[string]any{"item_id": fmt.Sprint(i), "name": "n", "rate": 1.0,
					"last_modified_time": "2025-01-01T00:00:00+0000", "tags": []any{}})
			}
			b.ResetTimer()
			for range b.N {
				for page := 1; page <= 500; page++ {
					status, _, _ := bd.get(b, fmt.Sprintf("/books/v3/items?organization_id=org-1&per_page=200&page=%d%s", page, sort))
					if status != 200 {
						b.Fatal(status)
					}
				}
			}
		})
	}
}

func TestModules(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"bills", "contacts", "creditnotes", "invoices", "items", "pricebooks"}, Modules())
	f, ok := IDField("creditnotes")
	require.True(t, ok)
	require.Equal(t, "creditnote_id", f)
	_, ok = IDField("widgets")
	require.False(t, ok)
}

// TestNumericIDs: Zoho's API description types ids as integers (contact_id,
// invoice_id), so a record may come with a number for its id, and from
// JSON as a float64. Its detail path, Get and Delete use the id as JSON
// writes it.
func TestNumericIDs(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	var recs []map[string]any
	require.NoError(t, json.Unmarshal([]byte(`[
		{"contact_id":460000000026049,"contact_name":"A"},
		{"contact_id":460000000026050,"contact_name":"B"}]`), &recs))
	for _, r := range recs {
		b.s.Put("contacts", r)
	}
	dec := json.NewDecoder(strings.NewReader(`{"invoice_id":460000000039129}`))
	dec.UseNumber()
	var inv map[string]any
	require.NoError(t, dec.Decode(&inv))
	b.s.Put("invoices", inv)
	b.s.Put("items", map[string]any{"item_id": int64(460000000012345)})

	for path, key := range map[string]string{
		"/books/v3/contacts/460000000026049": "contact",
		"/books/v3/invoices/460000000039129": "invoice",
		"/books/v3/items/460000000012345":    "item",
	} {
		status, _, ans := b.get(t, path+"?organization_id=org-1")
		require.Equal(t, 200, status, path)
		require.Contains(t, ans, key, path)
	}
	_, ok := b.s.Get("contacts", "460000000026049")
	require.True(t, ok)

	recs[0]["contact_name"] = "A2"
	b.s.Put("contacts", recs[0])
	require.Len(t, b.s.All("contacts"), 2, "the same numeric id replaces the record")

	b.s.Delete("contacts", "460000000026049")
	require.Len(t, b.s.All("contacts"), 1)
	status, _, ans := b.get(t, "/books/v3/contacts/460000000026050?organization_id=org-1")
	require.Equal(t, 200, status, "ids re-indexed after a delete")
	require.Equal(t, "B", ans["contact"].(map[string]any)["contact_name"])
	_, _, ans = b.get(t, "/books/v3/contacts?organization_id=org-1")
	require.Equal(t, []any{map[string]any{"contact_id": float64(460000000026050), "contact_name": "B"}}, ans["contacts"])
}

// apiDescription is the part of an OpenAPI 3.0 document the test reads.
type apiDescription struct {
	Paths map[string]map[string]struct {
		OperationID string `yaml:"operationId"`
		Parameters  []struct {
			In, Name string
			Required bool
			Schema   schema
		}
		Responses map[int]struct {
			Content map[string]struct{ Schema schema }
		}
	}
	Components struct{ Schemas map[string]schema }
}

type schema struct {
	Ref        string `yaml:"$ref"`
	Type       string
	Properties map[string]schema
}

// TestListsMatchAPIDescription holds the fake's lists to the excerpt of Zoho
// Books' API description in testdata (see NOTICE there): every list
// operation in it is served (under /books/v3, the path tds calls; the
// description's own server and /api/v3 prefix are Zoho's older root), its
// required query parameters are enforced, and the answer has exactly the
// properties of the operation's 200 schema, page_context included, with
// the types the description gives them.
func TestListsMatchAPIDescription(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/zoho-books-openapi-excerpt.yaml")
	require.NoError(t, err)
	var desc apiDescription
	require.NoError(t, yaml.Unmarshal(raw, &desc))
	require.NotEmpty(t, desc.Paths)

	b := setup(t, Options{OrganizationID: "460000000000001"})
	for i := range 3 {
		b.s.Put("contacts", map[string]any{"contact_id": fmt.Sprint(i)})
		b.s.Put("invoices", map[string]any{"invoice_id": fmt.Sprint(i)})
	}
	for path, ops := range desc.Paths {
		op, ok := ops["get"]
		require.True(t, ok, path)
		module, ok := strings.CutPrefix(path, "/api/v3/")
		require.True(t, ok, path)
		_, served := IDField(module)
		require.True(t, served, "%s (%s) is a module the fake serves", path, op.OperationID)

		query := url.Values{"per_page": {"2"}}
		for _, p := range op.Parameters {
			require.Equal(t, "query", p.In, "%s %s", op.OperationID, p.Name)
			require.Equal(t, "organization_id", p.Name, "%s: a parameter the test knows", op.OperationID)
			require.Equal(t, "integer", p.Schema.Type)
			query.Set(p.Name, "460000000000001")
		}
		status, _, _ := b.get(t, "/books/v3/"+module+"?per_page=2")
		require.Equal(t, 400, status, "%s without its required parameters", op.OperationID)

		status, _, ans := b.get(t, "/books/v3/"+module+"?"+query.Encode())
		require.Equal(t, 200, status, op.OperationID)
		ref := op.Responses[200].Content["application/json"].Schema.Ref
		s, ok := desc.Components.Schemas[ref[strings.LastIndex(ref, "/")+1:]]
		require.True(t, ok, "%s: schema %s", op.OperationID, ref)
		requireMatches(t, op.OperationID, s, ans)
	}
}

// requireMatches checks that v has exactly the properties of s, of their
// types, descending into objects.
func requireMatches(t *testing.T, at string, s schema, v map[string]any) {
	t.Helper()
	require.ElementsMatch(t, slices.Collect(maps.Keys(s.Properties)), slices.Collect(maps.Keys(v)), at)
	for name, ps := range s.Properties {
		where := at + "." + name
		switch x := v[name].(type) {
		case float64:
			require.Equal(t, "integer", ps.Type, where)
			require.Equal(t, math.Trunc(x), x, where)
		case bool:
			require.Equal(t, "boolean", ps.Type, where)
		case string:
			require.Equal(t, "string", ps.Type, where)
		case []any:
			require.Equal(t, "array", ps.Type, where)
		case map[string]any:
			require.Equal(t, "object", ps.Type, where)
			requireMatches(t, where, ps, x)
		default:
			t.Fatalf("%s: unexpected %T", where, x)
		}
	}
}
