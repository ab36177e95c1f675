package tdsalert

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
)

// processAlertRules are the rules of the alerting child processes: only
// zoho_daily_webhooks, breaching from the first webhook of the day and
// firing at once.
func processAlertRules() io.Reader {
	return testdb.OnlyRule(alert.RuleZohoDailyWebhooks, "threshold: 0, for: 0s")
}

// childAlert is the body of an alerting process started by a
// multi-process test (TDS_TEST_CHILD_ALERT=receiver URL, TDS_TEST_URL: the
// database, TDS_TEST_NOW: its clock, fixed, RFC 3339): it builds an
// Alerter with processAlertRules notifying the receiver, prints "READY",
// waits for a line on stdin (the barrier), evaluates once, closes the
// Alerter, which waits for its queued notifications to be delivered, and
// prints "DONE".
func childAlert(receiverURL string) int {
	ctx := context.Background()
	now, err := time.Parse(time.RFC3339Nano, os.Getenv("TDS_TEST_NOW"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	db, err := tds.Open(ctx, os.Getenv("TDS_TEST_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer db.Close()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := New(db, WithClock(func() time.Time { return now }), WithLogger(logger),
		WithRules(processAlertRules()), WithWebhook(receiverURL, testAlertSecret))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// A first query before the barrier, so that both evaluations start
	// with an open connection and overlap as much as they can.
	if _, err := a.Alerts(ctx, ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = a.Close(ctx)
		return 2
	}
	fmt.Println("READY")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = a.Close(ctx)
		return 2
	}
	evalErr := a.Evaluate(ctx)
	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	closeErr := a.Close(closeCtx)
	if evalErr != nil || closeErr != nil {
		fmt.Fprintln(os.Stderr, "evaluate:", evalErr, "close:", closeErr)
		return 1
	}
	fmt.Println("DONE")
	return 0
}

// startAlertChild starts this test binary as an alerting process.
func startAlertChild(t *testing.T, dbURL, receiverURL string, now time.Time) *testkit.Child {
	t.Helper()
	return testkit.StartChild(t, "TDS_TEST_CHILD_ALERT="+receiverURL, "TDS_TEST_URL="+dbURL,
		"TDS_TEST_NOW="+now.Format(time.RFC3339Nano))
}

// TestAlertTwoProcessesSendOneNotification is issue 13's "two processes
// send one notification": two OS processes, each with its own Alerter and
// connection pool on the same database, evaluate a breaching rule at the
// same moment, released together by a line on their stdin; each waits in
// Close for the notifications it queued. The receiver gets exactly one
// firing notification, and tds_alerts holds one firing alert whose
// notification is recorded.
func TestAlertTwoProcessesSendOneNotification(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		rcv := newReceiver(t)
		e := newWorkerEnv(t, tdb)
		e.ingest(t, "1", "a") // one webhook today: above the threshold of 0

		children := []*testkit.Child{
			startAlertChild(t, tdb.URL, rcv.URL, e.clock.Now()),
			startAlertChild(t, tdb.URL, rcv.URL, e.clock.Now()),
		}
		testkit.Release(t, children...)
		for _, c := range children {
			out, _ := io.ReadAll(c.Stdout)
			require.NoError(t, c.Cmd.Wait(), "child stderr: %s", c.Stderr)
			require.Equal(t, "DONE\n", string(out), "child stderr: %s", c.Stderr)
		}

		// Both processes have exited, after delivering what they queued.
		require.Equal(t, 1, rcv.count(), "exactly one notification")
		m := rcv.next(t)
		require.Equal(t, "firing", m.Status)
		require.Len(t, m.Alerts, 1)
		require.Equal(t, alert.RuleZohoDailyWebhooks, m.Alerts[0].Labels["alertname"])

		require.Equal(t, 1, testkit.Count(t, tdb.DB, "SELECT COUNT(*) FROM tds_alerts"), "one alert")
		require.Equal(t, 1, testkit.Count(t, tdb.DB, "SELECT COUNT(*) FROM tds_alerts WHERE rule = ? AND state = ? AND last_notified_at IS NOT NULL",
			alert.RuleZohoDailyWebhooks, StateFiring), "firing, its notification recorded")
	})
}
