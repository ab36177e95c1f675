package tdstest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// binaries are the PostgreSQL programs the harness runs.
type binaries struct {
	initdb, pgCtl string
	version       string // as initdb --version prints it
}

// findBinaries looks on PATH, then under /usr/lib/postgresql/*/bin, highest version first.
func findBinaries() (binaries, error) {
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if pgCtl, err := exec.LookPath("pg_ctl"); err == nil {
			return binaries{initdb: initdb, pgCtl: pgCtl}, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { // highest version first
		return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
	})
	for _, dir := range dirs {
		b := binaries{initdb: filepath.Join(dir, "initdb"), pgCtl: filepath.Join(dir, "pg_ctl")}
		if isExecutable(b.initdb) && isExecutable(b.pgCtl) {
			return b, nil
		}
	}
	return binaries{}, fmt.Errorf("%w: no initdb and pg_ctl on PATH or under /usr/lib/postgresql/*/bin", errNoServer)
}

// compareVersions compares dotted numeric versions such as "9.6" and "15".
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// localServer is a server started from local binaries in its own directory.
//
// On a machine others share, nothing of it is open to them: its directory
// is under a base that only the user running the servers may enter
// ($TMPDIR/tds-pg-<uid>, mode 0700, see privateBase), so its Unix socket
// is closed to others too; it listens on 127.0.0.1 and asks every
// connection for a random password (SCRAM), which only the URLs tdstest
// hands out carry. The orphan sweep stops a server only in a directory of
// that base owned by that user, and only when the process its
// postmaster.pid names is PostgreSQL running on that directory.
type localServer struct {
	bin  binaries
	dir  string // holds data/, server.log, owner.pid and the unix socket
	cred *syscall.Credential
}

const (
	localDirPattern = "tds-pg-*"
	ownerFile       = "owner.pid"
)

// startLocal starts a throwaway server from local binaries on a free port of 127.0.0.1.
func startLocal() (*server, error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bin.initdb, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w", bin.initdb, err)
	}
	bin.version = strings.TrimSpace(string(out))

	ls := &localServer{bin: bin}
	asWho := ""
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		if ls.cred, err = postgresUser(); err != nil {
			return nil, err
		}
		asWho = " as OS user postgres"
	}

	parent := os.TempDir()
	if ls.cred != nil && !traversableByAll(parent) {
		parent = "/tmp" // a TMPDIR such as /root/tmp is closed to the postgres user
	}
	uid, gid := os.Geteuid(), os.Getegid()
	if ls.cred != nil {
		uid, gid = int(ls.cred.Uid), int(ls.cred.Gid)
	}
	base, err := privateBase(parent, uid, gid)
	if err != nil {
		return nil, err
	}
	sweepOrphans(base, bin.pgCtl, ls.cred)

	if ls.dir, err = os.MkdirTemp(base, localDirPattern); err != nil {
		return nil, err
	}
	// owner.pid lets a later run stop this server if this process dies before Main stops it.
	if err := os.WriteFile(filepath.Join(ls.dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return nil, errors.Join(err, os.RemoveAll(ls.dir))
	}
	if ls.cred != nil {
		if err := os.Chown(ls.dir, int(ls.cred.Uid), int(ls.cred.Gid)); err != nil {
			return nil, errors.Join(err, os.RemoveAll(ls.dir))
		}
	}

	password := randomPassword()
	port, err := ls.start(password)
	if err != nil {
		return nil, errors.Join(err, ls.stop())
	}
	adminURL := (&url.URL{Scheme: "postgres", User: url.UserPassword("postgres", password),
		Host: fmt.Sprintf("127.0.0.1:%d", port), Path: "/postgres", RawQuery: "sslmode=disable"}).String()
	binDir := filepath.Dir(bin.pgCtl)
	if real, err := filepath.EvalSymlinks(bin.pgCtl); err == nil && filepath.Dir(real) != binDir {
		binDir += " -> " + filepath.Dir(real)
	}
	how := fmt.Sprintf("local PostgreSQL binaries in %s (%s) at 127.0.0.1:%d, data in %s%s",
		binDir, bin.version, port, ls.dir, asWho)
	s, err := newServer(adminURL, how, ls.stop)
	if err != nil {
		return nil, errors.Join(err, ls.stop())
	}
	return s, nil
}

// postgresUser returns the credentials of the postgres OS user.
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as another user, and there is no postgres OS user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// privateBase returns parent/tds-pg-<uid>, the base of the servers'
// directories, made if missing: a directory (not a symlink) owned by uid
// with mode 0700, so no other user can plant a directory in it, read a
// server's files or reach its socket. Anything else at that name is an
// error naming it.
func privateBase(parent string, uid, gid int) (string, error) {
	base := filepath.Join(parent, "tds-pg-"+strconv.Itoa(uid))
	switch err := os.Mkdir(base, 0o700); {
	case err == nil:
		if os.Geteuid() != uid {
			if err := os.Chown(base, uid, gid); err != nil {
				return "", errors.Join(err, os.Remove(base))
			}
		}
	case !errors.Is(err, fs.ErrExist):
		return "", err
	}
	fi, err := os.Lstat(base)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != uid {
		return "", fmt.Errorf("tdstest: %s is not a directory of uid %d (%s): another user may have planted it; remove it", base, uid, fi.Mode())
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(base, 0o700); err != nil {
			return "", err
		}
	}
	return base, nil
}

// randomPassword is the password of a throwaway server's postgres user.
func randomPassword() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// start runs initdb and pg_ctl start and returns the port the server listens on.
// Every connection, over TCP or the socket, must give password.
func (ls *localServer) start(password string) (int, error) {
	data := filepath.Join(ls.dir, "data")
	pwFile := filepath.Join(ls.dir, "pwfile")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		return 0, err
	}
	if ls.cred != nil {
		if err := os.Chown(pwFile, int(ls.cred.Uid), int(ls.cred.Gid)); err != nil {
			return 0, err
		}
	}
	_, err := ls.run(ls.bin.initdb, "-D", data, "-U", "postgres", "--auth=scram-sha-256", "--pwfile="+pwFile,
		"-E", "UTF8", "--no-locale", "--no-sync")
	if rmErr := os.Remove(pwFile); err == nil {
		err = rmErr
	}
	if err != nil {
		return 0, err
	}

	logFile := filepath.Join(ls.dir, "server.log")
	// The port is free when picked but may be taken before the server binds it: try again.
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			return 0, err
		}
		opts := fmt.Sprintf("-h 127.0.0.1 -p %d -k '%s' %s", port, ls.dir, strings.Join(settingsArgs(), " "))
		if _, err = ls.run(ls.bin.pgCtl, "start", "-w", "-t", "60", "-D", data, "-l", logFile, "-o", opts); err == nil {
			return port, nil
		}
		log, _ := os.ReadFile(logFile)
		err = fmt.Errorf("%w\nserver log:\n%s", err, log)
		if !bytes.Contains(log, []byte("could not bind")) {
			break
		}
	}
	return 0, err
}

// stop stops the server at once (its data is thrown away) and removes its directory.
func (ls *localServer) stop() error {
	return stopDir(ls.bin.pgCtl, ls.dir, ls.cred)
}

func stopDir(pgCtl, dir string, cred *syscall.Credential) error {
	var errs []error
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
		if _, err := runAs(cred, dir, pgCtl, "stop", "-m", "immediate", "-w", "-D", data); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, os.RemoveAll(dir))
	return errors.Join(errs...)
}

func (ls *localServer) run(name string, args ...string) ([]byte, error) {
	return runAs(ls.cred, ls.dir, name, args...)
}

// runAs runs a program in dir, as cred's user when cred is not nil.
// pg_ctl start must be given -l: otherwise the server inherits the output pipes
// and the call never returns.
func runAs(cred *syscall.Credential, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir // the postgres user may not be able to enter the current directory
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out, nil
}

// sweepOrphans stops the servers of earlier test binaries that died before
// their Main could (a panic or a -timeout kills the process without cleanups).
// It takes only directories of base owned by the user running the servers
// (cred's, or this process's), and runs pg_ctl stop only when the process
// named in postmaster.pid is PostgreSQL on that very directory; a directory
// whose server is gone is removed.
func sweepOrphans(base, pgCtl string, cred *syscall.Credential) {
	uid := os.Geteuid()
	if cred != nil {
		uid = int(cred.Uid)
	}
	dirs, _ := filepath.Glob(filepath.Join(base, localDirPattern))
	for _, dir := range dirs {
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() || !ownedBy(fi, uid) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being set up
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		data := filepath.Join(dir, "data")
		running, err := serverRunning(data)
		switch {
		case err != nil:
			continue // cannot tell: leave it
		case !running:
			if os.RemoveAll(dir) == nil {
				fmt.Fprintf(os.Stderr, "tdstest: removed the orphaned directory %s (its test process %d and its server are gone)\n", dir, pid)
			}
		default:
			if err := stopDir(pgCtl, dir, cred); err == nil {
				fmt.Fprintf(os.Stderr, "tdstest: stopped the orphaned server in %s (its test process %d is gone)\n", dir, pid)
			}
		}
	}
}

func ownedBy(fi os.FileInfo, uid int) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == uid
}

// serverRunning tells whether the process data/postmaster.pid names is a
// PostgreSQL server on data, from its command line (/proc/PID/cmdline):
// postgres (or postmaster) with -D data. A missing file or process, or
// another program (a reused or planted pid), is no server; an error means
// it cannot be told.
func serverRunning(data string) (bool, error) {
	raw, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return false, nil
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if errors.Is(err, fs.ErrNotExist) {
		if _, statErr := os.Stat("/proc/self/cmdline"); statErr != nil {
			return false, fmt.Errorf("no /proc to check process %d: %w", pid, statErr)
		}
		return false, nil
	}
	if err != nil {
		return false, err
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if name := filepath.Base(args[0]); name != "postgres" && name != "postmaster" {
		return false, nil
	}
	for i := 1; i+1 < len(args); i++ {
		if args[i] == "-D" && filepath.Clean(args[i+1]) == filepath.Clean(data) {
			return true, nil
		}
	}
	return false, nil
}

// traversableByAll reports whether every user may enter dir and each of its parents.
func traversableByAll(dir string) bool {
	for dir, prev := filepath.Clean(dir), ""; dir != prev; dir, prev = filepath.Dir(dir), dir {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
	}
	return true
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
