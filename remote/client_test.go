package remote_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"golang.org/x/oauth2"
)

// These tests drive the client against scripted servers to pin down its
// retry, auth and error behaviour exactly; contract_test.go runs it against
// the emulator.

const secretToken = "tok-SECRET-never-logged"

func problem(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(remote.Problem{Type: remote.ProblemTypePrefix + code, Title: "t", Status: status,
		Detail: "detail of " + code, PermittedRoles: []string{"owner", "editor"}, YourRole: "viewer"})
}

func newClient(t *testing.T, url string, src oauth2.TokenSource, logs *bytes.Buffer) *remote.Client {
	t.Helper()
	if src == nil {
		src = remote.StaticToken(secretToken)
	}
	var log *slog.Logger
	if logs != nil {
		log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := remote.New(remote.Config{HubURL: url, OrgID: "o", WorkspaceID: "w", Tokens: src, Logger: log,
		Retry: remote.RetryPolicy{MaxAttempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestErrorsMatchSentinels(t *testing.T) {
	cases := []struct {
		status int
		code   string
		is     error
	}{
		{400, remote.CodeBadRequest, remote.ErrInvalid},
		{400, remote.CodeInvalidPath, remote.ErrInvalid},
		{400, remote.CodeNoUploadInProgress, remote.ErrNoUploadInProgress},
		{401, remote.CodeMissingToken, remote.ErrUnauthorized},
		{401, remote.CodeInvalidToken, remote.ErrUnauthorized},
		{403, remote.CodeInsufficientRole, remote.ErrForbidden},
		{404, remote.CodeNotFound, remote.ErrNotFound},
		{409, remote.CodeAlreadyExists, remote.ErrAlreadyExists},
		{410, remote.CodeGone, remote.ErrGone},
		{422, remote.CodeValidation, remote.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				problem(w, tc.status, tc.code)
			}))
			defer srv.Close()
			_, err := newClient(t, srv.URL, nil, nil).GetFile(context.Background(), "f1", remote.GetOptions{})
			if !errors.Is(err, tc.is) {
				t.Fatalf("errors.Is(%v, %v) = false", err, tc.is)
			}
			var e *remote.Error
			if !errors.As(err, &e) || e.Status != tc.status || e.Code != tc.code || e.Detail != "detail of "+tc.code {
				t.Fatalf("error %#v, want status %d code %s", e, tc.status, tc.code)
			}
			if tc.status == 403 && (e.YourRole != "viewer" || len(e.PermittedRoles) != 2) {
				t.Fatalf("403 roles not decoded: %#v", e)
			}
			if remote.ErrorCode(err) != tc.code {
				t.Fatalf("ErrorCode = %q", remote.ErrorCode(err))
			}
			want := int32(1)
			if tc.status == 401 {
				want = 2 // one token refresh, one retry
			}
			if n := calls.Load(); n != want {
				t.Fatalf("%d calls, want %d", n, want)
			}
			for _, other := range []error{remote.ErrNotFound, remote.ErrGone, remote.ErrAlreadyExists, remote.ErrForbidden, remote.ErrUnauthorized} {
				if other != tc.is && errors.Is(err, other) {
					t.Fatalf("%v also matches %v", err, other)
				}
			}
		})
	}
}

func TestRetriesTransientFailures(t *testing.T) {
	for _, status := range []int{429, 500, 502, 503, 504, -1} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) <= 2 {
					if status == -1 { // drop the connection
						conn, _, _ := w.(http.Hijacker).Hijack()
						conn.Close()
						return
					}
					problem(w, status, remote.CodeAPIErrors)
					return
				}
				json.NewEncoder(w).Encode(remote.DownloadFileResponse{FileID: "f1", VersionID: "7"})
			}))
			defer srv.Close()
			obs := &recorder{}
			c, err := remote.New(remote.Config{HubURL: srv.URL, OrgID: "o", WorkspaceID: "w", Tokens: remote.StaticToken(secretToken),
				Retry: remote.RetryPolicy{MaxAttempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond}, Observer: obs})
			if err != nil {
				t.Fatal(err)
			}
			f, err := c.GetFile(context.Background(), "f1", remote.GetOptions{})
			if err != nil || f.VersionID != "7" || calls.Load() != 3 {
				t.Fatalf("got %+v, %v after %d calls; want version 7 after 3", f, err, calls.Load())
			}
			if fmt.Sprint(obs.retries) != "map[get_file:2]" {
				t.Errorf("observer saw retries %v, want get_file twice", obs.retries)
			}
		})
	}
}

func TestRetryBudgetAndContext(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		problem(w, 503, remote.CodeBadGateway)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, nil, nil)
	_, err := c.ListFiles(context.Background(), remote.ListOptions{})
	if calls.Load() != 4 || !strings.Contains(fmt.Sprint(err), "gave up after 4 tries") {
		t.Fatalf("%d calls, err %v; want 4 calls and a give-up error", calls.Load(), err)
	}
	var e *remote.Error
	if !errors.As(err, &e) || e.Status != 503 {
		t.Fatalf("final error lost its status: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls.Store(0)
	if _, err := c.ListFiles(ctx, remote.ListOptions{}); !errors.Is(err, context.Canceled) || calls.Load() != 0 {
		t.Fatalf("cancelled context: err %v after %d calls", err, calls.Load())
	}
}

func TestNotRetried(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		problem(w, 404, remote.CodeNotFound)
	}))
	defer srv.Close()
	if _, err := newClient(t, srv.URL, nil, nil).UpsertFileByPath(context.Background(), "a/b", ""); !errors.Is(err, remote.ErrNotFound) || calls.Load() != 1 {
		t.Fatalf("err %v after %d calls; want not-found after 1", err, calls.Load())
	}
}

// countingSource hands out token-1, token-2, ... one per call.
type countingSource struct{ n atomic.Int32 }

func (s *countingSource) Token() (*oauth2.Token, error) {
	n := s.n.Add(1)
	return &oauth2.Token{AccessToken: fmt.Sprintf("token-%d", n), Expiry: time.Now().Add(time.Hour)}, nil
}

func TestUnauthorizedRefreshesTokenOnce(t *testing.T) {
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		seen = append(seen, auth)
		if auth != "Bearer token-2" {
			problem(w, 401, remote.CodeInvalidToken)
			return
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	src := &countingSource{}
	c := newClient(t, srv.URL, src, nil)
	if err := c.DeleteFile(context.Background(), "f1"); err != nil {
		t.Fatal(err)
	}
	// The refreshed token is kept for the next call.
	if err := c.DeleteFile(context.Background(), "f2"); err != nil {
		t.Fatal(err)
	}
	want := []string{"Bearer token-1", "Bearer token-2", "Bearer token-2"}
	if fmt.Sprint(seen) != fmt.Sprint(want) || src.n.Load() != 2 {
		t.Fatalf("sent %v with %d tokens fetched; want %v with 2", seen, src.n.Load(), want)
	}
}

func TestDeleteRetryFindingFileGoneSucceeds(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 { // the delete happens, its answer is lost
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		problem(w, 410, remote.CodeGone)
	}))
	defer srv.Close()
	if err := newClient(t, srv.URL, nil, nil).DeleteFile(context.Background(), "f1"); err != nil {
		t.Fatalf("delete whose retry found the file gone: %v", err)
	}
}

func TestRestoreAnswers(t *testing.T) {
	for _, status := range []int{204, 303} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("deleted") != "false" || r.Method != http.MethodPut {
				t.Errorf("restore sent %s %s", r.Method, r.URL)
			}
			if status == 303 {
				w.Header().Set("Location", "/elsewhere")
				w.WriteHeader(303)
				json.NewEncoder(w).Encode(remote.DownloadFileResponse{FileID: "f1", Name: "a (1).txt", Path: "/"})
				return
			}
			w.WriteHeader(204)
		}))
		r, err := newClient(t, srv.URL, nil, nil).RestoreFile(context.Background(), "f1")
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if r.Moved != (status == 303) || (r.Moved && r.File.FullPath() != "a (1).txt") {
			t.Fatalf("status %d: got %+v", status, r)
		}
	}
}

func TestNoSecretInLogsOrErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem(w, 503, remote.CodeAPIErrors)
	}))
	srv.Close() // connection refused from now on
	var logs bytes.Buffer
	_, err := newClient(t, srv.URL, nil, &logs).GetFileByPath(context.Background(), "a/b c.txt", remote.GetOptions{})
	if err == nil {
		t.Fatal("call to a closed server succeeded")
	}
	for what, s := range map[string]string{"error": err.Error(), "logs": logs.String()} {
		if strings.Contains(s, secretToken) {
			t.Fatalf("%s hold the token: %s", what, s)
		}
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Fatalf("no retry logged: %s", logs.String())
	}
	if got := remote.Redact("https://h/c/b?sv=1&se=2&sig=abc%2Fdef&sp=r Bearer xyz.abc"); strings.Contains(got, "abc") || strings.Contains(got, "xyz") {
		t.Fatalf("Redact left a secret: %s", got)
	}
}

func TestPathsAreEscaped(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.EscapedPath()
		json.NewEncoder(w).Encode(remote.UploadFileResponse{FileID: "f", VersionID: "1"})
	}))
	defer srv.Close()
	if _, err := newClient(t, srv.URL, nil, nil).UpsertFileByPath(context.Background(), "a/new file#1?.txt", ""); err != nil {
		t.Fatal(err)
	}
	if want := "/file/v2/orgs/o/workspaces/w/files/path/a/new%20file%231%3F.txt"; got != want {
		t.Fatalf("path %s, want %s", got, want)
	}
}

func TestListAllPagesConcurrentlyAndDedupes(t *testing.T) {
	const total = 12001
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var limit, offset int
		fmt.Sscan(r.URL.Query().Get("limit"), &limit)
		fmt.Sscan(r.URL.Query().Get("offset"), &offset)
		resp := remote.ListFilesResponse{Total: total, Limit: limit, Offset: offset}
		for i := offset; i < min(offset+limit, total); i++ {
			resp.Files = append(resp.Files, remote.ListFile{FileID: fmt.Sprintf("id-%d", i), Name: fmt.Sprint(i), Path: "/"})
		}
		if offset > 0 { // a shifted page repeats the previous page's last file
			resp.Files = append([]remote.ListFile{{FileID: fmt.Sprintf("id-%d", offset-1)}}, resp.Files...)
		}
		resp.Count = len(resp.Files)
		json.NewEncoder(w).Encode(resp)
	}))
	defer srv.Close()
	files, err := newClient(t, srv.URL, nil, nil).ListAll(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != total || calls.Load() != 3 {
		t.Fatalf("%d files in %d calls, want %d in 3", len(files), calls.Load(), total)
	}
	for i, f := range files {
		if f.FileID != fmt.Sprintf("id-%d", i) {
			t.Fatalf("file %d is %s", i, f.FileID)
		}
	}
}
