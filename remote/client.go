package remote

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Config says which workspace a Client speaks to and how.
type Config struct {
	HubURL      string // e.g. https://350mt.api.seequent.com
	OrgID       string
	WorkspaceID string
	Tokens      oauth2.TokenSource // required; see StaticToken, ClientCredentials, RefreshToken
	HTTPClient  *http.Client       // nil: a default with sensible timeouts
	Retry       RetryPolicy
	// ListConcurrency bounds the pages ListAll fetches at once after the
	// first; default 4.
	ListConcurrency int
	Logger          *slog.Logger // nil: discard
	Observer        Observer     // nil: none
	// AttemptTimeout bounds one exchange (an attempt, retried after it
	// within Retry like a dropped connection); default 30 s.
	AttemptTimeout time.Duration
	// Health, if not nil, is told of every exchange (share it with the
	// Blobs of the same service).
	Health *Health
}

// DefaultAttemptTimeout is Config.AttemptTimeout's default.
const DefaultAttemptTimeout = 30 * time.Second

// Client calls the File API v2 of one workspace. It is safe for concurrent
// use. Every call retries transient failures (429, 500, 502, 503, 504,
// connection errors) within its RetryPolicy and, after a 401, fetches a new
// token and retries once.
type Client struct {
	base   string // .../file/v2/orgs/{org}/workspaces/{ws}
	http   *http.Client
	tokens *tokenCache
	retry  RetryPolicy
	listN  int
	log    *slog.Logger
	obs    Observer
	health *Health
	tryFor time.Duration // one exchange's bound
}

// New checks cfg and returns a Client. It makes no call.
func New(cfg Config) (*Client, error) {
	if cfg.HubURL == "" || cfg.OrgID == "" || cfg.WorkspaceID == "" {
		return nil, errors.New("new file API client: hub URL, organisation and workspace are required")
	}
	if cfg.Tokens == nil {
		return nil, errors.New("new file API client: a token source is required")
	}
	hub, err := url.Parse(strings.TrimRight(cfg.HubURL, "/"))
	if err != nil || hub.Scheme == "" || hub.Host == "" {
		return nil, fmt.Errorf("new file API client: hub URL %q is not an absolute URL", cfg.HubURL)
	}
	hc := &http.Client{Timeout: 2 * time.Minute}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		hc = &c
	}
	// A 303 from restore carries the answer: never follow redirects.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	listN := cfg.ListConcurrency
	if listN <= 0 {
		listN = 4
	}
	return &Client{
		base: fmt.Sprintf("%s/file/v2/orgs/%s/workspaces/%s", hub.String(),
			url.PathEscape(cfg.OrgID), url.PathEscape(cfg.WorkspaceID)),
		http:   hc,
		tokens: newTokenCache(cfg.Tokens),
		retry:  cfg.Retry.withDefaults(),
		listN:  listN,
		log:    log,
		obs:    observerOrNop(cfg.Observer),
		health: cfg.Health,
		tryFor: cmp.Or(cfg.AttemptTimeout, DefaultAttemptTimeout),
	}, nil
}

// Health is the Health the client reports to (nil if none).
func (c *Client) Health() *Health { return c.health }

// GetOptions are the query parameters of the get calls.
type GetOptions struct {
	VersionID       string // a specific version; "" for the latest
	IncludeVersions bool   // fill Versions
	Deleted         bool   // by id only: allow a deleted file
}

func (o GetOptions) query() url.Values {
	q := url.Values{}
	if o.VersionID != "" {
		q.Set("version_id", o.VersionID)
	}
	if o.IncludeVersions {
		q.Set("include_versions", "true")
	}
	if o.Deleted {
		q.Set("deleted", "true")
	}
	return q
}

// GetFile gets a file's metadata and a download link by id.
func (c *Client) GetFile(ctx context.Context, fileID string, o GetOptions) (*DownloadFileResponse, error) {
	var out DownloadFileResponse
	_, err := c.call(ctx, request{name: "get_file", op: "get file " + fileID, method: http.MethodGet,
		path: "/files/" + url.PathEscape(fileID), query: o.query(), ok: []int{200}, out: &out})
	return &out, err
}

// GetFileByPath gets a file's metadata and a download link by path
// ("A/B/name"). o.Deleted does not apply.
func (c *Client) GetFileByPath(ctx context.Context, path string, o GetOptions) (*DownloadFileResponse, error) {
	o.Deleted = false
	var out DownloadFileResponse
	_, err := c.call(ctx, request{name: "get_file_by_path", op: "get file " + path, method: http.MethodGet,
		path: "/files/path/" + EscapePath(path), query: o.query(), ok: []int{200}, out: &out})
	return &out, err
}

func versionQuery(versionID string) url.Values {
	q := url.Values{}
	if versionID != "" {
		q.Set("version_id", versionID)
	}
	return q
}

// UpsertFileByPath asks for an upload link for a new version of the file at
// path, creating the file (and its folders) if need be. With a versionID it
// re-issues the link of that unfinished upload instead.
func (c *Client) UpsertFileByPath(ctx context.Context, path, versionID string) (*UploadFileResponse, error) {
	var out UploadFileResponse
	_, err := c.call(ctx, request{name: "upsert_file_by_path", op: "upload file " + path, method: http.MethodPut,
		path: "/files/path/" + EscapePath(path), query: versionQuery(versionID), ok: []int{200}, out: &out})
	return &out, err
}

// UpdateFile asks for an upload link for a new version of an existing file.
// With a versionID it re-issues the link of that unfinished upload instead.
func (c *Client) UpdateFile(ctx context.Context, fileID, versionID string) (*UploadFileResponse, error) {
	var out UploadFileResponse
	_, err := c.call(ctx, request{name: "update_file", op: "update file " + fileID, method: http.MethodPut,
		path: "/files/" + url.PathEscape(fileID), query: versionQuery(versionID), ok: []int{200}, out: &out})
	return &out, err
}

// Restored says where a restored file is: at its old path (Moved false, File
// nil) or, because that path was taken meanwhile, at a new one (Moved true,
// File its metadata there).
type Restored struct {
	Moved bool
	File  *DownloadFileResponse
}

// RestoreFile restores a deleted file.
func (c *Client) RestoreFile(ctx context.Context, fileID string) (*Restored, error) {
	var out DownloadFileResponse
	status, err := c.call(ctx, request{name: "restore_file", op: "restore file " + fileID, method: http.MethodPut,
		path: "/files/" + url.PathEscape(fileID), query: url.Values{"deleted": {"false"}},
		ok: []int{http.StatusNoContent, http.StatusSeeOther}, out: &out})
	if err != nil {
		return nil, err
	}
	if status == http.StatusSeeOther {
		return &Restored{Moved: true, File: &out}, nil
	}
	return &Restored{}, nil
}

// DeleteFile deletes a file and all its versions by id. A retry that finds
// the file already gone (the first try went through but its answer was
// lost) counts as success.
func (c *Client) DeleteFile(ctx context.Context, fileID string) error {
	return c.delete(ctx, "delete_file", "delete file "+fileID, "/files/"+url.PathEscape(fileID))
}

// DeleteFileByPath deletes the file at path and all its versions.
func (c *Client) DeleteFileByPath(ctx context.Context, path string) error {
	return c.delete(ctx, "delete_file_by_path", "delete file "+path, "/files/path/"+EscapePath(path))
}

func (c *Client) delete(ctx context.Context, name, op, path string) error {
	r := request{name: name, op: op, method: http.MethodDelete, path: path, ok: []int{http.StatusNoContent}, tries: new(int)}
	_, err := c.call(ctx, r)
	if err != nil && *r.tries > 1 && (errors.Is(err, ErrNotFound) || errors.Is(err, ErrGone)) {
		return nil
	}
	return err
}

// request is one logical call; call() may send it several times.
type request struct {
	name   string // for metrics: the call, "get_file"
	op     string // for errors and logs: "get file A/b.tif"
	method string
	path   string // below the workspace base, escaped
	url    string // instead of base + path: an absolute URL (platform calls)
	query  url.Values
	ok     []int // statuses that mean success
	out    any   // decoded from a successful body, if non-nil
	tries  *int  // if non-nil, call counts the times it was sent here
}

// maxBody bounds a response body: a page of 5000 files is a few MB.
const maxBody = 64 << 20

// call sends r until it succeeds, fails for good or its retry budget is
// spent, and returns the final status.
func (c *Client) call(ctx context.Context, r request) (int, error) {
	if r.tries == nil {
		r.tries = new(int)
	}
	u := c.base + r.path
	if r.url != "" {
		u = r.url
	}
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	start := time.Now()
	refreshed := false
	for {
		*r.tries++
		status, resp, err := c.send(ctx, r, u)
		if err == nil {
			return status, nil
		}
		var apiErr *Error
		isAPI := errors.As(err, &apiErr)
		var refused *oauth2.RetrieveError
		switch {
		case errors.As(err, &refused):
			// The token endpoint answered no (a spent or revoked refresh
			// token, a wrong secret): trying again will not change that.
			return status, err
		case isAPI && apiErr.Status == http.StatusUnauthorized && !refreshed:
			// One new token, one more try.
			refreshed = true
			c.log.Debug("file API refused the token; getting a new one", "op", r.op, "code", apiErr.Code)
			continue
		case isAPI && !apiErr.Temporary():
			return status, err
		case !isAPI && !retryableTransportErr(ctx, err):
			return status, err
		}
		if *r.tries >= c.retry.MaxAttempts || time.Since(start) > c.retry.MaxElapsed {
			return status, fmt.Errorf("%w (gave up after %d tries in %s)", err, *r.tries, time.Since(start).Round(time.Millisecond))
		}
		wait := c.retry.backoff(*r.tries, resp)
		c.log.Debug("file API call failed; retrying", "op", r.op, "status", status,
			"code", ErrorCode(err), "try", *r.tries, "wait", wait, "err", err)
		if err := sleepCtx(ctx, wait); err != nil {
			return status, fmt.Errorf("%s: %w", r.op, err)
		}
		c.obs.Retry(r.name)
	}
}

// send makes one HTTP exchange. The returned response is only for its
// headers (Retry-After); its body is consumed and closed.
func (c *Client) send(ctx context.Context, r request, u string) (int, *http.Response, error) {
	tok, err := c.tokens.token()
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", r.op, err)
	}
	tctx, cancel := context.WithTimeout(ctx, c.tryFor)
	defer cancel()
	req, err := http.NewRequestWithContext(tctx, r.method, u, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: build request: %w", r.op, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	hid := c.health.begin()
	resp, err := c.http.Do(req)
	if err != nil {
		c.obs.APICall(r.name, 0, time.Since(start))
		if ctx.Err() != nil {
			c.health.end(hid, false, "") // the caller gave up, not the service
			return 0, nil, fmt.Errorf("%s: %w", r.op, redactErr(err))
		}
		if tctx.Err() != nil {
			// Not context.DeadlineExceeded: the caller still waits, and
			// another try may be answered.
			err = fmt.Errorf("no answer within %s", c.tryFor)
		}
		err = redactErr(err)
		c.health.end(hid, false, err.Error())
		return 0, nil, fmt.Errorf("%s: %w", r.op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	c.obs.APICall(r.name, resp.StatusCode, time.Since(start))
	switch {
	case err != nil && ctx.Err() != nil:
		c.health.end(hid, false, "")
	case err != nil:
		c.health.end(hid, false, "response broke off: "+redactErr(err).Error())
	case resp.StatusCode >= 500:
		c.health.end(hid, false, "HTTP "+strconv.Itoa(resp.StatusCode))
	default:
		c.health.end(hid, true, "")
	}
	if err != nil {
		return resp.StatusCode, resp, fmt.Errorf("%s: read response: %w", r.op, redactErr(err))
	}
	for _, s := range r.ok {
		if resp.StatusCode != s {
			continue
		}
		if r.out != nil && len(bytes.TrimSpace(body)) > 0 {
			if err := json.Unmarshal(body, r.out); err != nil {
				// A truncated or garbled answer: worth another try.
				return resp.StatusCode, resp, fmt.Errorf("%s: decode response: %w", r.op, err)
			}
		}
		return resp.StatusCode, resp, nil
	}
	apiErr := decodeProblem(r.op, resp.StatusCode, body)
	if apiErr.Status == http.StatusUnauthorized {
		c.tokens.invalidate(tok)
	}
	return resp.StatusCode, resp, apiErr
}

// decodeProblem turns an error answer into an *Error, whether or not its
// body is a problem document.
func decodeProblem(op string, status int, body []byte) *Error {
	e := &Error{Op: op, Status: status}
	var p Problem
	if json.Unmarshal(body, &p) == nil && p.Type != "" {
		e.Code = ProblemCode(p.Type)
		e.Title = p.Title
		e.Detail = p.Detail
		e.PermittedRoles = p.PermittedRoles
		e.YourRole = p.YourRole
	}
	return e
}

// ListOptions are the query parameters of the list call. Time filters take
// the service's operator prefixes: "gte:2024-01-01T00:00:00Z".
type ListOptions struct {
	Limit      int // 1..5000; 0 means the service's default (ListAll: 5000)
	Offset     int
	Deleted    bool // only deleted files
	FileName   string
	Author     string
	CreatedAt  []string
	ModifiedAt []string
	DeletedAt  []string
	ModifiedBy string
	DeletedBy  string
	OrderBy    string // e.g. "asc:created_at,desc:modified_at"
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	setIf := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Offset > 0 {
		q.Set("offset", strconv.Itoa(o.Offset))
	}
	if o.Deleted {
		q.Set("deleted", "true")
	}
	setIf("file_name", o.FileName)
	setIf("author", o.Author)
	setIf("modified_by", o.ModifiedBy)
	setIf("deleted_by", o.DeletedBy)
	setIf("order_by", o.OrderBy)
	for _, v := range o.CreatedAt {
		q.Add("created_at", v)
	}
	for _, v := range o.ModifiedAt {
		q.Add("modified_at", v)
	}
	for _, v := range o.DeletedAt {
		q.Add("deleted_at", v)
	}
	return q
}

// ListFiles gets one page of the listing.
func (c *Client) ListFiles(ctx context.Context, o ListOptions) (*ListFilesResponse, error) {
	var out ListFilesResponse
	_, err := c.call(ctx, request{name: "list_files", op: "list files", method: http.MethodGet, path: "/files",
		query: o.query(), ok: []int{200}, out: &out})
	return &out, err
}
