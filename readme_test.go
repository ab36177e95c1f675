package tds_test

import (
	"bytes"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
)

// readmeImports are the packages the README's fragments may use, by name.
var readmeImports = map[string]string{
	"cmp": "cmp", "context": "context", "errors": "errors", "http": "net/http", "log": "log", "os": "os",
	"chi": "github.com/go-chi/chi/v5", "bun": "github.com/uptrace/bun",
	"prometheus": "github.com/prometheus/client_golang/prometheus",
	"promhttp":   "github.com/prometheus/client_golang/prometheus/promhttp",
	"tds":        "github.com/tdscore/tds", "tdsui": "github.com/tdscore/tds/tdsui",
	"tdsprom": "github.com/tdscore/tds/tdsprom", "tdsalert": "github.com/tdscore/tds/tdsalert",
	"tdsreconcile": "github.com/tdscore/tds/tdsreconcile",
}

// TestReadmeExample compiles the README's Go blocks and runs its program,
// so that they keep working when pasted: the first block is a whole
// program; each later one continues its run function after the Syncer,
// and is compiled as a function with run's ctx, db and syncer in scope.
// The program runs on SQLite, takes a webhook, writes the row to its own
// table, keeps a newer row from an older event, and exits 0 on SIGINT.
func TestReadmeExample(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the README's program")
	}
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	blocks := regexp.MustCompile("(?s)\n```go\n(.*?)\n```\n").FindAllStringSubmatch(string(readme), -1)
	require.GreaterOrEqual(t, len(blocks), 2, "the README's Go blocks")
	require.True(t, strings.HasPrefix(blocks[0][1], "package main\n"), "the first Go block is a whole program")

	// Inside the module, so that it builds with the module's go.mod and
	// build cache; a leading dot keeps ./... (go vet, go test) away from it.
	dir, err := os.MkdirTemp(".", ".readme-test-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(blocks[0][1]+"\n"), 0o644))
	for i, b := range blocks[1:] {
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("block%d.go", i+2)), []byte(fragment(i+2, b[1])), 0o644))
	}
	bin := filepath.Join(t.TempDir(), "readme")
	out, err := exec.Command("go", "build", "-o", bin, "./"+filepath.ToSlash(dir)).CombinedOutput()
	require.NoError(t, err, "the README's Go blocks do not compile:\n%s", out)

	dbPath := filepath.Join(t.TempDir(), "readme.db")
	const key = "readme-test-webhook-key"
	p := startReadme(t, bin, "DATABASE_URL=sqlite:"+dbPath, "TDS_WEBHOOK_KEYS="+key)
	output := p.output

	post := func(name, modified string) {
		body := fmt.Sprintf(`{"event_type":"update","entity_type":"product","entity_id":"p-1",`+
			`"data":{"item_id":"p-1","name":%q,"rate":12.5,"last_modified_time":%q}}`, name, modified)
		req, err := http.NewRequest(http.MethodPost, p.base+"/zoho/webhooks/products", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(tds.HeaderWebhookKey, key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, output())
	}
	// The newer version first, then an older one, which must not win.
	post("Pump", "2026-11-20T10:15:30+0530")
	post("Stale pump", "2026-11-20T10:15:29+0530")

	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)")
	require.NoError(t, err)
	defer db.Close()
	require.Eventually(t, func() bool {
		var open int
		err := db.QueryRow(`SELECT COUNT(*) FROM tds_sync_queue WHERE status NOT IN ('completed', 'dead_letter')`).Scan(&open)
		return err == nil && open == 0
	}, 60*time.Second, 50*time.Millisecond, "the jobs end\n%s", output())
	var dead int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'dead_letter'`).Scan(&dead))
	require.Zero(t, dead, "no job dead-letters\n%s", output())
	var name string
	var rate float64
	var deleted bool
	require.NoError(t, db.QueryRow(`SELECT name, rate, deleted FROM catalog WHERE item_id = 'p-1'`).Scan(&name, &rate, &deleted), output())
	require.Equal(t, "Pump", name, "the older event does not overwrite the newer row")
	require.Equal(t, 12.5, rate)
	require.False(t, deleted)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-p.done:
		require.NoError(t, err, "exit status after SIGINT\n%s", output())
	case <-time.After(60 * time.Second):
		t.Fatalf("the README's program did not exit within 60s of SIGINT\n%s", output())
	}
}

// fragment makes block n, a continuation of run after the Syncer, a
// function with run's variables as parameters, importing what it uses.
func fragment(n int, code string) string {
	var imports []string
	for name, path := range readmeImports {
		if name == "bun" || name == "context" || name == "tds" ||
			regexp.MustCompile(`\b`+name+`\.`).MatchString(code) {
			imports = append(imports, fmt.Sprintf("%s %q", name, path))
		}
	}
	sort.Strings(imports)
	return fmt.Sprintf("package main\n\nimport (\n\t%s\n)\n\nvar _ = block%d\n\n"+
		"func block%d(ctx context.Context, db *bun.DB, syncer tds.Syncer) error {\n%s\n}\n",
		strings.Join(imports, "\n\t"), n, n, code)
}

// readmeProgram is the README's program, running.
type readmeProgram struct {
	cmd  *exec.Cmd
	base string     // http://127.0.0.1:port
	done chan error // what cmd.Wait returned, once
	mu   sync.Mutex
	out  bytes.Buffer
}

func (p *readmeProgram) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *readmeProgram) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startReadme starts the README's program on a free local port and
// returns once /zoho/health/ready answers 200. A port taken by another
// process between its choice and the program's listen is tried again.
func startReadme(t *testing.T, bin string, env ...string) *readmeProgram {
	t.Helper()
	for try := 1; ; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())

		p := &readmeProgram{cmd: exec.Command(bin), base: "http://" + addr, done: make(chan error, 1)}
		p.cmd.Env = append(append(os.Environ(), "ADDR="+addr), env...)
		p.cmd.Stdout, p.cmd.Stderr = p, p
		require.NoError(t, p.cmd.Start())
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
			}
		})
		tick := time.NewTicker(50 * time.Millisecond)
		deadline := time.After(60 * time.Second)
		ready := false
		for !ready {
			select {
			case err := <-p.done:
				tick.Stop()
				if try < 3 && strings.Contains(p.output(), "address already in use") {
					break
				}
				t.Fatalf("the README's program exited before it was ready (%v)\n%s", err, p.output())
			case <-deadline:
				t.Fatalf("the README's program was not ready within 60s\n%s", p.output())
			case <-tick.C:
				resp, err := http.Get(p.base + "/zoho/health/ready")
				if err == nil {
					resp.Body.Close()
					ready = resp.StatusCode == http.StatusOK
				}
				continue
			}
			break
		}
		tick.Stop()
		if ready {
			return p
		}
	}
}
