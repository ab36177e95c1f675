package tds

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// EntityType describes one kind of record the source sends webhooks for.
type EntityType struct {
	// Name is the envelope's entity_type, such as "product".
	Name string
	// Route is the URL segment of its webhook, such as "products" in
	// POST /webhooks/products. Defaults to Name.
	Route string
	// IDField is the field of data that holds the entity's id, such as
	// "item_id"; the envelope's entity_id must equal it. Required.
	IDField string
	// RequiredFields are other fields data must carry, except in deletes.
	RequiredFields []string
	// Priority is the queue priority of its events, 1 (highest) to 10
	// (lowest). Zero means [DefaultPriority], or 2 for a type named "order".
	Priority int
	// MirrorTable is the local table a mirroring syncer writes it to.
	// Defaults to Name + "s".
	MirrorTable string
	// MaxAttempts is how many times its jobs are tried before they are
	// dead-lettered. Zero means the processor's [WithMaxAttempts].
	MaxAttempts int
	// ModuleKeys are the keys that wrap its record in Zoho's Default
	// Payload, the module's record as Zoho's API returns it, such as "item"
	// in {"item": {...}}. A webhook body that is not a tds envelope is read
	// as a Default Payload under the first of these keys it holds. Empty
	// means the type takes envelopes only.
	ModuleKeys []string
	// VersionField is the data field that carries the record's version,
	// such as Zoho's "last_modified_time": an event's version
	// ([InboxEvent.Version]) is read from it, in Zoho's layout or RFC 3339,
	// and [DefaultValidator] checks its layout. Setting it also says the
	// type's records always carry it, so an event accepted under Zoho's
	// signature ([WithZohoSecret]), which signs no delivery id, is invalid
	// without it: its version is what keeps a replayed older record from
	// overwriting a newer one. Empty means no such check, and the version
	// is read from last_modified_time when the record has one.
	VersionField string
	// API says where the source's REST API lists and returns records of
	// this type, for reconciliation (package tdsreconcile). Nil means the type is
	// not reconciled.
	API *EntityAPI
}

// EntityAPI locates an entity type's records in the source's REST API,
// relative to the API's base URL (for Zoho Books, .../books/v3).
type EntityAPI struct {
	// ListPath lists the records, such as "/items"; ListKey is the key of
	// the list in the answer, such as "items".
	ListPath, ListKey string
	// DetailPath, followed by "/" and an id, returns one record, such as
	// "/items"; RecordKey is its key in the answer, such as "item".
	DetailPath, RecordKey string
}

// Registry is the set of entity types tds accepts. It is safe for
// concurrent use; types may be registered while it is in use.
type Registry struct {
	mu      sync.RWMutex
	byName  map[string]EntityType
	byRoute map[string]string
}

// zohoTypes is the built-in preset for Zoho Books and Zoho Inventory.
// The module keys are those of Zoho's API responses. Price lists have no
// VersionField: we found no last_modified_time in Zoho's pricebook record
// (an assumption, not a documented fact).
// The API paths are those of Zoho's Books and Inventory API documentation,
// except the price lists': /pricebooks is assumed (see docs/zoho-api.md),
// so re-register price_list with another API to change it. Stock has no
// endpoint of its own: it is read from the items list (stock_on_hand).
var zohoTypes = []EntityType{
	{Name: "product", Route: "products", IDField: "item_id", RequiredFields: []string{"name"}, Priority: 5, MirrorTable: "products",
		ModuleKeys: []string{"item"}, VersionField: zohoVersionField, API: zohoAPI("items", "item")},
	{Name: "customer", Route: "customers", IDField: "contact_id", RequiredFields: []string{"contact_name"}, Priority: 5, MirrorTable: "customers",
		ModuleKeys: []string{"contact"}, VersionField: zohoVersionField, API: zohoAPI("contacts", "contact")},
	{Name: "invoice", Route: "invoices", IDField: "invoice_id", RequiredFields: []string{"customer_id", "invoice_number"}, Priority: 2, MirrorTable: "invoices",
		ModuleKeys: []string{"invoice"}, VersionField: zohoVersionField, API: zohoAPI("invoices", "invoice")},
	{Name: "bill", Route: "bills", IDField: "bill_id", RequiredFields: []string{"vendor_id", "bill_number"}, Priority: 5, MirrorTable: "bills",
		ModuleKeys: []string{"bill"}, VersionField: zohoVersionField, API: zohoAPI("bills", "bill")},
	{Name: "credit_note", Route: "credit-notes", IDField: "creditnote_id", RequiredFields: []string{"customer_id", "creditnote_number"}, Priority: 8, MirrorTable: "credit_notes",
		ModuleKeys: []string{"creditnote"}, VersionField: zohoVersionField, API: zohoAPI("creditnotes", "creditnote")},
	{Name: "stock", Route: "stock", IDField: "item_id", RequiredFields: []string{"stock_on_hand"}, Priority: 8, MirrorTable: "stock",
		ModuleKeys: []string{"item"}, VersionField: zohoVersionField, API: zohoAPI("items", "item")},
	{Name: "price_list", Route: "prices", IDField: "pricebook_id", RequiredFields: []string{"name"}, Priority: 8, MirrorTable: "price_lists",
		ModuleKeys: []string{"pricebook"}, API: zohoAPI("pricebooks", "pricebook")},
}

// zohoAPI locates a Zoho module whose list and detail share a path.
func zohoAPI(path, recordKey string) *EntityAPI {
	return &EntityAPI{ListPath: "/" + path, ListKey: path, DetailPath: "/" + path, RecordKey: recordKey}
}

// zohoVersionField is the field of Zoho records that carries their version.
const zohoVersionField = "last_modified_time"

// wellKnownPriorities are the defaults of types users commonly register.
var wellKnownPriorities = map[string]int{"order": 2}

// NewRegistry returns a registry holding types.
func NewRegistry(types ...EntityType) (*Registry, error) {
	r := &Registry{byName: make(map[string]EntityType), byRoute: make(map[string]string)}
	for _, t := range types {
		if err := r.Register(t); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// ZohoRegistry returns a new registry holding the Zoho Books / Zoho
// Inventory preset: product, customer, invoice, bill, credit_note, stock and
// price_list. Each call returns a separate registry, free to extend.
func ZohoRegistry() *Registry {
	r, err := NewRegistry(zohoTypes...)
	if err != nil {
		panic(err) // the preset is a constant; a failure is a bug in tds
	}
	return r
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
var tablePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Register adds t, filling in its defaults. It fails if the name or route
// is already taken or a field is malformed.
func (r *Registry) Register(t EntityType) error {
	if !namePattern.MatchString(t.Name) {
		return fmt.Errorf("tds: registering entity type %q: name must match %s", t.Name, namePattern)
	}
	if t.Route == "" {
		t.Route = t.Name
	}
	if !namePattern.MatchString(t.Route) {
		return fmt.Errorf("tds: registering entity type %q: route %q must match %s", t.Name, t.Route, namePattern)
	}
	if strings.TrimSpace(t.IDField) == "" {
		return fmt.Errorf("tds: registering entity type %q: IDField is required", t.Name)
	}
	if t.Priority == 0 {
		t.Priority = DefaultPriority
		if p, ok := wellKnownPriorities[t.Name]; ok {
			t.Priority = p
		}
	}
	if t.Priority < 1 || t.Priority > 10 {
		return fmt.Errorf("tds: registering entity type %q: priority must be 1..10, got %d", t.Name, t.Priority)
	}
	if t.MirrorTable == "" {
		t.MirrorTable = t.Name + "s"
	}
	if !tablePattern.MatchString(t.MirrorTable) {
		return fmt.Errorf("tds: registering entity type %q: mirror table %q is not a plain SQL identifier", t.Name, t.MirrorTable)
	}
	if t.MaxAttempts < 0 {
		return fmt.Errorf("tds: registering entity type %q: MaxAttempts must be >= 0, got %d", t.Name, t.MaxAttempts)
	}
	for _, k := range t.ModuleKeys {
		if strings.TrimSpace(k) == "" {
			return fmt.Errorf("tds: registering entity type %q: empty module key", t.Name)
		}
	}
	if a := t.API; a != nil {
		for _, f := range []struct{ name, v string }{{"ListPath", a.ListPath}, {"DetailPath", a.DetailPath}} {
			if !strings.HasPrefix(f.v, "/") || strings.ContainsAny(f.v, "?#") {
				return fmt.Errorf("tds: registering entity type %q: API.%s %q must be a path starting with /", t.Name, f.name, f.v)
			}
		}
		if strings.TrimSpace(a.ListKey) == "" || strings.TrimSpace(a.RecordKey) == "" {
			return fmt.Errorf("tds: registering entity type %q: API.ListKey and API.RecordKey are required", t.Name)
		}
		api := *a
		t.API = &api
	}
	t.RequiredFields = append([]string(nil), t.RequiredFields...)
	t.ModuleKeys = append([]string(nil), t.ModuleKeys...)

	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byName[t.Name]; ok {
		return fmt.Errorf("tds: registering entity type %q: already registered", t.Name)
	}
	if other, ok := r.byRoute[t.Route]; ok {
		return fmt.Errorf("tds: registering entity type %q: route %q is taken by %q", t.Name, t.Route, other)
	}
	r.byName[t.Name] = t
	r.byRoute[t.Route] = t.Name
	return nil
}

// Lookup returns the entity type with the given name.
func (r *Registry) Lookup(name string) (EntityType, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.byName[name]
	return t, ok
}

// typeOf is ev's entity type in r. The first lookup of an event is kept on
// it, so one event costs one lookup however many steps ask: the cache
// holds while ev names the same type and is asked of the same registry.
func (r *Registry) typeOf(ev *Event) (*EntityType, bool) {
	if ev.etReg == r && ev.et != nil && ev.et.Name == ev.EntityType {
		return ev.et, true
	}
	t, ok := r.Lookup(ev.EntityType)
	if !ok {
		return nil, false
	}
	ev.et, ev.etReg = &t, r
	return ev.et, true
}

// typeOf is ev's type in the configured registry, or nil.
func (c *config) typeOf(ev *Event) *EntityType {
	t, _ := c.registry.typeOf(ev)
	return t
}

// typeNamed is the registered type named name, or nil.
func (c *config) typeNamed(name string) *EntityType {
	if t, ok := c.registry.Lookup(name); ok {
		return &t
	}
	return nil
}

// versionField is the data field the type's version is read from: its
// VersionField, or Zoho's last_modified_time for a type that names none.
func (t *EntityType) versionField() string {
	if t == nil || t.VersionField == "" {
		return zohoVersionField
	}
	return t.VersionField
}

// ByRoute returns the entity type whose webhook route is route.
func (r *Registry) ByRoute(route string) (EntityType, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	name, ok := r.byRoute[route]
	if !ok {
		return EntityType{}, false
	}
	return r.byName[name], true
}

// Types returns every registered type, sorted by name.
func (r *Registry) Types() []EntityType {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]EntityType, 0, len(r.byName))
	for _, t := range r.byName {
		if t.API != nil {
			api := *t.API
			t.API = &api
		}
		t.RequiredFields = append([]string(nil), t.RequiredFields...)
		t.ModuleKeys = append([]string(nil), t.ModuleKeys...)
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
