// Command fakezoho runs a fake Zoho (the OAuth token endpoint and the
// Books and Inventory APIs, as package tdstest's Zoho fakes them) with
// sample records, so that reconciliation can be seen without a Zoho
// account:
//
//	go run ./examples/fakezoho
//
// It prints the TDS_ZOHO_* lines that point the reference server at it;
// paste them into the server's environment and start the server. It runs
// until interrupted (Ctrl-C or SIGTERM).
//
// Flags: -addr (default 127.0.0.1:8002), -records (sample records per
// module, default 20), -org (the organisation id it serves).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/zohofake"
)

// The credentials the fake accepts. They open nothing but this fake.
const (
	clientID     = "fakezoho-client-id"
	clientSecret = "fakezoho-client-secret"
	refreshToken = "fakezoho-refresh-token"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "fakezoho:", err)
		os.Exit(1)
	}
}

// run serves the fake until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakezoho", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8002", "address to listen on")
	n := fs.Int("records", 20, "sample records per module (items, contacts, invoices, bills)")
	org := fs.String("org", "fakezoho-org", "organisation id the fake serves")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 0 {
		return fmt.Errorf("-records: must be >= 0, got %d", *n)
	}
	srv, err := zohofake.Listen(zohofake.Options{ClientID: clientID, ClientSecret: clientSecret,
		RefreshToken: refreshToken, OrganizationID: *org, Addr: *addr})
	if err != nil {
		return fmt.Errorf("-addr %s: %w", *addr, err)
	}
	defer srv.Close()
	putSamples(srv, *n, time.Now().UTC().Truncate(time.Second))

	fmt.Fprintf(stdout, "# A fake Zoho with %d sample records per module listens on %s.\n", *n, srv.URL())
	fmt.Fprintln(stdout, "# Paste these lines into the environment of the server (examples/server), then start it:")
	for _, line := range envLines(srv.URL(), *org) {
		fmt.Fprintln(stdout, line)
	}
	fmt.Fprintln(stdout, "# Ctrl-C stops the fake.")
	<-ctx.Done()
	fmt.Fprintln(stdout, "# fakezoho: stopped")
	return nil
}

// envLines are the server's settings that reach the fake.
func envLines(url, org string) []string {
	return []string{
		"export TDS_ZOHO_CLIENT_ID=" + clientID,
		"export TDS_ZOHO_CLIENT_SECRET=" + clientSecret,
		"export TDS_ZOHO_REFRESH_TOKEN=" + refreshToken,
		"export TDS_ZOHO_ORGANIZATION_ID=" + org,
		"export TDS_ZOHO_ACCOUNTS_URL=" + url,
		"export TDS_ZOHO_API_URL=" + url,
	}
}

// putSamples gives each module n records, edited a minute apart up to now.
func putSamples(srv *zohofake.Server, n int, now time.Time) {
	for i := range n {
		at := now.Add(-time.Duration(n-i) * time.Minute).Format(tds.ZohoTimeLayout)
		stamp := map[string]any{"created_time": at, "last_modified_time": at}
		with := func(rec map[string]any) map[string]any {
			for k, v := range stamp {
				rec[k] = v
			}
			return rec
		}
		srv.Put("items", with(map[string]any{"item_id": fmt.Sprintf("item-%03d", i+1),
			"name": fmt.Sprintf("Sample item %d", i+1), "rate": 10 + i, "stock_on_hand": 100 - i}))
		srv.Put("contacts", with(map[string]any{"contact_id": fmt.Sprintf("contact-%03d", i+1),
			"contact_name": fmt.Sprintf("Sample customer %d", i+1)}))
		srv.Put("invoices", with(map[string]any{"invoice_id": fmt.Sprintf("invoice-%03d", i+1),
			"customer_id": fmt.Sprintf("contact-%03d", i+1), "invoice_number": fmt.Sprintf("INV-%05d", i+1),
			"total": 100 + i, "line_items": []any{map[string]any{"item_id": fmt.Sprintf("item-%03d", i+1), "quantity": 1}}}))
		srv.Put("bills", with(map[string]any{"bill_id": fmt.Sprintf("bill-%03d", i+1),
			"vendor_id": "vendor-001", "bill_number": fmt.Sprintf("BILL-%05d", i+1), "total": 50 + i}))
	}
}
