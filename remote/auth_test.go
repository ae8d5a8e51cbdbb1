package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// rotatingEndpoint is a token endpoint whose refresh tokens rotate: each
// is good for one redemption, as Bentley IMS and the emulator do it.
type rotatingEndpoint struct {
	ttl time.Duration

	mu    sync.Mutex
	n     int
	live  map[string]bool // refresh tokens not redeemed yet
	calls int
	bad   int // invalid_grant answers
}

func newRotatingEndpoint(t *testing.T, ttl time.Duration) (*rotatingEndpoint, *oauth2.Config) {
	e := &rotatingEndpoint{ttl: ttl, live: map[string]bool{}}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return e, &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL, AuthStyle: oauth2.AuthStyleInParams}}
}

// issue makes a live login as a sign-in would: access token "aN",
// refresh token "rN".
func (e *rotatingEndpoint) issue() *oauth2.Token {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.issueLocked()
}

func (e *rotatingEndpoint) issueLocked() *oauth2.Token {
	e.n++
	rt := fmt.Sprintf("r%d", e.n)
	e.live[rt] = true
	return &oauth2.Token{AccessToken: fmt.Sprintf("a%d", e.n), RefreshToken: rt, TokenType: "Bearer",
		Expiry: time.Now().Add(e.ttl), ExpiresIn: int64(e.ttl / time.Second)}
}

func (e *rotatingEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	w.Header().Set("Content-Type", "application/json")
	rt := r.PostForm.Get("refresh_token")
	if r.PostForm.Get("grant_type") != "refresh_token" || !e.live[rt] {
		e.bad++
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": "refresh token already used"})
		return
	}
	delete(e.live, rt)
	tok := e.issueLocked()
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok.AccessToken, "token_type": "Bearer",
		"refresh_token": tok.RefreshToken, "expires_in": tok.ExpiresIn})
}

func (e *rotatingEndpoint) stats() (calls, bad int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls, e.bad
}

func (e *rotatingEndpoint) isLive(rt string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.live[rt]
}

// memStore is a TokenStore in memory; lock stands for the file lock.
type memStore struct {
	lock sync.Mutex

	mu     sync.Mutex
	tok    *oauth2.Token
	err    error                     // Load's answer when set
	onLoad func(n int) *oauth2.Token // when set, replaces the token at the nth Load
	loads  int
	saves  int
}

func (s *memStore) Lock(ctx context.Context) (func(), error) {
	s.lock.Lock()
	return s.lock.Unlock, nil
}

func (s *memStore) Load() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads++
	if s.onLoad != nil {
		if t := s.onLoad(s.loads); t != nil {
			s.tok = t
		}
	}
	if s.err != nil {
		return nil, s.err
	}
	c := *s.tok
	return &c, nil
}

func (s *memStore) Save(tok *oauth2.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saves++
	c := *tok
	s.tok = &c
}

func (s *memStore) set(tok *oauth2.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *tok
	s.tok, s.err = &c, nil
}

func (s *memStore) get() *oauth2.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok
}

// expired is tok as a process holds it once its access token has run out.
func expired(tok *oauth2.Token) *oauth2.Token {
	c := *tok
	c.Expiry = time.Now().Add(-time.Minute)
	return &c
}

func TestRefreshTokenWithStore(t *testing.T) {
	cases := []struct {
		name string
		// setup returns the token the process holds and fills the store.
		setup     func(e *rotatingEndpoint, s *memStore) *oauth2.Token
		wantToken func(held, stored *oauth2.Token) string // the access token handed out; "" for an error
		wantCalls int                                     // token endpoint calls
		wantSaves int
	}{{
		name: "a fresh token another process stored is taken without a refresh",
		setup: func(e *rotatingEndpoint, s *memStore) *oauth2.Token {
			held := e.issue()
			e.live[held.RefreshToken] = false // the other process spent it
			s.set(e.issue())
			return expired(held)
		},
		wantToken: func(_, stored *oauth2.Token) string { return stored.AccessToken },
	}, {
		name: "the stored refresh token is redeemed, not the spent one held",
		setup: func(e *rotatingEndpoint, s *memStore) *oauth2.Token {
			held := e.issue()
			e.live[held.RefreshToken] = false
			s.set(expired(e.issue()))
			return expired(held)
		},
		wantToken: func(_, _ *oauth2.Token) string { return "a3" },
		wantCalls: 1, wantSaves: 1,
	}, {
		name: "the same token in store and memory is refreshed and saved",
		setup: func(e *rotatingEndpoint, s *memStore) *oauth2.Token {
			held := expired(e.issue())
			s.set(held)
			return held
		},
		wantToken: func(_, _ *oauth2.Token) string { return "a2" },
		wantCalls: 1, wantSaves: 1,
	}, {
		name: "after invalid_grant a token the store got meanwhile is tried once",
		setup: func(e *rotatingEndpoint, s *memStore) *oauth2.Token {
			held := expired(e.issue())
			e.live[held.RefreshToken] = false
			s.set(held)
			relogin := expired(e.issue()) // written without the lock
			s.onLoad = func(n int) *oauth2.Token {
				if n == 2 {
					return relogin
				}
				return nil
			}
			return held
		},
		wantToken: func(_, _ *oauth2.Token) string { return "a3" },
		wantCalls: 2, wantSaves: 1,
	}, {
		name: "after invalid_grant the refresh token held is tried when the store's is spent",
		setup: func(e *rotatingEndpoint, s *memStore) *oauth2.Token {
			held := expired(e.issue()) // a save of it failed: the store is behind
			old := e.issue()
			e.live[old.RefreshToken] = false
			s.set(expired(old))
			return held
		},
		wantToken: func(_, _ *oauth2.Token) string { return "a3" },
		wantCalls: 2, wantSaves: 1,
	}, {
		name: "a spent login fails after one try and is not saved",
		setup: func(e *rotatingEndpoint, s *memStore) *oauth2.Token {
			held := expired(e.issue())
			e.live[held.RefreshToken] = false
			s.set(held)
			return held
		},
		wantCalls: 1,
	}, {
		name: "a store that cannot be read (signed out) fails without a call",
		setup: func(e *rotatingEndpoint, s *memStore) *oauth2.Token {
			held := expired(e.issue())
			s.tok, s.err = held, errors.New("not signed in")
			return held
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, cfg := newRotatingEndpoint(t, time.Hour)
			s := &memStore{}
			held := tc.setup(e, s)
			src := RefreshToken(context.Background(), cfg, held, s)
			got, err := src.Token()
			want := ""
			if tc.wantToken != nil {
				want = tc.wantToken(held, s.get())
			}
			switch {
			case want == "" && err == nil:
				t.Fatalf("Token() = %s, want an error", got.AccessToken)
			case want != "" && err != nil:
				t.Fatalf("Token(): %v, want %s", err, want)
			case want != "" && got.AccessToken != want:
				t.Fatalf("Token() = %s, want %s", got.AccessToken, want)
			}
			if calls, _ := e.stats(); calls != tc.wantCalls || s.saves != tc.wantSaves {
				t.Fatalf("%d token endpoint calls and %d saves; want %d and %d", calls, s.saves, tc.wantCalls, tc.wantSaves)
			}
			if tc.wantSaves > 0 && (s.get().AccessToken != want || !e.isLive(s.get().RefreshToken)) {
				t.Fatalf("the store holds %+v, want the new token with a live refresh token", s.get())
			}
		})
	}
}

func TestRefreshTokenWithoutStoreRotatesInMemory(t *testing.T) {
	e, cfg := newRotatingEndpoint(t, time.Hour)
	src := RefreshToken(context.Background(), cfg, e.issue(), nil)
	for i, want := range []string{"a1", "a2", "a3"} {
		tok, err := src.Token()
		if err != nil || tok.AccessToken != want {
			t.Fatalf("call %d: %v, %v; want %s", i, tok, err, want)
		}
	}
	if _, bad := e.stats(); bad != 0 {
		t.Fatalf("%d refused refreshes", bad)
	}
}

// Two processes' sources on one store, renewing at once, never spend a
// refresh token twice, and the store ends with the live one.
func TestRefreshTokenSharedStoreConcurrent(t *testing.T) {
	e, cfg := newRotatingEndpoint(t, time.Second)
	first := expired(e.issue())
	s := &memStore{tok: first}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		src := RefreshToken(context.Background(), cfg, first, s)
		wg.Go(func() {
			for range 100 {
				if _, err := src.Token(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	calls, bad := e.stats()
	if bad != 0 || calls < 10 {
		t.Fatalf("%d refreshes, %d refused", calls, bad)
	}
	if !e.isLive(s.get().RefreshToken) {
		t.Fatalf("the store holds a spent refresh token")
	}
}

// After a failed renewal the client waits before asking again, unless the
// store got a new login: then it asks at once.
func TestTokenCacheAsksAtOnceAfterNewLogin(t *testing.T) {
	e, cfg := newRotatingEndpoint(t, time.Hour)
	held := expired(e.issue())
	e.live[held.RefreshToken] = false
	s := &memStore{tok: held}
	clk := &fakeClock{t: time.Now()}
	c := newTokenCache(RefreshToken(context.Background(), cfg, held, s))
	c.now = clk.Now

	if _, err := c.token(); !isInvalidGrant(err) {
		t.Fatalf("token() with a spent login: %v, want invalid_grant", err)
	}
	loads := s.loads
	for range 3 {
		if _, err := c.token(); err == nil {
			t.Fatal("token() succeeded with a spent login")
		}
	}
	if calls, _ := e.stats(); calls != 1 {
		t.Fatalf("%d token endpoint calls, want 1: the failure was not backed off", calls)
	}
	if s.loads <= loads {
		t.Fatal("the backoff did not look at the store")
	}

	s.set(expired(e.issue())) // `evofs login`
	tok, err := c.token()
	if err != nil || tok != "a3" {
		t.Fatalf("token() after a new login: %q, %v; want a3 at once", tok, err)
	}
}
