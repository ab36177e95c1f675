package tdstest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ThroughPgBouncer returns the database through a PgBouncer in transaction
// pooling mode in front of the test server, as a deployment behind a
// connection pooler (PgBouncer, RDS Proxy, Supavisor) sees it: every
// transaction may run on another server connection, and nothing set on a
// session outlives its transaction. One PgBouncer serves the test binary,
// started on first use from Debian's pgbouncer (on PATH or in /usr/sbin)
// and stopped by [Main]. Without pgbouncer the test is skipped, or fails
// when the CI environment variable is set. Applies to [PostgresURL] and
// [Postgres].
func ThroughPgBouncer() DBOption {
	return func(s *dbSettings) { s.pgbouncer = true }
}

// bouncer is the PgBouncer of this test binary.
type bouncer struct {
	addr string // host:port it listens on
	cmd  *exec.Cmd
	dir  string
	done chan struct{} // closed when the process has exited
}

var (
	bouncerOnce sync.Once
	theBouncer  *bouncer
	bouncerErr  error
)

// errNoBouncer means pgbouncer is not installed: a reason to skip.
var errNoBouncer = errors.New("no pgbouncer on PATH or in /usr/sbin")

// getBouncer starts the binary's PgBouncer in front of s on first use.
func getBouncer(s *server) (*bouncer, error) {
	bouncerOnce.Do(func() {
		start := time.Now()
		theBouncer, bouncerErr = startBouncer(s)
		if bouncerErr == nil {
			fmt.Fprintf(os.Stderr, "tdstest: PgBouncer (transaction pooling) at %s (ready in %s)\n", theBouncer.addr, time.Since(start).Round(time.Millisecond))
		}
	})
	return theBouncer, bouncerErr
}

func findBouncer() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	if isExecutable("/usr/sbin/pgbouncer") {
		return "/usr/sbin/pgbouncer", nil
	}
	return "", errNoBouncer
}

// startBouncer runs pgbouncer in the foreground, as the postgres user when
// this process is root (it refuses to run as root), in a directory only
// that user may enter, with the admin URL's user and password as its only
// account, which it also uses to log in to the server.
func startBouncer(s *server) (*bouncer, error) {
	bin, err := findBouncer()
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(s.adminURL)
	if err != nil {
		return nil, err
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	user := u.User.Username()
	password, _ := u.User.Password()

	var cred *syscall.Credential
	uid, gid := os.Geteuid(), os.Getegid()
	parent := os.TempDir()
	if uid == 0 {
		if cred, err = postgresUser(); err != nil {
			return nil, err
		}
		uid, gid = int(cred.Uid), int(cred.Gid)
		if !traversableByAll(parent) {
			parent = "/tmp"
		}
	}
	base, err := privateBase(parent, uid, gid)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(base, "tds-pgbouncer-*")
	if err != nil {
		return nil, err
	}
	cleanup := func(err error) (*bouncer, error) { return nil, errors.Join(err, os.RemoveAll(dir)) }
	quote := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	userlist := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(userlist, []byte(quote(user)+" "+quote(password)+"\n"), 0o600); err != nil {
		return cleanup(err)
	}
	for range 3 { // the port is free when picked but may be taken before pgbouncer binds it
		listen, err := freePort()
		if err != nil {
			return cleanup(err)
		}
		ini := fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 20
max_user_connections = 120
server_login_retry = 1
ignore_startup_parameters = extra_float_digits
logfile = %s
pidfile =
`, host, port, listen, userlist, filepath.Join(dir, "pgbouncer.log"))
		iniPath := filepath.Join(dir, "pgbouncer.ini")
		if err := os.WriteFile(iniPath, []byte(ini), 0o600); err != nil {
			return cleanup(err)
		}
		if cred != nil {
			for _, f := range []string{dir, iniPath, userlist} {
				if err := os.Chown(f, uid, gid); err != nil {
					return cleanup(err)
				}
			}
		}
		cmd := exec.Command(bin, iniPath)
		cmd.Dir = dir
		// Dies with the test binary even when Main cannot stop it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return cleanup(fmt.Errorf("starting %s: %w", bin, err))
		}
		b := &bouncer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(listen)), cmd: cmd, dir: dir, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(b.done) }()
		err = b.waitReady(30 * time.Second)
		if err == nil {
			return b, nil
		}
		log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
		b.stopProcess()
		if !strings.Contains(string(log), "Address already in use") {
			return cleanup(fmt.Errorf("pgbouncer: %w\nits log:\n%s", err, log))
		}
	}
	return cleanup(errors.New("pgbouncer: no free port after three tries"))
}

// waitReady polls until pgbouncer accepts connections or exits.
func (b *bouncer) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err == nil {
			return c.Close()
		}
		select {
		case <-b.done:
			return errors.New("it exited before accepting connections")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections at %s after %s: %w", b.addr, timeout, err)
		}
	}
}

// stopProcess asks pgbouncer to shut down at once (SIGINT), killing it
// after 10 s.
func (b *bouncer) stopProcess() {
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

// stop stops pgbouncer and removes its directory.
func (b *bouncer) stop() error {
	b.stopProcess()
	return os.RemoveAll(b.dir)
}

// viaBouncer returns dbURL with its host and port replaced by the bouncer's.
func (b *bouncer) viaBouncer(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		panic(fmt.Sprintf("tdstest: database URL: %v", err))
	}
	u.Host = b.addr
	return u.String()
}

// stopBouncer stops the binary's PgBouncer, if it started.
func stopBouncer() error {
	bouncerOnce.Do(func() { bouncerErr = errors.New("tests have finished") })
	if theBouncer == nil {
		return nil
	}
	return theBouncer.stop()
}
