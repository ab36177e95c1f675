package tdstest

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// localUser is who runs the local servers: the postgres OS user when the
// tests run as root, else the current user.
func localUser(t *testing.T) (cred *syscall.Credential, uid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, os.Geteuid()
	}
	cred, err := postgresUser()
	if err != nil {
		t.Skip(err)
	}
	return cred, int(cred.Uid)
}

// alive tells whether pid runs and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// TestSweepSparesPlantedPid: the orphan sweep stops only a PostgreSQL
// server running on the directory it sweeps; a postmaster.pid naming
// another process of the same user, planted beside an owner.pid of a dead
// process, stops nothing.
func TestSweepSparesPlantedPid(t *testing.T) {
	bin, err := findBinaries()
	if err != nil {
		t.Skip(err)
	}
	cred, uid := localUser(t)

	// The victim: a process of the user that runs the servers.
	victim := exec.Command("sleep", "600")
	if cred != nil {
		victim.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	require.NoError(t, victim.Start())
	exited := make(chan struct{})
	go func() { _ = victim.Wait(); close(exited) }()
	t.Cleanup(func() { _ = victim.Process.Kill(); <-exited })

	// A dead owner: a process that has exited and been reaped.
	dead := exec.Command("true")
	require.NoError(t, dead.Run())

	base := t.TempDir()
	if cred != nil {
		// The postgres user must reach the directory, as in the real base.
		require.NoError(t, os.Chmod(filepath.Dir(base), 0o755))
		require.NoError(t, os.Chown(base, uid, int(cred.Gid)))
	}
	planted := filepath.Join(base, "tds-pg-planted")
	data := filepath.Join(planted, "data")
	require.NoError(t, os.MkdirAll(data, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(planted, ownerFile), []byte(strconv.Itoa(dead.Process.Pid)), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(data, "PG_VERSION"), []byte("15\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(data, "postmaster.pid"),
		[]byte(strconv.Itoa(victim.Process.Pid)+"\n"+data+"\n"), 0o600))
	if cred != nil {
		require.NoError(t, filepath.Walk(planted, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, int(cred.Gid))
		}))
	}
	require.True(t, alive(victim.Process.Pid))

	sweepOrphans(base, bin.pgCtl, cred)
	require.True(t, alive(victim.Process.Pid), "the sweep stopped a process that is not a PostgreSQL server on the planted directory")
}

// TestSweepSkipsForeignDirectory: a directory another user owns is left
// alone, even with a dead owner.pid.
func TestSweepSkipsForeignDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a directory owned by another user")
	}
	bin, err := findBinaries()
	if err != nil {
		t.Skip(err)
	}
	cred, _ := localUser(t)
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	base := t.TempDir()
	foreign := filepath.Join(base, "tds-pg-foreign")
	require.NoError(t, os.Mkdir(foreign, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(foreign, ownerFile), []byte(strconv.Itoa(dead.Process.Pid)), 0o600))
	require.NoError(t, os.Chown(foreign, 65534, 65534))
	sweepOrphans(base, bin.pgCtl, cred)
	_, err = os.Stat(foreign)
	require.NoError(t, err, "the sweep removed a directory another user owns")
}

// TestPrivateBase: the servers' directories live under a base of their
// user's alone (mode 0700); a symlink or a directory of another user
// planted at its name is refused.
func TestPrivateBase(t *testing.T) {
	cred, uid := localUser(t)
	gid := os.Getegid()
	if cred != nil {
		gid = int(cred.Gid)
	}
	parent := t.TempDir()
	require.NoError(t, os.Chmod(parent, 0o755)) // traversable by the postgres user

	base, err := privateBase(parent, uid, gid)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(parent, "tds-pg-"+strconv.Itoa(uid)), base)
	fi, err := os.Lstat(base)
	require.NoError(t, err)
	require.True(t, fi.IsDir())
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	require.Equal(t, uint32(uid), fi.Sys().(*syscall.Stat_t).Uid)
	again, err := privateBase(parent, uid, gid) // an existing base of ours
	require.NoError(t, err)
	require.Equal(t, base, again)

	// A base of ours opened wider is closed again.
	require.NoError(t, os.Chmod(base, 0o777))
	_, err = privateBase(parent, uid, gid)
	require.NoError(t, err)
	fi, err = os.Lstat(base)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	// A symlink planted at the base's name is refused.
	planted := t.TempDir()
	require.NoError(t, os.RemoveAll(base))
	require.NoError(t, os.Symlink(planted, base))
	_, err = privateBase(parent, uid, gid)
	require.Error(t, err)

	// So is a directory another user owns.
	if os.Geteuid() == 0 {
		require.NoError(t, os.Remove(base))
		require.NoError(t, os.Mkdir(base, 0o700))
		require.NoError(t, os.Chown(base, 65534, 65534))
		_, err = privateBase(parent, uid, gid)
		require.Error(t, err)
	}
}

// TestLocalServerNeedsPassword: the throwaway server refuses a local TCP
// connection without its password, and accepts the URL tdstest hands out.
func TestLocalServerNeedsPassword(t *testing.T) {
	if os.Getenv("TDS_TEST_DATABASE_URL") != "" {
		t.Skip("an external server")
	}
	srv, err := getServer()
	if err != nil {
		t.Skip(err)
	}
	if !strings.HasPrefix(srv.how, "local PostgreSQL") {
		t.Skip("not a local server: " + srv.how)
	}
	u, err := url.Parse(srv.adminURL)
	require.NoError(t, err)
	_, hasPassword := u.User.Password()
	require.True(t, hasPassword, "the local server's URL carries a password")

	ctx := context.Background()
	good, err := openDB(u.String())
	require.NoError(t, err)
	defer good.Close()
	require.NoError(t, good.PingContext(ctx))

	for _, user := range []*url.Userinfo{url.User("postgres"), url.UserPassword("postgres", "wrong-password")} {
		bad := *u
		bad.User = user
		db, err := openDB(bad.String())
		require.NoError(t, err)
		err = db.PingContext(ctx)
		_ = db.Close()
		require.Error(t, err, "the local server let %s in", user.String())
	}
}

// TestSweepStopsOrphanedServer: a real server whose test process is gone
// is recognised by its command line, stopped and its directory removed.
func TestSweepStopsOrphanedServer(t *testing.T) {
	bin, err := findBinaries()
	if err != nil {
		t.Skip(err)
	}
	cred, uid := localUser(t)
	gid := os.Getegid()
	if cred != nil {
		gid = int(cred.Gid)
	}
	parent := t.TempDir()
	if cred != nil {
		require.NoError(t, os.Chmod(filepath.Dir(parent), 0o755))
		require.NoError(t, os.Chmod(parent, 0o755))
	}
	base, err := privateBase(parent, uid, gid)
	require.NoError(t, err)
	ls := &localServer{bin: bin, cred: cred}
	ls.dir, err = os.MkdirTemp(base, localDirPattern)
	require.NoError(t, err)
	if cred != nil {
		require.NoError(t, os.Chown(ls.dir, uid, gid))
	}
	t.Cleanup(func() { _ = ls.stop() })
	_, err = ls.start(randomPassword())
	require.NoError(t, err)
	data := filepath.Join(ls.dir, "data")
	running, err := serverRunning(data)
	require.NoError(t, err)
	require.True(t, running, "a started server is recognised")

	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	require.NoError(t, os.WriteFile(filepath.Join(ls.dir, ownerFile), []byte(strconv.Itoa(dead.Process.Pid)), 0o600))
	sweepOrphans(base, bin.pgCtl, cred)
	_, err = os.Stat(ls.dir)
	require.ErrorIs(t, err, os.ErrNotExist, "the orphan's directory is removed")
}
