package testdb

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/zohofake"
	"github.com/tdscore/tds/tdstest"
)

// Zoho starts a fake Zoho with its default credentials, closed when the
// test ends, and creates db's mirror tables of tds.ZohoRegistry for the
// records a reconciliation repairs.
func Zoho(t testing.TB, db *bun.DB) *zohofake.Server {
	t.Helper()
	fake := zohofake.New(zohofake.Options{})
	t.Cleanup(fake.Close)
	require.NoError(t, tds.MigrateMirror(context.Background(), db, tds.ZohoRegistry()))
	return fake
}

// ZohoAPI is the tdsreconcile.ZohoAPI (a value of it converts to one) that
// reaches a fake Zoho at url with its default credentials, unpaced.
func ZohoAPI(url string) tdstest.ZohoAPI {
	return tdstest.ZohoAPI{
		ClientID: "client-id", ClientSecret: "client-secret", RefreshToken: "refresh-token", OrganizationID: "org-1",
		AccountsURL: url, APIURL: url, RequestsPerMinute: -1,
	}
}

// ProductRecord builds product id as Zoho's API holds it, version at,
// with rev in its fields.
func ProductRecord(id string, at time.Time, rev int) map[string]any {
	zohoTime := at.UTC().Format(tds.ZohoTimeLayout)
	return map[string]any{"last_modified_time": zohoTime, "created_time": zohoTime, "rev": rev,
		"item_id": id, "name": fmt.Sprintf("Item %s r%d", id, rev), "rate": 10 + rev}
}

// PutProducts puts n products, pro-0000 and on, into fake, product i
// version base+i*step.
func PutProducts(fake *zohofake.Server, n int, base time.Time, step time.Duration) {
	for i := range n {
		fake.Put("items", ProductRecord(fmt.Sprintf("pro-%04d", i), base.Add(time.Duration(i)*step), 0))
	}
}

// EntityType is the entity type typ of tds.ZohoRegistry.
func EntityType(t testing.TB, typ string) tds.EntityType {
	t.Helper()
	et, ok := tds.ZohoRegistry().Lookup(typ)
	require.True(t, ok, typ)
	return et
}
