package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/oauth2"
	"golang.org/x/sys/unix"

	"github.com/evofs/evofs/remote"
)

// The real service's identity endpoints (Bentley IMS) and scopes.
const (
	defaultAuthURL  = "https://ims.bentley.com/connect/authorize"
	defaultTokenURL = "https://ims.bentley.com/connect/token"
	defaultClientID = "evofs-desktop"
	defaultScopes   = "evo.file evo.workspace evo.discovery offline_access"
)

// authFlags say where tokens come from: a token file (scripts), client
// credentials (services), or the login stored by `evofs login` (people).
type authFlags struct {
	tokenFile    string
	clientID     string
	clientSecret string
	authURL      string
	tokenURL     string
	discoveryURL string
	scopes       string
}

func (a *authFlags) register(fl *pflag.FlagSet, withTokenFile bool) {
	if withTokenFile {
		fl.StringVar(&a.tokenFile, "token-file", "", "file holding an access token, re-read whenever the service refuses the token (scripts; default: the stored login)")
	}
	fl.StringVar(&a.clientID, "client-id", defaultClientID, "OAuth client id (with --client-secret: a service's confidential client)")
	fl.StringVar(&a.clientSecret, "client-secret", "", "OAuth client secret: use the client credentials grant instead of the stored login (prefer EVOFS_CLIENT_SECRET or the config file to the command line)")
	fl.StringVar(&a.authURL, "auth-url", defaultAuthURL, "OAuth authorization endpoint")
	fl.StringVar(&a.tokenURL, "token-url", defaultTokenURL, "OAuth token endpoint")
	fl.StringVar(&a.discoveryURL, "discovery-url", remote.DefaultDiscoveryURL, "Evo discovery endpoint (organisations and their hubs)")
	fl.StringVar(&a.scopes, "scopes", defaultScopes, "OAuth scopes, space-separated")
}

// storedLogin is what `evofs login` keeps: the token with its refresh
// token and the endpoint and client that can refresh it.
type storedLogin struct {
	TokenURL string        `json:"token_url"`
	ClientID string        `json:"client_id"`
	Scopes   string        `json:"scopes"`
	Token    *oauth2.Token `json:"token"`
}

// loginPath is $XDG_CONFIG_HOME/evofs/login.json.
func loginPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the config folder for the login: %w", err)
	}
	return filepath.Join(dir, "evofs", "login.json"), nil
}

// saveLogin writes the login atomically, readable by the owner only, in a
// folder only the owner can enter.
func saveLogin(path string, l storedLogin) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".login-*") // mode 0600
	if err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save login: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	return nil
}

func loadLogin(path string) (*storedLogin, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errors.New("not signed in: run `evofs login` (or give --token-file, or --client-id and --client-secret)")
	}
	if err != nil {
		return nil, fmt.Errorf("read login: %w", err)
	}
	var l storedLogin
	if err := json.Unmarshal(b, &l); err != nil || l.Token == nil || l.TokenURL == "" {
		return nil, fmt.Errorf("login %s is damaged: run `evofs login` again", path)
	}
	return &l, nil
}

// lockLogin takes the lock every evofs process of the user holds while it
// changes the stored login (a refresh, a login, a logout): an flock on
// login.json.lock beside it. The login file itself cannot carry the lock,
// as each save replaces it. The lock goes with the process if it dies.
func lockLogin(ctx context.Context, path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock login: %w", err)
	}
	lockPath := path + ".lock"
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock login: %w", err)
	}
	// Poll rather than block, so that ctx bounds the wait.
	wait := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock login %s: %w", lockPath, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock login %s: another evofs holds it: %w", lockPath, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// loginStore is the stored login as a remote.TokenStore: every evofs
// process of the user (mounts, `evofs workspaces`) shares it, renews only
// under lockLogin, and saves each rotated refresh token before unlocking,
// so none spends a refresh token another has spent. A new `evofs login`
// reaches running mounts through it too.
type loginStore struct {
	path string
	// The login this process started with: a login for another token
	// endpoint or client is not one its refreshes can use.
	tokenURL, clientID, scopes string
	log                        *slog.Logger
}

var _ remote.TokenStore = (*loginStore)(nil)

func (s *loginStore) Lock(ctx context.Context) (func(), error) { return lockLogin(ctx, s.path) }

func (s *loginStore) Load() (*oauth2.Token, error) {
	l, err := loadLogin(s.path)
	if err != nil {
		return nil, err
	}
	if l.TokenURL != s.tokenURL || l.ClientID != s.clientID {
		return nil, fmt.Errorf("the login in %s is now for %s (client %s): restart evofs to use it",
			s.path, remote.Redact(l.TokenURL), l.ClientID)
	}
	return l.Token, nil
}

func (s *loginStore) Save(tok *oauth2.Token) {
	l := storedLogin{TokenURL: s.tokenURL, ClientID: s.clientID, Scopes: s.scopes, Token: tok}
	if err := saveLogin(s.path, l); err != nil {
		s.log.Error("cannot store the renewed refresh token; other evofs commands and the next start will need `evofs login`", "err", err)
	}
}

// tokenSource picks where a command's tokens come from and describes it
// for messages: --token-file, else client credentials, else the stored
// login (shared with the user's other evofs processes: see loginStore).
func (a *authFlags) tokenSource(ctx context.Context, log *slog.Logger) (oauth2.TokenSource, string, error) {
	switch {
	case a.tokenFile != "":
		if _, err := tokenFile(a.tokenFile).Token(); err != nil {
			return nil, "", err
		}
		return tokenFile(a.tokenFile), "the token in " + a.tokenFile, nil
	case a.clientSecret != "":
		scopes := strings.Fields(strings.ReplaceAll(a.scopes, "offline_access", ""))
		src := remote.ClientCredentials(ctx, a.tokenURL, a.clientID, a.clientSecret, scopes...)
		return watchRenewals(src, log), "client " + a.clientID, nil
	}
	path, err := loginPath()
	if err != nil {
		return nil, "", err
	}
	l, err := loadLogin(path)
	if err != nil {
		return nil, "", err
	}
	cfg := &oauth2.Config{ClientID: l.ClientID, Scopes: strings.Fields(l.Scopes),
		Endpoint: oauth2.Endpoint{TokenURL: l.TokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	store := &loginStore{path: path, tokenURL: l.TokenURL, clientID: l.ClientID, scopes: l.Scopes, log: log}
	return watchRenewals(remote.RefreshToken(ctx, cfg, l.Token, store), log), "the login in " + path, nil
}

// watchRenewals logs the first failure to get a new access token, once
// and clearly, and the recovery; the mount itself goes on serving what it
// has cached.
func watchRenewals(src oauth2.TokenSource, log *slog.Logger) oauth2.TokenSource {
	return &renewalWatch{src: src, log: log}
}

type renewalWatch struct {
	src    oauth2.TokenSource
	log    *slog.Logger
	mu     sync.Mutex
	failed bool // GUARDED_BY(mu)
}

func (w *renewalWatch) Token() (*oauth2.Token, error) {
	t, err := w.src.Token()
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err != nil && !w.failed:
		w.failed = true
		renewFailures.Add(1)
		w.log.Error("cannot renew the access token: cached files stay readable, everything else fails until renewal works (run `evofs login` if this persists)",
			"err", err)
	case err != nil:
		renewFailures.Add(1)
	case w.failed:
		w.failed = false
		w.log.Info("access token renewed again")
	}
	return t, err
}

// Recovered passes the question on to the source (remote.Recoverable).
func (w *renewalWatch) Recovered() bool {
	r, ok := w.src.(remote.Recoverable)
	return ok && r.Recovered()
}

func loginCommand(g *globalFlags) *cobra.Command {
	var (
		a         authFlags
		noBrowser bool
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in with your browser and store the token for later mounts",
		Long: `Sign in to Evo with the OAuth 2.0 authorization code flow (PKCE, loopback redirect): evofs
prints a URL, opens it with xdg-open when there is one, and waits for the browser to come back
to 127.0.0.1. The token and its refresh token are stored, readable only by you, in
$XDG_CONFIG_HOME/evofs/login.json; mounts refresh and re-store them as they go.`,
		Example: `  evofs login
  evofs login --no-browser          # on a machine without a browser: open the URL elsewhere`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLogin(cmd.Context(), cmd.ErrOrStderr(), a, noBrowser, timeout)
		},
	}
	a.register(cmd.Flags(), false)
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "print the URL only, do not run xdg-open")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the browser")
	return cmd
}

func randomState() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func runLogin(ctx context.Context, out io.Writer, a authFlags, noBrowser bool, timeout time.Duration) error {
	path, err := loginPath()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the browser: %w", err)
	}
	defer ln.Close()
	cfg := &oauth2.Config{
		ClientID:    a.clientID,
		Endpoint:    oauth2.Endpoint{AuthURL: a.authURL, TokenURL: a.tokenURL, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: "http://" + ln.Addr().String() + "/callback",
		Scopes:      strings.Fields(a.scopes),
	}
	verifier, state := oauth2.GenerateVerifier(), randomState()
	type result struct {
		code string
		err  error
	}
	got := make(chan result, 1)
	var once sync.Once
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		res := result{code: q.Get("code")}
		switch {
		case q.Get("state") != state:
			res = result{err: errors.New("the browser came back with the wrong state: try again")}
		case q.Get("error") != "":
			res = result{err: fmt.Errorf("sign-in refused: %s: %s", q.Get("error"), q.Get("error_description"))}
		case res.code == "":
			res = result{err: errors.New("the browser came back without a code")}
		}
		msg := "Signed in to Evo. You can close this tab."
		if res.err != nil {
			msg = "Sign-in failed: " + res.err.Error()
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>evofs</title><p>%s</p>\n", html.EscapeString(msg))
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		once.Do(func() { got <- res })
	})}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		// Let the browser have its page before the listener goes.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	u := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
	fmt.Fprintf(out, "Sign in to Evo in your browser:\n\n  %s\n\n", u)
	if !noBrowser {
		if xdg, err := exec.LookPath("xdg-open"); err == nil {
			c := exec.Command(xdg, u)
			if err := c.Start(); err == nil {
				go func() { _ = c.Wait() }()
			}
		}
	}
	fmt.Fprintln(out, "Waiting for the browser...")
	var res result
	select {
	case res = <-got:
	case <-time.After(timeout):
		return fmt.Errorf("no answer from the browser in %s", timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	if res.err != nil {
		return res.err
	}
	xctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tok, err := cfg.Exchange(xctx, res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return fmt.Errorf("redeem the sign-in code at %s: %s", remote.Redact(a.tokenURL), remote.Redact(err.Error()))
	}
	if tok.RefreshToken == "" {
		fmt.Fprintln(out, "warning: no refresh token came back (is offline_access in --scopes?): mounts will stop working when the token expires")
	}
	unlock, err := lockLogin(xctx, path)
	if err != nil {
		return err
	}
	defer unlock()
	if err := saveLogin(path, storedLogin{TokenURL: a.tokenURL, ClientID: a.clientID, Scopes: a.scopes, Token: tok}); err != nil {
		return err
	}
	fmt.Fprintf(out, "Signed in. The token is stored in %s\n", path)
	return nil
}

func logoutCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "logout",
		Short:   "Remove the stored login",
		Example: "  evofs logout",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := loginPath()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			unlock, err := lockLogin(ctx, path)
			if err != nil {
				return err
			}
			defer unlock()
			err = os.Remove(path)
			switch {
			case errors.Is(err, os.ErrNotExist):
				fmt.Fprintln(cmd.ErrOrStderr(), "Not signed in.")
				return nil
			case err != nil:
				return fmt.Errorf("remove login: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Signed out: removed %s\n", path)
			return nil
		},
	}
}
