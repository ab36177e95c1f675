package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsalert"
	"github.com/tdscore/tds/tdsotel"
	"github.com/tdscore/tds/tdsreconcile"
)

// version is the server's version, set at build time with
// -ldflags "-X main.version=v0.1.0"; without it, the module version or the
// VCS revision the binary was built from.
var version string

// settings are the server's settings, after their defaults, environment
// variables and flags.
type settings struct {
	addr, database, webhookKeys, zohoSecret, standardSecret, adminToken string
	trustedProxies, metricsAddr, metricsToken                           string
	workers, maxConns, dbMaxConns                                       int
	pollOnly                                                            bool
	pollInterval, leaderLease, leaseDuration, housekeeping              time.Duration
	listenDatabase                                                      string
	logFormat                                                           string
	logLevel                                                            slog.Level
	zoho                                                                zohoSettings
	alert                                                               alertSettings

	showVersion bool     // -version
	args        []string // what follows the flags

	// tracer is set from the OTEL_* environment (tracing.go), not a
	// flag; nil when tracing is off.
	tracer *tdsotel.Tracer
}

// alertSettings are the alerts' settings.
type alertSettings struct {
	rules, webhookURL, webhookSecret, slackURL string
	alertmanagerURLs, externalURL              string
	interval                                   time.Duration
}

// zohoSettings are the Zoho API's settings, for reconciliation.
type zohoSettings struct {
	clientID, clientSecret, refreshToken, organizationID string
	dc, product, accountsURL, apiURL                     string
	rate, dailyBudget                                    int
	interval, fullInterval                               time.Duration
	// maxDeletes is -reconcile-max-deletes; nil (empty): the library's
	// default share.
	maxDeletes *int
}

// setting is one row of the settings table: a flag, its environment
// variable, its default and its documentation. set parses a value into
// the settings; its error does not name the setting (the caller does,
// as the flag or the variable the value came from).
type setting struct {
	flag, env, def, doc string
	set                 func(s *settings, v string) error
}

// table is every setting of the server, the one place they are listed:
// the flag set, the environment lookup and the -h usage are built from
// it, and a test checks it against the table in docs/server.md.
var table = []setting{
	{"addr", "TDS_ADDR", ":8001", "listen address", text(func(s *settings) *string { return &s.addr })},
	{"database", "TDS_DATABASE_URL", "sqlite:tds.db", "database URL: postgres://… or sqlite:PATH", text(func(s *settings) *string { return &s.database })},
	{"webhook-keys", "TDS_WEBHOOK_KEYS", "", "shared webhook keys, comma-separated, sent in X-Webhook-Key; with no key and no secret one is generated and printed", text(func(s *settings) *string { return &s.webhookKeys })},
	{"zoho-secret", "TDS_ZOHO_SECRET", "", "Zoho webhook secrets, comma-separated, checked against X-Zoho-Webhook-Signature", text(func(s *settings) *string { return &s.zohoSecret })},
	{"standard-webhooks-secret", "TDS_STANDARD_WEBHOOKS_SECRET", "", "Standard Webhooks secrets, whsec_…, comma-separated", text(func(s *settings) *string { return &s.standardSecret })},
	{"admin-token", "TDS_ADMIN_TOKEN", "", "bearer tokens of the admin API, comma-separated; with none one is generated and printed", text(func(s *settings) *string { return &s.adminToken })},
	{"metrics-token", "TDS_METRICS_TOKEN", "", "read-only bearer tokens of GET /metrics on the main listener, comma-separated; they open nothing else", text(func(s *settings) *string { return &s.metricsToken })},
	{"workers", "TDS_WORKERS", strconv.Itoa(tds.DefaultConcurrency), "jobs synced at once; 0 runs ingest without workers", number(0, func(s *settings) *int { return &s.workers })},
	{"db-max-conns", "TDS_DB_MAX_CONNS", strconv.Itoa(defaultDBMaxConns), "PostgreSQL connections the process opens at most, plus one for LISTEN (SQLite has one)", number(2, func(s *settings) *int { return &s.dbMaxConns })},
	{"poll-only", "TDS_POLL_ONLY", "false", "find work by polling, without LISTEN/NOTIFY: behind a transaction pooler (PgBouncer in transaction mode, RDS Proxy, Supavisor)", boolean(func(s *settings) *bool { return &s.pollOnly })},
	{"poll-interval", "TDS_POLL_INTERVAL", "", "how often an idle worker looks for work; default " + shortDuration(tds.DefaultPollInterval) + ", or " + tds.DefaultPollOnlyInterval.String() + " with -poll-only", optionalDuration(func(s *settings) *time.Duration { return &s.pollInterval })},
	{"listen-database", "TDS_LISTEN_DATABASE_URL", "", "a direct PostgreSQL URL used only for LISTEN, when -database goes through a transaction pooler", text(func(s *settings) *string { return &s.listenDatabase })},
	{"leader-lease", "TDS_LEADER_LEASE", shortDuration(tds.DefaultLeaderLease), "how long the lead of housekeeping, alerts and the reconciliation schedule stays with a replica that stopped renewing it", positiveDuration(func(s *settings) *time.Duration { return &s.leaderLease })},
	{"lease-duration", "TDS_LEASE_DURATION", shortDuration(tds.DefaultLeaseDuration), "how long a claimed job stays with a worker that stopped renewing it (killed) before housekeeping hands it to another", positiveDuration(func(s *settings) *time.Duration { return &s.leaseDuration })},
	{"housekeeping-interval", "TDS_HOUSEKEEPING_INTERVAL", shortDuration(tds.DefaultHousekeepingInterval), "how often the leader rescues jobs whose lease expired and deletes rows past retention", positiveDuration(func(s *settings) *time.Duration { return &s.housekeeping })},
	{"max-conns", "TDS_MAX_CONNS", strconv.Itoa(defaultMaxConns), "connections served at once; when full, the one idle longest is closed for a new one", number(1, func(s *settings) *int { return &s.maxConns })},
	{"trusted-proxies", "TDS_TRUSTED_PROXIES", "", "proxies (addresses or CIDR prefixes), comma-separated, whose X-Forwarded-For gives the client address", text(func(s *settings) *string { return &s.trustedProxies })},
	{"metrics-addr", "TDS_METRICS_ADDR", "", "a second listen address serving only GET /metrics, without authentication: keep it private", text(func(s *settings) *string { return &s.metricsAddr })},
	{"log-format", "TDS_LOG_FORMAT", "text", "log format: text or json", oneOf([]string{"text", "json"}, func(s *settings) *string { return &s.logFormat })},
	{"log-level", "TDS_LOG_LEVEL", "info", "least severe level logged: debug, info, warn or error", level(func(s *settings) *slog.Level { return &s.logLevel })},
	{"zoho-client-id", "TDS_ZOHO_CLIENT_ID", "", "OAuth client id of the Zoho API, for reconciliation", text(func(s *settings) *string { return &s.zoho.clientID })},
	{"zoho-client-secret", "TDS_ZOHO_CLIENT_SECRET", "", "OAuth client secret of the Zoho API; prefer the environment", text(func(s *settings) *string { return &s.zoho.clientSecret })},
	{"zoho-refresh-token", "TDS_ZOHO_REFRESH_TOKEN", "", "OAuth refresh token of the Zoho API; prefer the environment", text(func(s *settings) *string { return &s.zoho.refreshToken })},
	{"zoho-organization-id", "TDS_ZOHO_ORGANIZATION_ID", "", "Zoho organisation id", text(func(s *settings) *string { return &s.zoho.organizationID })},
	{"zoho-dc", "TDS_ZOHO_DC", "com", "Zoho data centre: com, eu, in, com.au, jp, ca, com.cn or sa", oneOf([]string{"com", "eu", "in", "com.au", "jp", "ca", "com.cn", "sa"}, func(s *settings) *string { return &s.zoho.dc })},
	{"zoho-product", "TDS_ZOHO_PRODUCT", "books", "Zoho product: books or inventory", oneOf([]string{"books", "inventory"}, func(s *settings) *string { return &s.zoho.product })},
	{"zoho-accounts-url", "TDS_ZOHO_ACCOUNTS_URL", "", "Zoho accounts host, overriding the data centre's", text(func(s *settings) *string { return &s.zoho.accountsURL })},
	{"zoho-api-url", "TDS_ZOHO_API_URL", "", "Zoho API host, overriding the data centre's", text(func(s *settings) *string { return &s.zoho.apiURL })},
	{"zoho-rate", "TDS_ZOHO_RATE", strconv.Itoa(tdsreconcile.DefaultRequestsPerMinute), "Zoho API requests a minute", number(1, func(s *settings) *int { return &s.zoho.rate })},
	{"zoho-daily-budget", "TDS_ZOHO_DAILY_BUDGET", strconv.Itoa(tdsreconcile.DefaultDailyBudget), "Zoho API requests a day for reconciliation", number(1, func(s *settings) *int { return &s.zoho.dailyBudget })},
	{"reconcile-interval", "TDS_RECONCILE_INTERVAL", shortDuration(tdsreconcile.DefaultInterval), "incremental reconciliation every; 0 turns it off", duration(func(s *settings) *time.Duration { return &s.zoho.interval })},
	{"reconcile-full-interval", "TDS_RECONCILE_FULL_INTERVAL", shortDuration(tdsreconcile.DefaultFullInterval), "full reconciliation every; 0 turns it off", duration(func(s *settings) *time.Duration { return &s.zoho.fullInterval })},
	{"reconcile-max-deletes", "TDS_RECONCILE_MAX_DELETES", "", "deletes of one type a reconciliation run applies without an operator's confirmation; empty: 1 % of the type's records, at least 10", optionalNumber(func(s *settings) **int { return &s.zoho.maxDeletes })},
	{"alert-rules", "TDS_ALERT_RULES", "", "YAML file configuring the built-in alert rules", text(func(s *settings) *string { return &s.alert.rules })},
	{"alert-webhook-url", "TDS_ALERT_WEBHOOK_URL", "", "receiver of alerts as Alertmanager webhook payloads", text(func(s *settings) *string { return &s.alert.webhookURL })},
	{"alert-webhook-secret", "TDS_ALERT_WEBHOOK_SECRET", "", "Standard Webhooks secret, whsec_…, signing the alert webhooks", text(func(s *settings) *string { return &s.alert.webhookSecret })},
	{"alert-slack-url", "TDS_ALERT_SLACK_URL", "", "Slack incoming webhook receiving alerts", text(func(s *settings) *string { return &s.alert.slackURL })},
	{"alertmanager-url", "TDS_ALERTMANAGER_URL", "", "Alertmanager base URLs, comma-separated, each sent every alert through its API v2", text(func(s *settings) *string { return &s.alert.alertmanagerURLs })},
	{"external-url", "TDS_EXTERNAL_URL", "", "the console's address as operators reach it, linked from the alerts", text(func(s *settings) *string { return &s.alert.externalURL })},
	{"alert-eval-interval", "TDS_ALERT_EVAL_INTERVAL", shortDuration(tdsalert.DefaultEvalInterval), "alert rules evaluated every", positiveDuration(func(s *settings) *time.Duration { return &s.alert.interval })},
}

func text(field func(*settings) *string) func(*settings, string) error {
	return func(s *settings, v string) error { *field(s) = v; return nil }
}

func number(minimum int, field func(*settings) *int) func(*settings, string) error {
	return func(s *settings, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
		if n < minimum {
			return fmt.Errorf("must be >= %d, got %d", minimum, n)
		}
		*field(s) = n
		return nil
	}
}

func boolean(field func(*settings) *bool) func(*settings, string) error {
	return func(s *settings, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*field(s) = b
		return nil
	}
}

// optionalNumber is number(0, …) where an empty value leaves nil: the
// library's own default.
func optionalNumber(field func(*settings) **int) func(*settings, string) error {
	return func(s *settings, v string) error {
		*field(s) = nil
		if strings.TrimSpace(v) == "" {
			return nil
		}
		var n int
		if err := number(0, func(*settings) *int { return &n })(s, v); err != nil {
			return err
		}
		*field(s) = &n
		return nil
	}
}

func duration(field func(*settings) *time.Duration) func(*settings, string) error {
	return func(s *settings, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 90s, 15m or 168h", v)
		}
		if d < 0 {
			return fmt.Errorf("must be >= 0, got %s", v)
		}
		*field(s) = d
		return nil
	}
}

// optionalDuration is a positive duration, or none ("", 0) for the
// library's default.
func optionalDuration(field func(*settings) *time.Duration) func(*settings, string) error {
	parse := duration(field)
	return func(s *settings, v string) error {
		if strings.TrimSpace(v) == "" {
			*field(s) = 0
			return nil
		}
		return parse(s, v)
	}
}

func positiveDuration(field func(*settings) *time.Duration) func(*settings, string) error {
	parse := duration(field)
	return func(s *settings, v string) error {
		if err := parse(s, v); err != nil {
			return err
		}
		if *field(s) == 0 {
			return fmt.Errorf("must be > 0, got %s", v)
		}
		return nil
	}
}

func oneOf(choices []string, field func(*settings) *string) func(*settings, string) error {
	return func(s *settings, v string) error {
		if !slices.Contains(choices, v) {
			return fmt.Errorf("%q is not one of %s", v, strings.Join(choices, ", "))
		}
		*field(s) = v
		return nil
	}
}

func level(field func(*settings) *slog.Level) func(*settings, string) error {
	return func(s *settings, v string) error {
		var l slog.Level
		if !slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(v)) || l.UnmarshalText([]byte(v)) != nil {
			return fmt.Errorf("%q is not one of debug, info, warn, error", v)
		}
		*field(s) = l
		return nil
	}
}

// shortDuration writes d as a person would: 15m, 168h, 15s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// commands are the server's commands, the first argument when given.
var commands = []struct{ name, doc string }{
	{"serve", "run the server (the default)"},
	{"migrate", "apply the database migrations, create the mirror tables, and exit"},
	{"healthcheck [URL]", "GET URL (default http://127.0.0.1:PORT/health/ready, PORT from -addr); exit 0 on 200, 1 otherwise"},
}

// usage writes the -h text, generated from commands and table.
func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: server [command] [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.doc)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Settings: each flag is also read from its environment variable; a flag wins.")
	tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "  -version\t\t\tprint the version and exit\n")
	for _, st := range table {
		def := ""
		if st.def != "" {
			def = "(" + st.def + ")"
		}
		fmt.Fprintf(tw, "  -%s\t%s\t%s\t%s\n", st.flag, st.env, def, st.doc)
	}
	_ = tw.Flush()
}

// parseSettings reads the settings: the table's defaults, then the
// environment, then the flags in args. Every invalid value is reported,
// at once, each naming the flag or the variable it came from.
func parseSettings(args []string, getenv func(string) string, stderr io.Writer) (*settings, error) {
	s := &settings{}
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stderr) }
	fs.BoolVar(&s.showVersion, "version", false, "print the version and exit")
	given := map[string]string{}
	for _, st := range table {
		fs.Func(st.flag, st.doc, func(v string) error { given[st.flag] = v; return nil })
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	s.args = fs.Args()

	var errs []error
	for _, st := range table {
		name, v := "default of -"+st.flag, st.def
		if e := getenv(st.env); e != "" {
			name, v = st.env, e
		}
		if f, ok := given[st.flag]; ok {
			name, v = "-"+st.flag, f
		}
		if err := st.set(s, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if err := s.zoho.check(); err != nil {
		errs = append(errs, err)
	}
	if err := s.checkAdminTokens(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// checkAdminTokens refuses an admin token that is also a webhook key: a
// sender would hold the keys of the console; and a metrics token that is
// either, which would not be read-only. (The webhook Handler and the
// console are separate handlers, neither knowing the other's secrets, so
// the composition root checks it.)
func (s *settings) checkAdminTokens() error {
	keys := splitList(s.webhookKeys)
	for _, t := range splitList(s.adminToken) {
		if slices.Contains(keys, t) {
			return errors.New("-admin-token (TDS_ADMIN_TOKEN): an admin token must differ from every webhook key (-webhook-keys, TDS_WEBHOOK_KEYS)")
		}
	}
	admins := splitList(s.adminToken)
	for _, t := range splitList(s.metricsToken) {
		if slices.Contains(keys, t) || slices.Contains(admins, t) {
			return errors.New("-metrics-token (TDS_METRICS_TOKEN): a metrics token must differ from every webhook key and admin token")
		}
	}
	return nil
}

// logger is the server's logger, as -log-format and -log-level say.
func (s *settings) logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: s.logLevel}
	if s.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// versionString is the version set at build time, else what the Go
// toolchain recorded: the module's version, or the VCS revision.
func versionString() string {
	v := version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok {
			if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			rev, dirty := "", false
			for _, kv := range bi.Settings {
				switch kv.Key {
				case "vcs.revision":
					rev = kv.Value
				case "vcs.modified":
					dirty = kv.Value == "true"
				}
			}
			if v == "devel" && rev != "" {
				v += "+" + rev[:min(12, len(rev))]
				if dirty {
					v += "-dirty"
				}
			}
		}
	}
	return "tds server " + v + " (" + runtime.Version() + ")"
}
