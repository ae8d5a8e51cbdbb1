package emulator_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// env is one emulator and raw HTTP helpers to call it.
type env struct {
	t    *testing.T
	s    *emulator.Server
	base string // .../file/v2/orgs/{org}/workspaces/{ws}
	tok  string // editor token
	hc   *http.Client
}

func newEnv(t *testing.T, mod ...func(*emulator.Config)) *env {
	t.Helper()
	return envFor(t, emutest.Start(t, mod...))
}

func envFor(t *testing.T, s *emulator.Server) *env {
	info := s.Info()
	return &env{
		t: t, s: s, tok: info.Token,
		base: info.HubURL + "/file/v2/orgs/" + info.OrgID + "/workspaces/" + info.WorkspaceID,
		hc: &http.Client{
			Timeout:       time.Minute,
			Transport:     &http.Transport{Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// do sends a request; tok "" sends no Authorization header. It returns the
// response (body already read) and the body.
func (e *env) do(method, u, tok string, body []byte, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, u, err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, remote.Redact(u), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, remote.Redact(u), err)
	}
	return resp, b
}

// call is an API call with the editor token; rel is below the workspace base.
func (e *env) call(method, rel string) (*http.Response, []byte) {
	e.t.Helper()
	return e.do(method, e.base+rel, e.tok, nil)
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, b, err)
	}
	return v
}

func wantStatus(t *testing.T, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, remote.Redact(resp.Request.URL.String()), resp.StatusCode, status, body)
	}
}

// wantProblem checks the status and the problem document's type.
func wantProblem(t *testing.T, resp *http.Response, body []byte, status int, code string) remote.Problem {
	t.Helper()
	wantStatus(t, resp, body, status)
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content type %q, want application/problem+json", ct)
	}
	p := decode[remote.Problem](t, body)
	if p.Type != remote.ProblemTypePrefix+code || p.Status != status || p.Title == "" {
		t.Fatalf("problem %+v, want type %s%s status %d", p, remote.ProblemTypePrefix, code, status)
	}
	return p
}

func esc(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// upsert asks for an upload link at path.
func (e *env) upsert(path string) remote.UploadFileResponse {
	e.t.Helper()
	resp, b := e.call(http.MethodPut, "/files/path/"+esc(path))
	wantStatus(e.t, resp, b, http.StatusOK)
	return decode[remote.UploadFileResponse](e.t, b)
}

// putBlob uploads content to a link in one Put Blob.
func (e *env) putBlob(link, content string) (*http.Response, []byte) {
	e.t.Helper()
	return e.do(http.MethodPut, link, "", []byte(content), "x-ms-blob-type", "BlockBlob")
}

// upload creates a committed version of path with content.
func (e *env) upload(path, content string) remote.UploadFileResponse {
	e.t.Helper()
	up := e.upsert(path)
	resp, b := e.putBlob(up.Upload, content)
	wantStatus(e.t, resp, b, http.StatusCreated)
	return up
}

func (e *env) getByPath(path, query string) remote.DownloadFileResponse {
	e.t.Helper()
	resp, b := e.call(http.MethodGet, "/files/path/"+esc(path)+query)
	wantStatus(e.t, resp, b, http.StatusOK)
	return decode[remote.DownloadFileResponse](e.t, b)
}

// download GETs a link and returns the bytes.
func (e *env) download(link string) string {
	e.t.Helper()
	resp, b := e.do(http.MethodGet, link, "", nil)
	wantStatus(e.t, resp, b, http.StatusOK)
	return string(b)
}

func (e *env) list(query string) remote.ListFilesResponse {
	e.t.Helper()
	resp, b := e.call(http.MethodGet, "/files"+query)
	wantStatus(e.t, resp, b, http.StatusOK)
	return decode[remote.ListFilesResponse](e.t, b)
}

func decodeBody(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}
