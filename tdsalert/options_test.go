package tdsalert

import (
	"context"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/tdstest"
)

// sampleOptions holds one valid value of every option of the package, by
// name. TestOptionDocs fails when an option is missing here.
func sampleOptions() map[string]Option {
	return map[string]Option{
		"WithRules":              WithRules(strings.NewReader("rules: []")),
		"WithRulesFile":          WithRulesFile(filepath.Join("testdata", "rules.yml")),
		"WithWebhook":            WithWebhook("https://alerts.example/hook", testAlertSecret),
		"WithSlack":              WithSlack("https://hooks.example/services/x"),
		"WithEvalInterval":       WithEvalInterval(time.Second),
		"WithRepeat":             WithRepeat(time.Hour),
		"WithNotifyTimeout":      WithNotifyTimeout(time.Second),
		"WithClock":              WithClock(time.Now),
		"WithLogger":             WithLogger(testdb.QuietLogger),
		"WithSource":             WithSource("erp"),
		"WithReconcileInterval":  WithReconcileInterval(time.Hour),
		"WithAlertmanager":       WithAlertmanager("http://alertmanager.example:9093", "http://alertmanager2.example:9093"),
		"WithAlertmanagerResend": WithAlertmanagerResend(time.Minute),
		"WithExternalURL":        WithExternalURL("https://tds.example"),
	}
}

// TestOptionDocs keeps the documentation true: every option has a sample,
// and its doc ends with its default.
func TestOptionDocs(t *testing.T) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		require.NoError(t, err)
		files = append(files, f)
	}
	pkg, err := doc.NewFromFiles(fset, files, "github.com/tdscore/tds/tdsalert")
	require.NoError(t, err)
	var found []string
	for _, typ := range pkg.Types {
		if typ.Name != "Option" {
			continue
		}
		for _, fn := range typ.Funcs {
			found = append(found, fn.Name)
			text := strings.Join(strings.Fields(fn.Doc), " ")
			i := strings.LastIndex(text, "Defaults to ")
			require.GreaterOrEqual(t, i, 0, "%s: its doc must end with its default: %s", fn.Name, text)
			require.NotContains(t, text[i:], ". ", "%s: its doc ends with its default: %s", fn.Name, text)
			require.NotContains(t, text, "Applies to", "%s: an option of this package applies to New alone", fn.Name)
		}
	}
	var want []string
	for name := range sampleOptions() {
		want = append(want, name)
	}
	sort.Strings(found)
	sort.Strings(want)
	require.Equal(t, want, found, "every option has a sample in sampleOptions, and only options do")
}

// TestOptionsAccepted gives New every option, alone and all together.
func TestOptionsAccepted(t *testing.T) {
	db := tdstest.SQLite(t)
	newAndClose := func(opts ...Option) error {
		a, err := New(db, opts...)
		if err != nil {
			return err
		}
		return a.Close(context.Background())
	}
	for name, o := range sampleOptions() {
		require.NoError(t, newAndClose(o), name)
	}
	var all []Option
	for _, o := range sampleOptions() {
		all = append(all, o)
	}
	require.NoError(t, newAndClose(all...))
	require.NoError(t, newAndClose(Option{}), "the zero Option does nothing")
}

func TestOptionErrors(t *testing.T) {
	db := tdstest.SQLite(t)
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"nil reader", []Option{WithRules(nil)}, "tdsalert: WithRules: reader is nil"},
		{"unknown rule", []Option{WithRules(strings.NewReader("rules: [{name: nope}]"))}, "tdsalert: WithRules: "},
		{"missing file", []Option{WithRulesFile(filepath.Join("testdata", "none.yml"))}, "tdsalert: WithRulesFile: "},
		{"webhook URL", []Option{WithWebhook("ftp://x", "")}, "tdsalert: WithWebhook: want an http or https URL (value not shown"},
		{"webhook secret", []Option{WithWebhook("https://x.example", "secret")}, "tdsalert: WithWebhook: "},
		{"slack URL", []Option{WithSlack("")}, "tdsalert: WithSlack: want an http or https URL (value not shown"},
		{"alertmanager none", []Option{WithAlertmanager()}, "tdsalert: WithAlertmanager: no URL"},
		{"alertmanager URL", []Option{WithAlertmanager("http://am.example", "am.example")}, "tdsalert: WithAlertmanager: URL 2: want an http or https URL (value not shown"},
		{"alertmanager resend", []Option{WithAlertmanagerResend(0)}, "tdsalert: WithAlertmanagerResend: must be > 0"},
		{"external URL", []Option{WithExternalURL("tds.example")}, "tdsalert: WithExternalURL: want an http or https URL"},
		{"interval", []Option{WithEvalInterval(0)}, "tdsalert: WithEvalInterval: must be > 0, got 0s"},
		{"repeat", []Option{WithRepeat(-time.Second)}, "tdsalert: WithRepeat: must be > 0, got -1s"},
		{"timeout", []Option{WithNotifyTimeout(0)}, "tdsalert: WithNotifyTimeout: must be > 0, got 0s"},
		{"clock", []Option{WithClock(nil)}, "tdsalert: WithClock: clock is nil"},
		{"logger", []Option{WithLogger(nil)}, "tdsalert: WithLogger: logger is nil"},
		{"source", []Option{WithSource(" ")}, "tdsalert: WithSource: must not be empty"},
		{"reconcile interval", []Option{WithReconcileInterval(-time.Hour)}, "tdsalert: WithReconcileInterval: must be >= 0, got -1h0m0s"},
		{"several at once", []Option{WithEvalInterval(0), WithClock(nil)},
			"tdsalert: WithEvalInterval: must be > 0, got 0s\ntdsalert: WithClock: clock is nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(db, tc.opts...)
			require.Nil(t, a)
			require.ErrorContains(t, err, tc.want)
			require.True(t, strings.HasPrefix(err.Error(), tc.want), err.Error())
		})
	}
	a, err := New(nil)
	require.Nil(t, a)
	require.EqualError(t, err, "tdsalert: New: db is nil")
}

// TestObserveWebhookCountsRefusals: of a Handler's answers, 401 and 429
// count towards auth_failures; sign-ins refused by the console too.
func TestObserveWebhookCountsRefusals(t *testing.T) {
	clock := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	a, err := New(tdstest.SQLite(t), WithClock(func() time.Time { return clock }), WithLogger(testdb.QuietLogger))
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	for _, status := range []int{0, http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound,
		http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		a.ObserveWebhook(tds.WebhookResult{Route: "products", EntityType: "product", Status: status})
	}
	a.Refused()
	a.countMu.Lock()
	defer a.countMu.Unlock()
	require.Equal(t, map[countKey]int64{{counterRefused, clock}: 3}, a.counts)
}

// TestTask: the leader task evaluates at the Alerter's interval.
func TestTask(t *testing.T) {
	a, err := New(tdstest.SQLite(t), WithEvalInterval(time.Minute), WithLogger(testdb.QuietLogger))
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	task := a.Task()
	require.Equal(t, "alerts", task.Name)
	require.Equal(t, time.Minute, task.Interval)
	require.NoError(t, task.Run(t.Context()))
	require.False(t, a.lastEval.IsZero(), "the task evaluated")
}

// TestNotifyURLErrorHidesURL: a notifier URL is a credential, so the error
// for a bad one names what is wrong without echoing it.
func TestNotifyURLErrorHidesURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"hooks.slack.com/services/T0SECRET/B0SECRET/PathSecret",
		"ftp://hooks.example/services/T0SECRET/B0SECRET/PathSecret",
		"https:///services/T0SECRET/B0SECRET/PathSecret?token=QueryTokenSecret",
		"https://hooks.example/services/T0SECRET\x7f/PathSecret?token=QueryTokenSecret",
		"https://[::1/services/T0SECRET/B0SECRET/PathSecret?token=QueryTokenSecret",
	} {
		for _, o := range []Option{WithSlack(u), WithWebhook(u, "")} {
			_, err := newSettings([]Option{o})
			require.Error(t, err, u)
			for _, secret := range []string{"T0SECRET", "PathSecret", "QueryTokenSecret", "token="} {
				require.NotContains(t, err.Error(), secret)
			}
		}
	}
}
