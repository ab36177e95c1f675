package tds

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDefaultValidatorAcceptsFixtures(t *testing.T) {
	t.Parallel()
	v := DefaultValidator(ZohoRegistry())
	for _, f := range []string{"bill.json", "credit_note.json", "customer.json", "invoice.json",
		"price_list.json", "product.json", "product_delete.json", "stock.json"} {
		require.NoError(t, v.Validate(context.Background(), fixture(t, f)), f)
	}
}

func TestDefaultValidatorReportsEveryProblem(t *testing.T) {
	t.Parallel()
	v := DefaultValidator(ZohoRegistry())
	ev := &Event{
		EventType:  "upsert",
		EntityType: "invoice",
		EntityID:   "42",
		Data:       json.RawMessage(`{"invoice_id":"41","last_modified_time":"yesterday"}`),
	}
	err := v.Validate(context.Background(), ev)
	var ve ValidationErrors
	require.True(t, errors.As(err, &ve))
	fields := map[string]bool{}
	for _, e := range ve {
		fields[e.Field] = true
	}
	require.Equal(t, map[string]bool{
		"event_type": true, "data.invoice_id": true, "data.customer_id": true,
		"data.invoice_number": true, "data.last_modified_time": true,
	}, fields)

	err = v.Validate(context.Background(), fixture(t, "invalid_product_missing_name.json"))
	require.True(t, errors.As(err, &ve))
	require.Equal(t, ValidationErrors{{Field: "data.name", Message: "is required"}}, ve)

	for _, tc := range []struct {
		ev    Event
		field string
	}{
		{Event{EventType: "update", EntityType: "widget", EntityID: "1", Data: json.RawMessage(`{}`)}, "entity_type"},
		{Event{EventType: "update", EntityType: "product", EntityID: "1"}, "data"},
		{Event{EventType: "update", EntityType: "product", EntityID: "1", Data: json.RawMessage(`[1]`)}, "data"},
		{Event{EventType: "update", EntityType: "product", EntityID: "1", Data: json.RawMessage(`{"name":"x"}`)}, "data.item_id"},
	} {
		err := v.Validate(context.Background(), &tc.ev)
		require.True(t, errors.As(err, &ve))
		require.Equal(t, tc.field, ve[0].Field)
	}
	// A delete needs only the id.
	require.NoError(t, v.Validate(context.Background(), &Event{EventType: "delete", EntityType: "product",
		EntityID: "7", Data: json.RawMessage(`{"item_id":7}`)}))
}

func TestDefaultPrioritizer(t *testing.T) {
	t.Parallel()
	p := DefaultPrioritizer(ZohoRegistry())
	require.Equal(t, 2, p.Priority(context.Background(), &Event{EntityType: "invoice"}))
	require.Equal(t, 8, p.Priority(context.Background(), &Event{EntityType: "price_list"}))
	require.Equal(t, DefaultPriority, p.Priority(context.Background(), &Event{EntityType: "unknown"}))
}
