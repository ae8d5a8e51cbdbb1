package main

// Helpers of the crash and unmount tests (crash_test.go): a mount in a
// child process with a watchdog, a gate in front of Azurite that can hold
// or refuse blob writes, and checks of the remote side through the API.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// Blob write kinds the gate tells apart (as the emulator names them).
const (
	opPutBlob      = emulator.BlobOpPutBlob
	opPutBlock     = emulator.BlobOpPutBlock
	opPutBlockList = emulator.BlobOpPutBlockList
)

// blobGate is a reverse proxy between the emulator and Azurite. Blob
// writes of the kinds it is told to stop are held (never reach Azurite
// until Open), refused, or let through with their answer held (Azurite
// has done them; the client does not know yet); everything else goes
// through. It sits behind the emulator's own proxy, so the emulator still
// counts every request.
//
// A held request's body is read first: that is what lets the server see a
// client that went away (a killed mount), so a held request of a dead
// process ends without ever reaching Azurite, and a held answer is never
// delivered.
type blobGate struct {
	srv      *httptest.Server
	endpoint string // the account URL to give the emulator
	proxy    *httputil.ReverseProxy

	mu       sync.Mutex
	stop     map[string]gateAction // GUARDED_BY(mu): blob op -> what to do
	budget   map[string]int        // GUARDED_BY(mu): requests of an op still let through first
	release  chan struct{}         // GUARDED_BY(mu): closed by Open
	held     int                   // GUARDED_BY(mu): requests (or answers) waiting now
	passed   map[string]int        // GUARDED_BY(mu): forwarded, by op
	answered map[string]int        // GUARDED_BY(mu): done by Azurite (2xx), by op
}

type gateAction int

const (
	gateHold gateAction = iota + 1
	gateRefuse
	gateHoldAnswer
)

// holdAnswerKey marks a forwarded request whose answer the gate holds; its
// value is the release channel.
type holdAnswerKey struct{}

func newBlobGate(t *testing.T) *blobGate {
	t.Helper()
	az := os.Getenv("EVOFS_AZURITE_URL")
	if az == "" {
		t.Fatal("EVOFS_AZURITE_URL is not set: run the tests with contrib/azurite/run go test ...")
	}
	u, err := url.Parse(az)
	if err != nil {
		t.Fatal(err)
	}
	g := &blobGate{stop: map[string]gateAction{}, budget: map[string]int{}, passed: map[string]int{},
		answered: map[string]int{}, release: make(chan struct{})}
	target := &url.URL{Scheme: u.Scheme, Host: u.Host}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		ModifyResponse: g.answer,
		// A held answer whose client died, or Azurite failing: the client
		// (the emulator's proxy) sees a 502, if it is still there.
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) },
	}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(func() {
		g.Open()
		g.srv.Close()
	})
	g.endpoint = g.srv.URL + u.Path
	return g
}

// gateOp names a blob request the way the emulator's stats do.
func gateOp(r *http.Request) string {
	if r.Method != http.MethodPut {
		return ""
	}
	switch comp := r.URL.Query().Get("comp"); {
	case comp == "block":
		return opPutBlock
	case comp == "blocklist":
		return opPutBlockList
	case comp == "" && r.Header.Get("x-ms-copy-source") == "" && r.Header.Get("x-ms-blob-type") != "":
		return opPutBlob
	}
	return ""
}

func (g *blobGate) serve(w http.ResponseWriter, r *http.Request) {
	op := gateOp(r)
	g.mu.Lock()
	act := g.stop[op]
	if act != 0 && g.budget[op] > 0 {
		g.budget[op]--
		act = 0
	}
	release := g.release
	g.mu.Unlock()
	switch act {
	case gateRefuse:
		io.Copy(io.Discard, r.Body)
		w.Header().Set("x-ms-error-code", "InvalidInput")
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>InvalidInput</Code><Message>refused by the test's gate</Message></Error>`)
		return
	case gateHold:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		g.mu.Lock()
		g.held++
		g.mu.Unlock()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		g.mu.Lock()
		g.held--
		g.mu.Unlock()
		if r.Context().Err() != nil {
			return // its client is gone: it never reaches Azurite
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	case gateHoldAnswer:
		r = r.WithContext(context.WithValue(r.Context(), holdAnswerKey{}, release))
	}
	g.mu.Lock()
	g.passed[op]++
	g.mu.Unlock()
	g.proxy.ServeHTTP(w, r)
}

// answer counts what Azurite did and holds the answers it was told to
// hold until Open, or until their client is gone (then the answer is
// dropped: Azurite did the request, its client never learns it).
func (g *blobGate) answer(resp *http.Response) error {
	ctx := resp.Request.Context()
	if resp.StatusCode/100 == 2 {
		g.mu.Lock()
		g.answered[gateOp(resp.Request)]++
		g.mu.Unlock()
	}
	release, ok := ctx.Value(holdAnswerKey{}).(chan struct{})
	if !ok {
		return nil
	}
	g.mu.Lock()
	g.held++
	g.mu.Unlock()
	select {
	case <-release:
	case <-ctx.Done():
	}
	g.mu.Lock()
	g.held--
	g.mu.Unlock()
	return ctx.Err()
}

// Hold holds every request of the ops from now on, after letting the next
// `after` of them through.
func (g *blobGate) Hold(after int, ops ...string) { g.set(gateHold, after, ops) }

// HoldAnswer lets every request of the ops through to Azurite from now on
// and holds its answer.
func (g *blobGate) HoldAnswer(ops ...string) { g.set(gateHoldAnswer, 0, ops) }

// Refuse answers 400 to every request of the ops from now on.
func (g *blobGate) Refuse(ops ...string) { g.set(gateRefuse, 0, ops) }

func (g *blobGate) set(a gateAction, after int, ops []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, op := range ops {
		g.stop[op], g.budget[op] = a, after
	}
}

// Open lets every request through from now on, the held ones included.
func (g *blobGate) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stop = map[string]gateAction{}
	select {
	case <-g.release:
	default:
		close(g.release)
	}
}

// Held is the number of requests held now.
func (g *blobGate) Held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// Passed is the number of requests of op forwarded to Azurite.
func (g *blobGate) Passed(op string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.passed[op]
}

// Answered is the number of requests of op Azurite did (answered 2xx),
// whether or not their answer reached the client.
func (g *blobGate) Answered(op string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.answered[op]
}

// startGatedEmu starts an emulator whose blobs go through a new gate.
func startGatedEmu(t *testing.T, mod ...func(*emulator.Config)) (*emulator.Server, *blobGate) {
	t.Helper()
	g := newBlobGate(t)
	emu := emutest.Start(t, append([]func(*emulator.Config){func(c *emulator.Config) { c.BlobEndpoint = g.endpoint }}, mod...)...)
	return emu, g
}

// waitFor polls cond every 20 ms until it holds, failing the test with
// what() after limit.
func waitFor(t *testing.T, limit time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not after %s: %s", limit, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mountProc is `evofs mount` in a child process.
type mountProc struct {
	t      *testing.T
	bin    string
	Dir    string // the mountpoint
	cmd    *exec.Cmd
	Stderr *logBuffer
	done   chan struct{}
	err    error // the exit, once done is closed
	dog    *time.Timer
	fired  atomic.Bool
}

// mountWatchdog bounds one mount's life: a hung FUSE server fails the test
// instead of hanging every process that touches the mount.
const mountWatchdog = 4 * time.Minute

// startMount runs `evofs mount` on a fresh mountpoint with extra flags and
// waits until the folder is mounted. Cleanup kills the process if it still
// runs and detaches the mount if it is still there.
func startWriteMount(t *testing.T, bin string, info emulator.Info, tokenFile, cacheDir string, extra ...string) *mountProc {
	t.Helper()
	mnt, err := os.MkdirTemp(t.TempDir(), "mnt")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"mount", "--log-level", "debug"}, extra...)
	args = append(args, mountArgs(info, tokenFile, cacheDir, mnt)[1:]...)
	p := &mountProc{t: t, bin: bin, Dir: mnt, Stderr: &logBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = p.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	p.dog = time.AfterFunc(mountWatchdog, func() {
		p.fired.Store(true)
		fmt.Fprintf(os.Stderr, "WATCHDOG: evofs mount at %s still running after %s; killing it\n", mnt, mountWatchdog)
		abortFUSE(mnt)
		p.cmd.Process.Kill()
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	})
	t.Cleanup(func() {
		p.dog.Stop()
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
		if mounted(mnt) {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		if p.fired.Load() {
			t.Errorf("the watchdog killed the mount at %s", mnt)
		}
		if t.Failed() {
			t.Logf("evofs mount %s log:\n%s", mnt, p.Stderr.String())
		}
	})
	waitFor(t, 30*time.Second, func() string { return "mounted:\n" + p.Stderr.String() }, func() bool {
		if p.exited() {
			t.Fatalf("evofs mount exited at start: %v\n%s", p.err, p.Stderr.String())
		}
		return mounted(mnt)
	})
	return p
}

func (p *mountProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill kills the mount with SIGKILL, waits for the process and detaches
// the dead mount.
func (p *mountProc) Kill() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(30 * time.Second)
	if err := syscall.Unmount(p.Dir, syscall.MNT_DETACH); err != nil {
		p.t.Fatalf("detach the dead mount: %v", err)
	}
}

// Signal sends sig to the mount.
func (p *mountProc) Signal(sig syscall.Signal) {
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the process to end and returns its exit.
func (p *mountProc) wait(limit time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(limit):
		p.t.Fatalf("evofs mount did not exit within %s:\n%s", limit, p.Stderr.String())
		return nil
	}
}

// Exit waits for a clean exit (status 0) and checks the folder is no
// longer mounted.
func (p *mountProc) Exit(limit time.Duration) {
	p.t.Helper()
	if err := p.wait(limit); err != nil {
		p.t.Fatalf("evofs mount exited with %v:\n%s", err, p.Stderr.String())
	}
	if mounted(p.Dir) {
		p.t.Fatalf("%s is still mounted after evofs exited", p.Dir)
	}
}

// Stop unmounts with SIGTERM and waits for a clean exit.
func (p *mountProc) Stop() {
	p.t.Helper()
	p.Signal(syscall.SIGTERM)
	p.Exit(time.Minute)
}

// abortFUSE aborts the FUSE connection of the mount at dir, found through
// mountinfo (a stat of a hung mount would hang too).
func abortFUSE(dir string) {
	const ctl = "/sys/fs/fuse/connections"
	if entries, _ := os.ReadDir(ctl); len(entries) == 0 {
		syscall.Mount("fusectl", ctl, "fusectl", 0, "")
	}
	info, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(info), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			if _, minor, ok := strings.Cut(f[2], ":"); ok {
				os.WriteFile(ctl+"/"+minor+"/abort", []byte("1"), 0)
			}
		}
	}
}

// status runs `evofs status` on the mount: its JSON, decoded.
func (p *mountProc) status() mountStatus {
	p.t.Helper()
	out := p.run("status", "--json", p.Dir)
	var st mountStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		p.t.Fatalf("evofs status --json: %v\n%s", err, out)
	}
	return st
}

// run runs the evofs command (not the mount) and returns its stdout.
func (p *mountProc) run(args ...string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		p.t.Fatalf("evofs %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out.String()
}

// waitDrained polls `evofs status` until nothing is pending.
func (p *mountProc) waitDrained(limit time.Duration) {
	p.t.Helper()
	var last mountStatus
	waitFor(p.t, limit, func() string { return fmt.Sprintf("no pending uploads; %d left: %+v", len(last.Pending), last.Pending) }, func() bool {
		last = p.status()
		return len(last.Pending) == 0
	})
}

// writeToken writes a token file atomically (a reader never sees half).
func replaceToken(t *testing.T, path, tok string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Error(err)
	}
}

// remoteSide reads the workspace through the API, as another client would.
type remoteSide struct {
	t      *testing.T
	client *remote.Client
	blobs  *remote.Blobs
}

func newRemoteSide(t *testing.T, info emulator.Info) *remoteSide {
	t.Helper()
	c, err := remote.New(remote.Config{HubURL: info.HubURL, OrgID: info.OrgID, WorkspaceID: info.WorkspaceID,
		Tokens: remote.StaticToken(info.Token)})
	if err != nil {
		t.Fatal(err)
	}
	return &remoteSide{t: t, client: c, blobs: remote.NewBlobs(remote.BlobConfig{})}
}

// fileWriterAt takes a download's ranges, in any order, into a file.
type fileWriterAt struct{ f *os.File }

func (w fileWriterAt) WriteAt(p []byte, off int64) (int, error) { return w.f.WriteAt(p, off) }

// file returns the latest version of the file at p (with its versions) and
// the sha256 of its bytes.
func (r *remoteSide) file(p string) (*remote.DownloadFileResponse, string) {
	r.t.Helper()
	ctx := context.Background()
	d, err := r.client.GetFileByPath(ctx, p, remote.GetOptions{IncludeVersions: true})
	if err != nil {
		r.t.Fatalf("get %s through the API: %v", p, err)
	}
	f, err := os.CreateTemp(r.t.TempDir(), "download")
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	if err := r.blobs.Download(ctx, remote.DownloadLink(r.client, d), fileWriterAt{f}, d.Size); err != nil {
		r.t.Fatalf("download %s: %v", p, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, d.Size)); err != nil {
		r.t.Fatal(err)
	}
	return d, hex.EncodeToString(h.Sum(nil))
}

// missing asserts nothing is at p (a version is visible only once
// committed).
func (r *remoteSide) missing(p string) {
	r.t.Helper()
	_, err := r.client.GetFileByPath(context.Background(), p, remote.GetOptions{})
	if !errors.Is(err, remote.ErrNotFound) {
		r.t.Fatalf("%s should not be there remotely yet; get says %v", p, err)
	}
}

// paths lists the live files, as full paths, with how often each appears.
func (r *remoteSide) paths() map[string]int {
	r.t.Helper()
	l, err := r.client.ListFiles(context.Background(), remote.ListOptions{Limit: remote.MaxListLimit})
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]int{}
	for _, f := range l.Files {
		out[strings.TrimPrefix(f.Path+f.Name, "/")]++
	}
	return out
}

// checkFile asserts the file at p has the bytes of sha and exactly one
// version, and returns it.
func (r *remoteSide) checkFile(p, sha string) *remote.DownloadFileResponse {
	r.t.Helper()
	d, got := r.file(p)
	if got != sha {
		r.t.Errorf("%s: remote sha256 %s, want %s", p, got[:12], sha[:12])
	}
	if len(d.Versions) != 1 {
		r.t.Errorf("%s: %d versions, want exactly 1", p, len(d.Versions))
	}
	return d
}

// content is deterministic pseudo-random bytes (ChaCha8: ten times
// faster than a loop of Uint64 under the race detector).
func content(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

func sha(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// writeFile writes a file through the mount (open, write, close) and
// returns close's error apart: in sync mode it is the upload's.
func writeFile(p string, b []byte) (writeErr, closeErr error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err, nil
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err, nil
	}
	return nil, f.Close()
}

// newEnv builds the binary, writes the editor's token file and makes a
// cache dir.
func newEnv(t *testing.T, info emulator.Info) (bin, tokenFile, cacheDir string) {
	t.Helper()
	bin = buildEvofs(t)
	dir := t.TempDir()
	tokenFile = filepath.Join(dir, "token")
	replaceToken(t, tokenFile, info.Token)
	return bin, tokenFile, filepath.Join(dir, "cache")
}

// holdOpen has another process create path, write text to it and keep
// it open until the returned func is called (which waits for the process
// to exit). That process is this test binary (see init): a shell would
// close copies of the descriptor as it redirects, and every close is a
// flush.
func holdOpen(t *testing.T, path, text string) (closeIt func()) {
	t.Helper()
	return holder(t, path, true, holdOpenEnv+"="+path, holdOpenTextEnv+"="+text)
}

// holder starts this test binary with env added (its init acts on it),
// waits for its "ready" and returns the func that ends it (closing its
// stdin), also called at cleanup; reportExit says whether an error exit
// fails the test (not when the mount may be dead by then).
func holder(t *testing.T, path string, reportExit bool, env ...string) (closeIt func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr logBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeIt = func() {
		once.Do(func() {
			in.Close()
			if err := cmd.Wait(); err != nil && reportExit {
				t.Errorf("the process holding %s open: %v\n%s", path, err, stderr.String())
			}
		})
	}
	t.Cleanup(closeIt)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("the process holding %s open: %q, %v\n%s", path, line, err, stderr.String())
	}
	return closeIt
}

const (
	holdOpenEnv     = "EVOFS_TEST_HOLD_OPEN"
	holdOpenTextEnv = "EVOFS_TEST_HOLD_OPEN_TEXT"
)

// init is holdOpen's other process when the test binary runs with
// holdOpenEnv set: create, write, say "ready", wait for stdin to end,
// close.
func init() {
	p := os.Getenv(holdOpenEnv)
	if p == "" {
		return
	}
	f, err := os.Create(p)
	if err == nil {
		_, err = f.WriteString(os.Getenv(holdOpenTextEnv))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
