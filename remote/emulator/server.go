package emulator

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/time/rate"
)

// Server is a running emulator. Its methods are safe for concurrent use.
//
// Locks (never held across network I/O, never nested except as noted):
//   - mu guards idx. Writers persist a cloned record to the store while
//     holding mu, then swap it into idx, so store and index change together.
//   - knobMu guards knob.
//   - codesMu guards codes.
//   - stagedMu guards staged.
//   - the stats collector has its own lock (taken briefly, may be taken
//     while holding mu).
type Server struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	srv    *http.Server
	hub    string // http://host:port
	base   string // hub + /file/v2/orgs/{org}/workspaces/{ws}
	apiPfx string // /file/v2/orgs/{org}/workspaces/{ws}
	org    string
	ws     string
	key    []byte // token signing key; immutable after Start
	info   Info   // immutable after Start
	store  *store
	blobs  *blobStore
	proxy  *httputil.ReverseProxy
	stats  *statsCollector
	shaper *rate.Limiter // the blob proxy's bandwidth (knob.blobBandwidth); safe for concurrent use

	mu  sync.RWMutex
	idx *index // GUARDED_BY(mu)

	knobMu sync.Mutex
	knob   knobSet // GUARDED_BY(knobMu)

	codesMu sync.Mutex
	codes   map[string]authCode // GUARDED_BY(codesMu)

	stagedMu sync.Mutex
	staged   map[string]map[string]struct{} // GUARDED_BY(stagedMu): blob -> block ids staged

	closeOnce sync.Once
	closeErr  error
	served    chan struct{}
}

// Start opens the store, ensures the container, seeds an empty workspace if
// asked to, and serves on cfg.Listen until Close. ctx bounds the start-up
// only.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.BlobEndpoint == "" {
		return nil, errors.New("start emulator: a blob endpoint (Azurite account URL) is required")
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		stats:  newStatsCollector(),
		idx:    newIndex(),
		codes:  map[string]authCode{},
		staged: map[string]map[string]struct{}{},
		served: make(chan struct{}),
		shaper: newShaper(cfg.BlobBandwidth),
		knob: knobSet{
			apiFault: clamp01(cfg.APIFaultRate), blobFault: clamp01(cfg.BlobFaultRate),
			apiLatency: cfg.APILatency, blobLatency: cfg.BlobLatency,
			blobBandwidth: max(cfg.BlobBandwidth, 0),
			linkTTL:       cfg.LinkTTL, tokenTTL: cfg.TokenTTL,
		},
	}
	if s.knob.tokenTTL <= 0 {
		s.knob.tokenTTL = DefaultTokenTTL
	}
	var err error
	if s.blobs, err = newBlobStore(cfg.BlobEndpoint, cfg.AccountName, cfg.AccountKey, cfg.Container); err != nil {
		return nil, fmt.Errorf("start emulator: %w", err)
	}
	if s.store, err = openStore(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("start emulator: %w", err)
	}
	fail := func(err error) (*Server, error) {
		_ = s.store.close()
		return nil, fmt.Errorf("start emulator: %w", err)
	}
	if err := s.loadMeta(); err != nil {
		return fail(err)
	}
	if err := s.loadIndex(); err != nil {
		return fail(err)
	}
	if err := s.blobs.ensureContainer(ctx); err != nil {
		return fail(err)
	}
	if err := s.seed(ctx); err != nil {
		return fail(err)
	}
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return fail(fmt.Errorf("listen on %s: %w", cfg.Listen, err))
	}
	s.hub = "http://" + s.ln.Addr().String()
	s.apiPfx = "/file/v2/orgs/" + s.org + "/workspaces/" + s.ws
	s.base = s.hub + s.apiPfx
	s.proxy = newBlobProxy(s)
	s.info = s.makeInfo()
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	s.log.Info("emulator ready", "hub", s.hub, "org", s.org, "workspace", s.ws, "container", cfg.Container)
	return s, nil
}

func (s *Server) loadMeta() error {
	newUUID := func() string { return uuid.NewString() }
	var err error
	if s.org, err = s.store.metaOrInit(keyOrgID, s.cfg.OrgID, newUUID); err != nil {
		return err
	}
	if s.ws, err = s.store.metaOrInit(keyWorkspaceID, s.cfg.WorkspaceID, newUUID); err != nil {
		return err
	}
	key, ok, err := s.store.meta(keySigningKey)
	if err != nil {
		return err
	}
	if !ok {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
		if err := s.store.setMeta(keySigningKey, key); err != nil {
			return err
		}
	}
	s.key = key
	return nil
}

func (s *Server) loadIndex() error {
	files, err := s.store.loadFiles()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range files {
		s.idx.put(f)
	}
	return nil
}

func (s *Server) makeInfo() Info {
	ttl := infoTokenTTL
	if s.cfg.TokenTTL > 0 {
		ttl = s.cfg.TokenTTL
	}
	return Info{
		HubURL:              s.hub,
		OrgID:               s.org,
		WorkspaceID:         s.ws,
		WorkspaceName:       s.cfg.WorkspaceName,
		DiscoveryURL:        s.hub + DiscoveryPath + "?service=evo",
		Token:               s.issueAccess(RoleEditor, "", defaultScopes, ttl),
		ViewerToken:         s.issueAccess(RoleViewer, "", defaultScopes, ttl),
		StatsURL:            s.hub + "/_emulator/stats",
		TokenURL:            s.hub + "/connect/token",
		AuthorizeURL:        s.hub + "/connect/authorize",
		ClientID:            publicClientID,
		ServiceClientID:     serviceClientID,
		ServiceClientSecret: s.clientSecret(serviceClientID),
		ViewerClientID:      viewerClientID,
		ViewerClientSecret:  s.clientSecret(viewerClientID),
	}
}

// URL is the hub URL, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.hub }

// Info tells a client how to reach and authenticate to the emulator.
func (s *Server) Info() Info { return s.info }

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// ResetStats zeroes the counters.
func (s *Server) ResetStats() { s.stats.reset() }

// Close stops serving (in-flight requests get a few seconds to finish) and
// closes the store.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
		<-s.served
		s.blobs.transport.CloseIdleConnections()
		// Shutdown does not wait for hijacked connections or handlers
		// still running after the timeout; take the index lock so no
		// writer is mid-way while the store closes.
		s.mu.Lock()
		s.closeErr = s.store.close()
		s.mu.Unlock()
	})
	return s.closeErr
}

// routes: one mux for the API, OAuth, control endpoints and the blob proxy.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	const api = "/file/v2/orgs/{org}/workspaces/{ws}"
	mux.Handle("GET "+api+"/files", s.api(OpListFiles, s.listFiles))
	mux.Handle("GET "+api+"/files/{file_id}", s.api(OpGetFile, s.getFile))
	mux.Handle("PUT "+api+"/files/{file_id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("deleted") {
			s.api(OpRestoreFile, s.restoreFile).ServeHTTP(w, r)
			return
		}
		s.api(OpUpdateFile, s.updateFile).ServeHTTP(w, r)
	}))
	mux.Handle("DELETE "+api+"/files/{file_id}", s.api(OpDeleteFile, s.deleteFile))
	mux.Handle("GET "+api+"/files/path/{file_path...}", s.api(OpGetFileByPath, s.getFileByPath))
	mux.Handle("PUT "+api+"/files/path/{file_path...}", s.api(OpUpsertFileByPath, s.upsertFileByPath))
	mux.Handle("DELETE "+api+"/files/path/{file_path...}", s.api(OpDeleteFileByPath, s.deleteFileByPath))
	mux.Handle("/file/", s.api(OpOther, func(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
		return errNotFound("no such resource: %s %s", r.Method, r.URL.Path)
	}))
	mux.Handle("GET "+DiscoveryPath, s.platform(OpDiscovery, s.discovery))
	mux.Handle("GET /workspace/orgs/{org}/workspaces", s.platform(OpListWorkspaces, s.listWorkspaces))
	mux.HandleFunc("POST /connect/token", s.handleToken)
	mux.HandleFunc("GET /connect/authorize", s.handleAuthorize)
	mux.HandleFunc("GET /_emulator/stats", s.handleStats)
	mux.HandleFunc("POST /_emulator/reset", s.handleReset)
	mux.HandleFunc("POST /_emulator/config", s.handleConfig)
	mux.HandleFunc(s.blobs.endpoint.Path+"/", s.handleBlob)
	return s.guardPaths(mux)
}

// guardPaths answers by-path calls whose path ServeMux would "clean" with a
// redirect ("a//b", "a/../b", "a/./b"): the service refuses such a path
// (400 files/invalid-path), it does not move it.
func (s *Server) guardPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, "/file/") && strings.Contains(p, "/files/path/") && cleanPath(p) != p {
			op := map[string]string{http.MethodGet: OpGetFileByPath, http.MethodPut: OpUpsertFileByPath,
				http.MethodDelete: OpDeleteFileByPath}[r.Method]
			if op == "" {
				op = OpOther
			}
			s.api(op, func(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
				return errInvalidPath("path has empty, '.' or '..' segments")
			}).ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func cleanPath(p string) string {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// apiHandler handles one authenticated API call; an error is answered as a
// problem document.
type apiHandler func(w http.ResponseWriter, r *http.Request, c *caller) *apiError

// api wraps an API call: stats, latency, faults, authentication, and the
// organisation and workspace check (a wrong one is 404 files/not-found).
func (s *Server) api(op string, h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		counted := false
		defer func() {
			if !counted {
				s.stats.api(op, sw.code())
			}
		}()
		k := s.knobs()
		if !waitStall(r, k) {
			s.stats.api(op, StatusDroppedByFault)
			counted = true
			return
		}
		sleepCtx(r.Context(), k.apiLatency)
		if e := s.scriptedFault(op); e != nil {
			s.stats.update(func(st *Stats) { st.Faults.API++ })
			writeProblem(sw, e)
			return
		}
		if roll(k.apiFault) {
			s.stats.update(func(st *Stats) { st.Faults.API++ })
			apiFault(sw, func() { s.stats.api(op, StatusDroppedByFault); counted = true })
			return
		}
		s.log.Debug("api", "op", op, "method", r.Method, "path", r.URL.Path)
		c, e := s.authenticate(r)
		if e == nil && r.Pattern != "" && op != OpOther && (r.PathValue("org") != s.org || r.PathValue("ws") != s.ws) {
			e = errNotFound("no workspace %s in organisation %s", r.PathValue("ws"), r.PathValue("org"))
		}
		if e == nil {
			e = h(sw, r, c)
		}
		if e != nil {
			if e.status >= 500 {
				s.log.Warn("api call failed", "op", op, "path", r.URL.Path, "status", e.status, "code", e.code, "detail", e.detail)
			}
			writeProblem(sw, e)
		}
	})
}
