// Package tdsreconcile finds and repairs what the webhooks missed: a
// [Reconciler] compares Zoho's records, read through Zoho's REST API, with
// what tds has applied, and ingests each drifted record again through the
// host's [tds.Processor], so that a repair is validated, ordered and
// applied exactly like a webhook.
//
//	proc, err := tds.NewProcessor(db)
//	rc, err := tdsreconcile.New(db, proc, tdsreconcile.ZohoAPI{ /* credentials */ })
//	run, err := rc.Run(ctx, tdsreconcile.Request{Mode: tdsreconcile.Full})
//
// Runs on a schedule ([WithSchedule]) are a leader task of the Workers:
//
//	w, err := tds.NewWorker(db, syncer, tds.WithLeaderTask(rc.Task()))
//
// Nothing is deleted quietly: a run that would delete more records of a
// type than its threshold ([WithMaxDeletes]) holds its deletes and ends
// [RunNeedsConfirmation] until [Reconciler.Confirm]. A drift item is
// resolved once its repair is applied ([Reconciler.Settle]). Every run logs
// its start and end at INFO.
//
// [Hooks] report runs, drift and Zoho API calls to metrics and alerting
// (packages tdsprom and tdsalert).
package tdsreconcile
