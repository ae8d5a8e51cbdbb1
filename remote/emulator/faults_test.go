package emulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// TestFaults: at rate 1 every API and blob request fails with a fault kind,
// and is counted; control and OAuth endpoints are spared.
func TestFaults(t *testing.T) {
	e := newEnv(t)
	e.upload("f.txt", "content")
	link := e.getByPath("f.txt", "").Download
	e.s.ResetStats()
	e.s.SetFaults(1, 1)

	const n = 24
	okAPI := map[int]string{500: remote.CodeAPIErrors, 502: "", 503: remote.CodeAPIErrors}
	for range n {
		req, _ := http.NewRequest(http.MethodGet, e.base+"/files", nil)
		req.Header.Set("Authorization", "Bearer "+e.tok)
		resp, err := e.hc.Do(req)
		if err != nil {
			continue // a dropped connection
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, ok := okAPI[resp.StatusCode]
		if !ok {
			t.Fatalf("API fault answered %d: %s", resp.StatusCode, b)
		}
		var p remote.Problem
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("fault body %q: %v", b, err)
		}
		if (code != "" && p.Type != remote.ProblemTypePrefix+code) ||
			(resp.StatusCode == 502 && p.Type != remote.ProblemTypePrefix+remote.CodeBadGateway && p.Type != remote.ProblemTypePrefix+remote.CodeMetadataStoreError) {
			t.Fatalf("fault %d with type %s", resp.StatusCode, p.Type)
		}
	}
	for range n {
		resp, err := e.hc.Get(link)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if s := resp.StatusCode; s != 500 && s != 502 && s != 503 {
			t.Fatalf("blob fault answered %d", s)
		}
	}
	// Spared: stats and OAuth.
	resp, b := e.do(http.MethodGet, e.s.Info().StatsURL, "", nil)
	wantStatus(t, resp, b, http.StatusOK)
	st := decode[emulator.Stats](t, b)
	// net/http retries an idempotent request whose reused connection was
	// dropped: there may be more attempts than calls, each counted.
	if st.Faults.API < n || st.Faults.API != st.APICalls(emulator.OpListFiles) ||
		st.Faults.Blob < n || st.Faults.Blob != st.Blob[emulator.BlobOpGet].Count {
		t.Fatalf("fault stats: %+v", st)
	}
	for status := range st.API[emulator.OpListFiles] {
		if _, ok := okAPI[status]; !ok && status != emulator.StatusDroppedByFault {
			t.Fatalf("recorded status %d", status)
		}
	}
	info := e.s.Info()
	if st, tr := e.token(map[string][]string{"grant_type": {"client_credentials"}}, info.ServiceClientID, info.ServiceClientSecret); st != 200 || tr.AccessToken == "" {
		t.Fatalf("token endpoint faulted: %d", st)
	}
	e.s.SetFaults(0, 0)
	e.list("")
}

// TestControlEndpoints: knobs over HTTP.
func TestControlEndpoints(t *testing.T) {
	e := newEnv(t)
	hub := e.s.URL()
	resp, b := e.do(http.MethodPost, hub+"/_emulator/config", "", []byte(`{"api_latency":"30ms","link_ttl":"5m"}`))
	wantStatus(t, resp, b, http.StatusOK)
	if !strings.Contains(string(b), `"link_ttl":"5m0s"`) || !strings.Contains(string(b), `"api_latency":"30ms"`) {
		t.Fatalf("config answer %s", b)
	}
	start := time.Now()
	e.list("")
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("latency not applied: %s", d)
	}
	resp, b = e.do(http.MethodPost, hub+"/_emulator/config", "", []byte(`{"link_ttl":"soon"}`))
	wantStatus(t, resp, b, http.StatusBadRequest)
	resp, b = e.do(http.MethodPost, hub+"/_emulator/config", "", []byte(`{"api_fault_rate":1}`))
	wantStatus(t, resp, b, http.StatusOK)
	resp, b = e.do(http.MethodPost, hub+"/_emulator/config", "", []byte(`{"api_fault_rate":0,"api_latency":"0s"}`))
	wantStatus(t, resp, b, http.StatusOK)
	resp, b = e.do(http.MethodPost, hub+"/_emulator/reset", "", nil)
	wantStatus(t, resp, b, http.StatusNoContent)
	if st := e.s.Stats(); len(st.API) != 0 {
		t.Fatalf("stats after reset %+v", st.API)
	}
}

// TestPersistence: with a data dir, files, ids and tokens survive a restart.
func TestPersistence(t *testing.T) {
	dir, container := t.TempDir(), emutest.ContainerName()
	mod := func(c *emulator.Config) { c.DataDir, c.Container = dir, container }
	endpoint := os.Getenv("EVOFS_AZURITE_URL")
	if endpoint == "" {
		t.Fatal("EVOFS_AZURITE_URL is not set: run the tests with `make test` (or contrib/azurite/run go test ...)")
	}
	s1, err := emulator.Start(context.Background(), emulator.Config{BlobEndpoint: endpoint, DataDir: dir, Container: container})
	if err != nil {
		t.Fatal(err)
	}
	e1 := envFor(t, s1)
	up := e1.upload("keep/me.txt", "kept")
	oldTok := s1.IssueToken(emulator.RoleEditor, time.Hour)
	info1 := s1.Info()
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	e := newEnv(t, mod)
	info2 := e.s.Info()
	if info2.OrgID != info1.OrgID || info2.WorkspaceID != info1.WorkspaceID || info2.ServiceClientSecret != info1.ServiceClientSecret {
		t.Fatalf("ids changed across restart: %+v vs %+v", info1, info2)
	}
	e.tok = oldTok
	l := e.list("")
	if l.Total != 1 || l.Files[0].FileID != up.FileID || l.Files[0].VersionID != up.VersionID {
		t.Fatalf("after restart: %+v", l)
	}
	if s := e.download(e.getByPath("keep/me.txt", "").Download); s != "kept" {
		t.Fatalf("content after restart %q", s)
	}
	// New versions keep increasing.
	if up2 := e.upsert("keep/me.txt"); up2.VersionID <= up.VersionID {
		t.Fatalf("version %s after %s", up2.VersionID, up.VersionID)
	}
}

// TestBackendDown: when storage is unreachable, checking a pending version
// answers 502 bad-gateway, and the blob proxy 502.
func TestBackendDown(t *testing.T) {
	az := os.Getenv("EVOFS_AZURITE_URL")
	if az == "" {
		t.Fatal("EVOFS_AZURITE_URL is not set: run the tests with `make test` (or contrib/azurite/run go test ...)")
	}
	fwd := newForwarder(t, strings.TrimPrefix(strings.SplitN(strings.TrimPrefix(az, "http://"), "/", 2)[0], ""))
	e := newEnv(t, func(c *emulator.Config) {
		c.BlobEndpoint = "http://" + fwd.addr() + "/devstoreaccount1"
	})
	up := e.upsert("p.txt")
	fwd.close()
	resp, b := e.call(http.MethodGet, "/files")
	wantProblem(t, resp, b, http.StatusBadGateway, remote.CodeBadGateway)
	resp, b = e.putBlob(up.Upload, "x")
	wantStatus(t, resp, b, http.StatusBadGateway)
}

// forwarder is a TCP relay to Azurite that a test can cut.
type forwarder struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newForwarder(t *testing.T, target string) *forwarder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln}
	t.Cleanup(f.close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return f
}

func (f *forwarder) addr() string { return f.ln.Addr().String() }

func (f *forwarder) close() {
	if err := f.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// TestFailCallsScripted: a scripted fault serves skip calls, fails the n
// after them with the problem asked for, then serves again.
func TestFailCallsScripted(t *testing.T) {
	e := newEnv(t)
	e.s.FailCalls(emulator.OpListFiles, 1, 2, http.StatusBadRequest, remote.CodeInvalidPath)
	for i, want := range []int{200, 400, 400, 200, 200} {
		resp, b := e.call(http.MethodGet, "/files")
		if resp.StatusCode != want {
			t.Fatalf("call %d: status %d, want %d: %s", i, resp.StatusCode, want, b)
		}
		if want == 400 {
			wantProblem(t, resp, b, 400, remote.CodeInvalidPath)
		}
	}
	if n := e.s.Stats().Faults.API; n != 2 {
		t.Fatalf("%d faults counted, want 2", n)
	}
}
