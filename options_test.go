package tds

import (
	"context"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
)

// sampleOptions holds one valid value of every option of the package, by
// name. TestOptionDocs fails when an option is missing here.
func sampleOptions() map[string]Option {
	reg := ZohoRegistry()
	return map[string]Option{
		"WithRegistry":                WithRegistry(reg),
		"WithValidator":               WithValidator(DefaultValidator(reg)),
		"WithPrioritizer":             WithPrioritizer(DefaultPrioritizer(reg)),
		"WithSource":                  WithSource("erp"),
		"WithRedactHeaders":           WithRedactHeaders("X-Tenant"),
		"WithMaxAttempts":             WithMaxAttempts(5),
		"WithIngestBatch":             WithIngestBatch(10),
		"WithClock":                   WithClock(time.Now),
		"WithLogger":                  WithLogger(quietLogger),
		"WithConcurrency":             WithConcurrency(2),
		"WithBatchSize":               WithBatchSize(10),
		"WithPollInterval":            WithPollInterval(time.Second),
		"WithLeaseDuration":           WithLeaseDuration(time.Minute),
		"WithLeaderLease":             WithLeaderLease(time.Minute),
		"WithPollOnly":                WithPollOnly(),
		"WithListenDB":                WithListenDB(&bun.DB{}),
		"WithShutdownTimeout":         WithShutdownTimeout(time.Second),
		"WithWorkerID":                WithWorkerID("w1"),
		"WithHousekeepingInterval":    WithHousekeepingInterval(time.Minute),
		"WithRetention":               WithRetention(time.Hour),
		"WithRetryPolicy":             WithRetryPolicy(DefaultRetryPolicy()),
		"WithObserver":                WithObserver(func(JobResult) {}),
		"WithWebhookKeys":             WithWebhookKeys(testWebhookKey),
		"WithZohoSecret":              WithZohoSecret("zohoSecret0123"),
		"WithStandardWebhooksSecrets": WithStandardWebhooksSecrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
		"WithoutAuthentication":       WithoutAuthentication(),
		"WithMaxBodyBytes":            WithMaxBodyBytes(1024),
		"WithTrustedProxies":          WithTrustedProxies("10.0.0.0/8"),
		"WithDeliveryIDHeader":        WithDeliveryIDHeader("X-Delivery-Id"),
		"WithRetryAfter":              WithRetryAfter(time.Minute),
		"WithRefusalLimit":            WithRefusalLimit(20, time.Minute),
		"WithWebhookObserver":         WithWebhookObserver(func(WebhookResult) {}),
		"WithBatchObserver":           WithBatchObserver(func(int) {}),
		"WithTraceContext":            WithTraceContext(func(context.Context) string { return "" }),
		"WithIngestHook": WithIngestHook(func(ctx context.Context, _ []context.Context) (context.Context, func(error)) {
			return ctx, nil
		}),
		"WithAttemptHook": WithAttemptHook(func(ctx context.Context, _ AttemptInfo) (context.Context, func([]JobResult, error)) {
			return ctx, nil
		}),
		"WithLeaderTask": WithLeaderTask(LeaderTask{Name: "t", Interval: time.Minute, Run: func(context.Context) error { return nil }}),
	}
}

// appliesSentence is the sentence an option's doc must carry for t.
func appliesSentence(t target) string {
	var names []string
	for i, n := range targetNames {
		if t&(1<<i) != 0 {
			names = append(names, "["+n+"]")
		}
	}
	list := names[len(names)-1]
	if len(names) > 1 {
		list = strings.Join(names[:len(names)-1], ", ") + " and " + list
	}
	return "Applies to " + list + "."
}

// TestOptionDocs keeps the documentation true: every function of the
// package that returns an Option says, before its default, exactly which
// constructors it applies to.
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
	pkg, err := doc.NewFromFiles(fset, files, "github.com/tdscore/tds")
	require.NoError(t, err)

	// Functions returning Option are grouped under the type by go/doc.
	var found []string
	for _, typ := range pkg.Types {
		if typ.Name != "Option" {
			continue
		}
		for _, fn := range typ.Funcs {
			found = append(found, fn.Name)
		}
	}
	samples := sampleOptions()
	var want []string
	for name := range samples {
		want = append(want, name)
	}
	sort.Strings(found)
	sort.Strings(want)
	require.Equal(t, want, found, "every option has a sample in sampleOptions, and only options do")

	for _, typ := range pkg.Types {
		if typ.Name != "Option" {
			continue
		}
		for _, fn := range typ.Funcs {
			o := samples[fn.Name]
			require.Equal(t, fn.Name, o.name, "%s names itself in its errors", fn.Name)
			require.NotZero(t, o.targets, fn.Name)
			text := strings.Join(strings.Fields(fn.Doc), " ")
			sentence := appliesSentence(o.targets)
			i := strings.Index(text, sentence)
			require.GreaterOrEqual(t, i, 0, "%s: its doc must say %q: %s", fn.Name, sentence, text)
			require.Equal(t, 1, strings.Count(text, "Applies to"), "%s: one Applies-to sentence: %s", fn.Name, text)
			d := strings.Index(text, "Defaults to")
			require.Greater(t, d, i, "%s: Applies to comes before Defaults to: %s", fn.Name, text)
		}
	}

	// The constructors point at the options instead of listing them.
	docs := map[string]string{}
	for _, fn := range pkg.Funcs {
		docs[fn.Name] = fn.Doc
	}
	for _, typ := range pkg.Types {
		for _, fn := range typ.Funcs {
			docs[fn.Name] = fn.Doc
		}
	}
	for _, name := range targetNames {
		text := strings.Join(strings.Fields(docs[name]), " ")
		require.Contains(t, text, "opts are the options that apply to "+name+"; see [Option].", name)
	}
}

// constructors builds each constructor of the package with opts.
func constructors(db *bun.DB) map[target]func(opts ...Option) error {
	noop := SyncFunc(func(context.Context, bun.Tx, *SyncJob) error { return nil })
	return map[target]func(opts ...Option) error{
		forProcessor: func(opts ...Option) error { _, err := NewProcessor(db, opts...); return err },
		forInbox:     func(opts ...Option) error { _, err := NewInbox(db, opts...); return err },
		forQueue:     func(opts ...Option) error { _, err := NewQueue(db, opts...); return err },
		forWorker:    func(opts ...Option) error { _, err := NewWorker(db, noop, opts...); return err },
		forMirrorSyncer: func(opts ...Option) error {
			_, err := NewMirrorSyncer(opts...)
			return err
		},
		forHandler: func(opts ...Option) error { _, err := NewHandler(db, opts...); return err },
	}
}

func TestForeignOptionIsAnError(t *testing.T) {
	db := openTestDB(t, "sqlite").db
	noop := SyncFunc(func(context.Context, bun.Tx, *SyncJob) error { return nil })
	for _, tc := range []struct {
		name string
		new  func() error
		want string
	}{
		{"NewProcessor", func() error { _, err := NewProcessor(db, WithConcurrency(8)); return err },
			"tds: WithConcurrency does not apply to NewProcessor"},
		{"NewInbox", func() error { _, err := NewInbox(db, WithRegistry(ZohoRegistry())); return err },
			"tds: WithRegistry does not apply to NewInbox"},
		{"NewQueue", func() error { _, err := NewQueue(db, WithConcurrency(8)); return err },
			"tds: WithConcurrency does not apply to NewQueue"},
		{"NewWorker", func() error { _, err := NewWorker(db, noop, WithMaxAttempts(1)); return err },
			"tds: WithMaxAttempts does not apply to NewWorker"},
		{"NewMirrorSyncer", func() error { _, err := NewMirrorSyncer(WithLogger(quietLogger)); return err },
			"tds: WithLogger does not apply to NewMirrorSyncer"},
		{"NewHandler", func() error {
			_, err := NewHandler(db, WithoutAuthentication(), WithPollInterval(time.Second))
			return err
		}, "tds: WithPollInterval does not apply to NewHandler"},
		{"two foreign options", func() error {
			_, err := NewQueue(db, WithConcurrency(8), WithTrustedProxies("10.0.0.0/8"))
			return err
		}, "tds: WithConcurrency does not apply to NewQueue\ntds: WithTrustedProxies does not apply to NewQueue"},
		{"a foreign option and a bad value", func() error {
			_, err := NewWorker(db, noop, WithConcurrency(0), WithSource("erp"))
			return err
		}, "tds: WithConcurrency: must be >= 1, got 0\ntds: WithSource does not apply to NewWorker"},
		{"bad leader lease and listen db", func() error {
			_, err := NewWorker(db, noop, WithLeaderLease(time.Millisecond), WithListenDB(nil))
			return err
		}, "tds: WithLeaderLease: must be >= 300ms, got 1ms\ntds: WithListenDB: db is nil"},
		{"a foreign option is reported even with a bad value", func() error {
			_, err := NewInbox(db, WithMaxBodyBytes(0))
			return err
		}, "tds: WithMaxBodyBytes does not apply to NewInbox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.new()
			require.EqualError(t, err, tc.want)
		})
	}
}

// TestOptionMatrix passes every option alone to every constructor: it is
// accepted where it applies and refused, naming both, everywhere else.
func TestOptionMatrix(t *testing.T) {
	db := openTestDB(t, "sqlite").db
	verifiers := map[string]bool{"WithWebhookKeys": true, "WithZohoSecret": true,
		"WithStandardWebhooksSecrets": true, "WithoutAuthentication": true}
	for tg, build := range constructors(db) {
		for name, o := range sampleOptions() {
			opts := []Option{o}
			if tg == forHandler && !verifiers[name] {
				opts = append(opts, WithoutAuthentication()) // a Handler needs one
			}
			err := build(opts...)
			if o.targets&tg != 0 {
				require.NoError(t, err, "%s to %s", name, tg)
			} else {
				require.EqualError(t, err, "tds: "+name+" does not apply to "+tg.String())
			}
		}
	}
}

func TestZeroOptionIsIgnored(t *testing.T) {
	db := openTestDB(t, "sqlite").db
	_, err := NewQueue(db, Option{}, WithClock(time.Now))
	require.NoError(t, err)
	_, err = NewMirrorSyncer(Option{})
	require.NoError(t, err)
}
