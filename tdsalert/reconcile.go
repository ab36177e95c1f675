package tdsalert

import (
	"time"

	"github.com/tdscore/tds/tdsreconcile"
)

// ReconcileHooks returns the hooks that count, for the rules
// zoho_rate_limited and zoho_auth, Zoho's 429 answers and the failed token
// refreshes of a Reconciler. Give them to the Reconciler with
// tdsreconcile.WithHooks.
func (a *Alerter) ReconcileHooks() tdsreconcile.Hooks {
	return tdsreconcile.Hooks{
		APIResponse:  func(_ string, status int, _ time.Duration) { a.countZohoResponse(status) },
		TokenRefresh: a.countTokenRefresh,
	}
}
