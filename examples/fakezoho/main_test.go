package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFakeZoho builds and runs the command as a user would, reads the
// TDS_ZOHO_* lines it prints, takes a token and lists the sample items
// with them, then stops it with an interrupt: it exits 0.
func TestFakeZoho(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("sends SIGINT")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "fakezoho")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-records", "7")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	lines := make(chan string)
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // after a failure; an error once it exited
		for range lines {
		}
	})

	env := map[string]string{}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	deadline := time.After(2 * time.Minute)
	for len(env) < 6 {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "the command ended before printing its settings")
			if k, v, found := strings.Cut(strings.TrimPrefix(line, "export "), "="); found && strings.HasPrefix(k, "TDS_ZOHO_") {
				env[k] = v
			}
		case <-deadline:
			t.Fatal("no TDS_ZOHO_* lines within 2 minutes")
		}
	}
	for _, k := range []string{"TDS_ZOHO_CLIENT_ID", "TDS_ZOHO_CLIENT_SECRET", "TDS_ZOHO_REFRESH_TOKEN",
		"TDS_ZOHO_ORGANIZATION_ID", "TDS_ZOHO_ACCOUNTS_URL", "TDS_ZOHO_API_URL"} {
		require.NotEmpty(t, env[k], k)
	}

	// The refresh-token grant, then a list, as the reconciler does.
	resp, err := http.PostForm(env["TDS_ZOHO_ACCOUNTS_URL"]+"/oauth/v2/token", url.Values{
		"grant_type": {"refresh_token"}, "client_id": {env["TDS_ZOHO_CLIENT_ID"]},
		"client_secret": {env["TDS_ZOHO_CLIENT_SECRET"]}, "refresh_token": {env["TDS_ZOHO_REFRESH_TOKEN"]}})
	require.NoError(t, err)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotEmpty(t, tok.AccessToken)

	req, err := http.NewRequest(http.MethodGet, env["TDS_ZOHO_API_URL"]+"/books/v3/items?organization_id="+
		url.QueryEscape(env["TDS_ZOHO_ORGANIZATION_ID"]), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Zoho-oauthtoken "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	var list struct {
		Code  int              `json:"code"`
		Items []map[string]any `json:"items"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, list.Items, 7)
	require.Equal(t, "item-001", list.Items[0]["item_id"])

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	for range lines { // drain to the end
	}
	select {
	case err := <-exited:
		require.NoError(t, err, "a graceful stop exits 0")
	case <-time.After(time.Minute):
		t.Fatal("still running a minute after SIGINT")
	}
}

// TestFakeZohoRefusesBadFlags: a negative count, and an address taken.
func TestFakeZohoRefusesBadFlags(t *testing.T) {
	t.Parallel()
	err := run(t.Context(), []string{"-records", "-1"}, nil, &strings.Builder{})
	require.ErrorContains(t, err, "-records: must be >= 0")
	err = run(t.Context(), []string{"-addr", "256.0.0.1:1"}, nil, &strings.Builder{})
	require.ErrorContains(t, err, "-addr 256.0.0.1:1")
}
