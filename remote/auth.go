package remote

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Access tokens come from an oauth2.TokenSource. The client keeps the
// current token until shortly before it expires; when the service answers
// 401 anyway it drops the token, asks the source for a new one once and
// retries once. For that to fetch a genuinely new token the source must not
// cache on its own: the constructors below return such sources.

// StaticToken is a source that always gives the same access token (a token
// file, a test). After a 401 the retry uses the same token and fails again.
func StaticToken(accessToken string) oauth2.TokenSource {
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: accessToken, TokenType: "Bearer"})
}

// ClientCredentials fetches a new token from tokenURL with the client
// credentials grant on every call: services and tests use it.
func ClientCredentials(ctx context.Context, tokenURL, clientID, clientSecret string, scopes ...string) oauth2.TokenSource {
	cfg := &clientcredentials.Config{ClientID: clientID, ClientSecret: clientSecret, TokenURL: tokenURL, Scopes: scopes}
	return sourceFunc(func() (*oauth2.Token, error) { return cfg.Token(ctx) })
}

// A TokenStore keeps a login that several processes share (a mount, a
// second mount, `evofs workspaces`). Refresh tokens rotate: redeeming one
// spends it, so a process must never redeem a refresh token another has
// already redeemed. RefreshToken therefore refreshes only with the store
// locked, after loading what another process may have stored meanwhile,
// and saves what it gets before unlocking.
type TokenStore interface {
	// Lock waits, until ctx ends, for the store to be free of other
	// users, across processes; unlock frees it.
	Lock(ctx context.Context) (unlock func(), err error)
	// Load returns the stored token. It may be called without the lock
	// to look (a reader never sees half a save).
	Load() (*oauth2.Token, error)
	// Save stores tok, with the lock held. The token is spent by then,
	// so a failure cannot undo the refresh: the store reports it itself.
	Save(tok *oauth2.Token)
}

// Recoverable is a token source that can tell cheaply that a call may
// succeed again after a failure (the stored login was replaced by a new
// sign-in): the client then asks it at once instead of waiting out its
// backoff.
type Recoverable interface {
	Recovered() bool
}

// refreshTimeout bounds one renewal: the wait for the store's lock and
// the token endpoint's answers.
const refreshTimeout = 30 * time.Second

// RefreshToken returns tok while it is valid, then renews it: with a store,
// from the store (a token another process renewed, or a new login) or by
// redeeming the stored refresh token under the store's lock (see
// TokenStore); without one (nil), by redeeming the refresh token it holds.
// It does not cache: every call after the first renews.
func RefreshToken(ctx context.Context, cfg *oauth2.Config, tok *oauth2.Token, store TokenStore) oauth2.TokenSource {
	return &refresher{ctx: ctx, cfg: cfg, cur: tok, store: store, now: time.Now}
}

type refresher struct {
	ctx   context.Context
	cfg   *oauth2.Config
	store TokenStore // nil: the token lives in memory only
	now   func() time.Time

	mu     sync.Mutex
	cur    *oauth2.Token // GUARDED_BY(mu)
	handed bool          // GUARDED_BY(mu): cur's access token was given out
	// After a failed renewal, the stored refresh token it saw ("" if the
	// store could not be read): a different one means a new login.
	failed   bool   // GUARDED_BY(mu)
	failedOn string // GUARDED_BY(mu)
}

func (r *refresher) Token() (*oauth2.Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// The caller (tokenCache) asks again only when it needs a new token, so
	// the initial token is handed out once, and only while it is valid.
	if !r.handed && r.cur.Valid() {
		r.handed = true
		return r.cur, nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, refreshTimeout)
	defer cancel()
	if r.store == nil {
		return r.redeem(ctx, r.cur.RefreshToken)
	}
	unlock, err := r.store.Lock(ctx)
	if err != nil {
		return nil, r.fail("", fmt.Errorf("refresh access token: %w", err))
	}
	defer unlock()
	stored, err := r.store.Load()
	if err != nil {
		return nil, r.fail("", fmt.Errorf("refresh access token: %w", err))
	}
	// Another process renewed since this one last did, or the user signed
	// in again: take that token rather than spend a refresh.
	if stored.AccessToken != "" && stored.AccessToken != r.cur.AccessToken && fresh(stored, r.now()) {
		r.cur, r.handed, r.failed = stored, true, false
		return stored, nil
	}
	// The stored refresh token is the live one: every process saves the
	// rotated token before it unlocks.
	seen, tried := stored.RefreshToken, stored.RefreshToken
	if tried == "" {
		tried = r.cur.RefreshToken
	}
	next, err := r.redeem(ctx, tried)
	if isInvalidGrant(err) {
		// Spent or revoked: if the store or this process knows another
		// refresh token (one written without the lock, or one this
		// process could not save), try that one, once.
		var again string
		if now, lerr := r.store.Load(); lerr == nil && now.RefreshToken != tried {
			again, seen = now.RefreshToken, now.RefreshToken
		} else if r.cur.RefreshToken != tried {
			again = r.cur.RefreshToken
		}
		if again != "" {
			next, err = r.redeem(ctx, again)
		}
	}
	if err != nil {
		return nil, r.fail(seen, err)
	}
	r.store.Save(next)
	return next, nil
}

// redeem trades refresh for a new token and makes it current. mu is held.
func (r *refresher) redeem(ctx context.Context, refresh string) (*oauth2.Token, error) {
	if refresh == "" {
		return nil, fmt.Errorf("refresh access token: no refresh token (sign in again)")
	}
	next, err := r.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: refresh}).Token()
	if err != nil {
		return nil, fmt.Errorf("refresh access token: %w", redactErr(err))
	}
	if next.RefreshToken == "" {
		next.RefreshToken = refresh // the service does not rotate them
	}
	r.cur, r.handed, r.failed = next, true, false
	return next, nil
}

// fail records a failed renewal for Recovered. mu is held.
func (r *refresher) fail(storedRefresh string, err error) error {
	r.failed, r.failedOn = true, storedRefresh
	return err
}

// Recovered says whether the store now holds another login than at the
// last failure: one read of the store, without its lock.
func (r *refresher) Recovered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.store == nil || !r.failed {
		return false
	}
	t, err := r.store.Load()
	return err == nil && t.RefreshToken != r.failedOn
}

// fresh says whether tok has enough life left to be handed out instead of
// renewing: more than tokenCache's renewal margin (30 s, or a quarter of
// a short lifetime).
func fresh(tok *oauth2.Token, now time.Time) bool {
	if tok.Expiry.IsZero() {
		return true
	}
	margin := 30 * time.Second
	if life := time.Duration(tok.ExpiresIn) * time.Second; life > 0 {
		margin = min(margin, life/4)
	}
	return tok.Expiry.Sub(now) > margin
}

// isInvalidGrant reports the token endpoint's refusal of a refresh token
// (RFC 6749 5.2: spent, revoked or expired).
func isInvalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
}

type sourceFunc func() (*oauth2.Token, error)

func (f sourceFunc) Token() (*oauth2.Token, error) { return f() }

// tokenCache hands out the current access token, fetching a new one when
// none is held or the held one is about to expire.
type tokenCache struct {
	src oauth2.TokenSource
	now func() time.Time

	mu      sync.Mutex
	tok     *oauth2.Token // GUARDED_BY(mu)
	renewAt time.Time     // GUARDED_BY(mu): zero for a token without expiry
	// After the source fails, calls get its error without asking it again
	// until retryAt, the wait doubling from 1 s to a minute while it keeps
	// failing: a mount whose login is gone does not hammer the token
	// endpoint on every file access; unless a Recoverable source says a
	// new call may succeed (a new login).
	failErr error         // GUARDED_BY(mu)
	retryAt time.Time     // GUARDED_BY(mu)
	wait    time.Duration // GUARDED_BY(mu)
}

func newTokenCache(src oauth2.TokenSource) *tokenCache {
	return &tokenCache{src: src, now: time.Now}
}

func (c *tokenCache) token() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != nil && (c.renewAt.IsZero() || c.now().Before(c.renewAt)) {
		return c.tok.AccessToken, nil
	}
	if c.failErr != nil && c.now().Before(c.retryAt) {
		if r, ok := c.src.(Recoverable); !ok || !r.Recovered() {
			return "", c.failErr
		}
	}
	tok, err := c.src.Token()
	if err != nil {
		c.wait = min(max(2*c.wait, time.Second), time.Minute)
		c.failErr, c.retryAt = fmt.Errorf("get access token: %w", redactErr(err)), c.now().Add(c.wait)
		return "", c.failErr
	}
	c.failErr, c.wait = nil, 0
	if tok.AccessToken == "" {
		return "", fmt.Errorf("get access token: the token source gave an empty token")
	}
	c.tok = tok
	c.renewAt = time.Time{}
	if !tok.Expiry.IsZero() {
		// Renew a little before expiry: 30 s, or a quarter of a short life.
		margin := min(30*time.Second, tok.Expiry.Sub(c.now())/4)
		c.renewAt = tok.Expiry.Add(-margin)
	}
	return tok.AccessToken, nil
}

// invalidate drops the token the service refused, unless another caller
// already replaced it.
func (c *tokenCache) invalidate(refused string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != nil && c.tok.AccessToken == refused {
		c.tok = nil
	}
}
