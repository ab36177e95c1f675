// Package tdsalert evaluates tds's built-in alert rules against its
// database and sends their alerts to an Alertmanager-shaped webhook
// ([WithWebhook]), to Slack ([WithSlack]), or to Alertmanager itself
// through its API v2, as Prometheus does ([WithAlertmanager]).
//
// The rules (queue_oldest_pending, dead_letters, sync_failure_ratio,
// auth_failures, source_silent, reconcile_stale, drift, zoho_rate_limited,
// zoho_daily_webhooks, zoho_auth) have built-in thresholds that a YAML
// document changes ([WithRules]). An [Alerter] keeps its alerts in the
// database, so they hold across processes and restarts, and one
// notification is sent however many processes evaluate.
//
// The host wires it to the other parts: the Worker leading housekeeping
// evaluates the rules ([Alerter.Task]); the Handler reports refused
// webhooks ([Alerter.ObserveWebhook]); a Reconciler reports Zoho's 429s and
// failed token refreshes ([Alerter.ReconcileHooks]):
//
//	a, err := tdsalert.New(db, tdsalert.WithSlack(slackURL),
//		tdsalert.WithReconcileInterval(tdsreconcile.DefaultInterval))
//	if err != nil { ... }
//	defer a.Close(context.Background())
//	h, err := tds.NewHandler(db, tds.WithWebhookKeys(key), tds.WithWebhookObserver(a.ObserveWebhook))
//	rc, err := tdsreconcile.New(db, h.Processor(), api, tdsreconcile.WithHooks(a.ReconcileHooks()))
//	w, err := tds.NewWorker(db, syncer, tds.WithLeaderTask(a.Task()), tds.WithLeaderTask(rc.Task()))
//
// A process without a Worker evaluates with [Alerter.Run] instead. The
// console (package tdsui) lists, acknowledges and silences the alerts
// through [Alerter.Alerts], [Alerter.Ack] and [Alerter.Silence].
package tdsalert
