package remote

import (
	"context"
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

// RefreshToken returns tok while it is valid, then redeems its refresh token
// for a new one on every call; save is told of each new token (refresh
// tokens rotate) so that it can be stored.
func RefreshToken(ctx context.Context, cfg *oauth2.Config, tok *oauth2.Token, save func(*oauth2.Token)) oauth2.TokenSource {
	return &refresher{ctx: ctx, cfg: cfg, cur: tok, save: save}
}

type refresher struct {
	ctx  context.Context
	cfg  *oauth2.Config
	save func(*oauth2.Token)

	mu     sync.Mutex
	cur    *oauth2.Token // GUARDED_BY(mu)
	handed bool          // GUARDED_BY(mu): cur's access token was given out
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
	if r.cur.RefreshToken == "" {
		return nil, fmt.Errorf("refresh access token: no refresh token (sign in again)")
	}
	next, err := r.cfg.TokenSource(r.ctx, &oauth2.Token{RefreshToken: r.cur.RefreshToken}).Token()
	if err != nil {
		return nil, fmt.Errorf("refresh access token: %w", redactErr(err))
	}
	if next.RefreshToken == "" {
		next.RefreshToken = r.cur.RefreshToken
	}
	r.cur, r.handed = next, true
	if r.save != nil {
		r.save(next)
	}
	return next, nil
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
	// endpoint on every file access.
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
		return "", c.failErr
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
