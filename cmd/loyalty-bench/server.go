package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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

	"github.com/jackc/pgx/v5"
	"github.com/valyala/fasthttp"
)

// buildServer compiles ./cmd/loyalty into dir.
func buildServer(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "loyalty")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/loyalty")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/loyalty (run the bench from the module root, or give -server-bin): %w", err)
	}
	return bin, nil
}

// pgAdmin creates and drops the bench's scratch databases on the server
// that -pg-url names.
type pgAdmin struct {
	base *url.URL // -pg-url, the maintenance database
}

func newPGAdmin(raw string) (*pgAdmin, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("-pg-url must be a postgres:// URL")
	}
	return &pgAdmin{base: u}, nil
}

// urlFor is -pg-url with its database replaced by name.
func (p *pgAdmin) urlFor(name string) string {
	u := *p.base
	u.Path = "/" + name
	return u.String()
}

func (p *pgAdmin) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, p.base.String())
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redact(p.base), err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// create makes an empty database; names are the bench's own
// (loyalty_bench_…), never taken from input.
func (p *pgAdmin) create(ctx context.Context, name string) error {
	if err := p.drop(ctx, name); err != nil {
		return err
	}
	if err := p.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

func (p *pgAdmin) drop(ctx context.Context, name string) error {
	if !strings.HasPrefix(name, "loyalty_bench") {
		return fmt.Errorf("refusing to drop %q: not a bench database", name)
	}
	if err := p.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func (p *pgAdmin) version(ctx context.Context) string {
	conn, err := pgx.Connect(ctx, p.base.String())
	if err != nil {
		return "unavailable (" + err.Error() + ")"
	}
	defer conn.Close(context.Background())
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "unknown"
	}
	return v
}

func redact(u *url.URL) string { return u.Redacted() }

// server is a running `loyalty serve`.
type server struct {
	cmd     *exec.Cmd
	addr    string
	logPath string
	// metricsToken is the bearer token /metrics takes (LOYALTY_METRICS_TOKEN).
	metricsToken string
	done         chan struct{}
	waitErr      error
}

// serverEnv is the environment of the engine's processes: the caller's,
// without any LOYALTY_ setting, plus the bench's own.
func serverEnv(dbURL, addr, secret, logLevel string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOYALTY_") {
			env = append(env, kv)
		}
	}
	return append(env, "LOYALTY_DATABASE_URL="+dbURL, "LOYALTY_ADDR="+addr, "LOYALTY_JWT_SECRET="+secret,
		"LOYALTY_JOBS=off", "LOYALTY_LOG_LEVEL="+logLevel, "LOYALTY_METRICS_TOKEN="+randomSecret())
}

func randomSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// migrateUp runs `loyalty migrate up`.
func migrateUp(ctx context.Context, bin string, env []string) error {
	cmd := exec.CommandContext(ctx, bin, "migrate", "up")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("loyalty migrate up: %w\n%s", err, out)
	}
	return nil
}

// startServer runs `loyalty serve` and waits until /readyz answers 200.
// The server's output goes to logPath. It dies with the bench (SIGKILL on
// the parent's death), so an interrupted run leaves no engine behind.
func startServer(ctx context.Context, bin string, env []string, addr, logPath string) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start loyalty serve: %w", err)
	}
	s := &server{cmd: cmd, addr: addr, logPath: logPath, done: make(chan struct{})}
	for _, kv := range env {
		if t, ok := strings.CutPrefix(kv, "LOYALTY_METRICS_TOKEN="); ok {
			s.metricsToken = t
		}
	}
	go func() { s.waitErr = cmd.Wait(); logf.Close(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, _, err := fasthttp.GetTimeout(nil, "http://"+addr+"/readyz", 2*time.Second)
		if err == nil && st == 200 {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("loyalty serve exited before it was ready (%v):\n%s", s.waitErr, tail(logPath, 20))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("loyalty serve not ready after 60s:\n%s", tail(logPath, 20))
		}
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop asks the server to shut down and kills it if it has not within 25 s.
func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(25 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// goroutines reads go_goroutines from /metrics; -1 when it is not there.
func (s *server) goroutines() int {
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI("http://" + s.addr + "/metrics")
	req.Header.Set("Authorization", "Bearer "+s.metricsToken)
	if err := fasthttp.DoTimeout(req, res, 5*time.Second); err != nil || res.StatusCode() != 200 {
		return -1
	}
	return parseGoroutines(res.Body())
}

// parseGoroutines finds the go_goroutines sample in Prometheus text.
func parseGoroutines(text []byte) int {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "go_goroutines")
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.IndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		return int(v)
	}
	return -1
}

// procStatusKB reads a "VmRSS:"-style field of /proc/<pid>/status, in kB;
// -1 when unavailable.
func procStatusKB(pid int, field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	return statusField(b, field)
}

func statusField(b []byte, field string) int64 {
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return -1
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return -1
		}
		return v
	}
	return -1
}

// rssSampler records the largest VmRSS of a process, sampled every
// interval until stopped.
type rssSampler struct {
	mu    sync.Mutex
	maxKB int64
	stopc chan struct{}
	wg    sync.WaitGroup
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	r := &rssSampler{maxKB: -1, stopc: make(chan struct{})}
	r.take(pid)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-r.stopc:
				return
			case <-t.C:
				r.take(pid)
			}
		}
	}()
	return r
}

func (r *rssSampler) take(pid int) {
	v := procStatusKB(pid, "VmRSS")
	r.mu.Lock()
	if v > r.maxKB {
		r.maxKB = v
	}
	r.mu.Unlock()
}

// stop takes a last sample and returns the maximum in kB (-1: unknown).
func (r *rssSampler) stop(pid int) int64 {
	close(r.stopc)
	r.wg.Wait()
	r.take(pid)
	return r.maxKB
}

// tail is the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
