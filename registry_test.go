package tds

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestZohoRegistryPreset(t *testing.T) {
	t.Parallel()
	r := ZohoRegistry()
	for _, tc := range []struct {
		route, name, idField string
		priority             int
		table, module        string
		version              string
	}{
		{"products", "product", "item_id", 5, "products", "item", "last_modified_time"},
		{"customers", "customer", "contact_id", 5, "customers", "contact", "last_modified_time"},
		{"invoices", "invoice", "invoice_id", 2, "invoices", "invoice", "last_modified_time"},
		{"bills", "bill", "bill_id", 5, "bills", "bill", "last_modified_time"},
		{"credit-notes", "credit_note", "creditnote_id", 8, "credit_notes", "creditnote", "last_modified_time"},
		{"stock", "stock", "item_id", 8, "stock", "item", "last_modified_time"},
		{"prices", "price_list", "pricebook_id", 8, "price_lists", "pricebook", ""},
	} {
		et, ok := r.ByRoute(tc.route)
		require.True(t, ok, tc.route)
		require.Equal(t, tc.name, et.Name)
		require.Equal(t, tc.idField, et.IDField)
		require.Equal(t, tc.priority, et.Priority)
		require.Equal(t, tc.table, et.MirrorTable)
		require.Equal(t, []string{tc.module}, et.ModuleKeys)
		require.Equal(t, tc.version, et.VersionField)
	}
	require.Len(t, r.Types(), 7)
}

func TestRegistryRegister(t *testing.T) {
	t.Parallel()
	r := ZohoRegistry()
	require.NoError(t, r.Register(EntityType{Name: "order", Route: "orders", IDField: "salesorder_id"}))
	et, ok := r.Lookup("order")
	require.True(t, ok)
	require.Equal(t, 2, et.Priority, "order defaults to priority 2")
	require.Equal(t, "orders", et.MirrorTable)

	require.NoError(t, r.Register(EntityType{Name: "vendor", IDField: "contact_id"}))
	et, _ = r.Lookup("vendor")
	require.Equal(t, DefaultPriority, et.Priority)
	require.Equal(t, "vendor", et.Route)

	// A second, separate registry does not see the first one's types.
	_, ok = ZohoRegistry().Lookup("order")
	require.False(t, ok)

	for _, bad := range []EntityType{
		{Name: "product", IDField: "x"},                          // taken
		{Name: "thing", Route: "products", IDField: "x"},         // route taken
		{Name: "Bad Name", IDField: "x"},                         // name
		{Name: "thing2"},                                         // no id field
		{Name: "thing3", IDField: "x", Priority: 11},             // priority
		{Name: "thing4", IDField: "x", MirrorTable: "a; DROP"},   // table
		{Name: "thing5", IDField: "x", ModuleKeys: []string{""}}, // module key
	} {
		require.Error(t, r.Register(bad), bad.Name)
	}
}
