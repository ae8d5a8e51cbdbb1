package emulator

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// OAuth 2.0 (RFC 6749, RFC 7636) endpoints: /connect/token and
// /connect/authorize, as Bentley IMS offers them, reduced to what a mount
// needs. The authorize endpoint approves at once (no login page).

const (
	authCodeTTL   = 5 * time.Minute
	refreshTTL    = 30 * 24 * time.Hour
	defaultScopes = "evo.file evo.workspace evo.discovery"
)

// authCode is an issued, not yet redeemed authorization code.
type authCode struct {
	clientID, redirectURI, challenge, role, scope string
	expiry                                        time.Time
}

type oauthError struct {
	status int
	code   string
	desc   string
}

func writeOAuthError(w http.ResponseWriter, e oauthError) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="evofs-emulator"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.desc})
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
}

func hasScope(scope, want string) bool {
	for _, s := range strings.Fields(scope) {
		if s == want {
			return true
		}
	}
	return false
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	defer func() { s.stats.api(OpToken, sw.code()) }()
	if err := r.ParseForm(); err != nil {
		writeOAuthError(sw, oauthError{http.StatusBadRequest, "invalid_request", "the body is not a form"})
		return
	}
	clientID, secret, basic := r.BasicAuth()
	if !basic {
		clientID, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	var (
		resp tokenResponse
		oe   *oauthError
	)
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "client_credentials":
		resp, oe = s.grantClientCredentials(clientID, secret, r.PostForm.Get("scope"))
	case "authorization_code":
		resp, oe = s.grantAuthCode(clientID, secret, r.PostForm)
	case "refresh_token":
		resp, oe = s.grantRefresh(clientID, secret, r.PostForm.Get("refresh_token"))
	case "":
		oe = &oauthError{http.StatusBadRequest, "invalid_request", "grant_type is required"}
	default:
		oe = &oauthError{http.StatusBadRequest, "unsupported_grant_type", "grant type " + gt + " is not supported"}
	}
	if oe != nil {
		writeOAuthError(sw, *oe)
		return
	}
	s.stats.update(func(st *Stats) { st.TokensIssued++ })
	sw.Header().Set("Cache-Control", "no-store")
	writeJSON(sw, http.StatusOK, resp)
}

// checkClient authenticates a client: confidential ones need their secret,
// the public one must not be asked for client credentials.
func (s *Server) checkClient(clientID, secret string) (role string, public bool, oe *oauthError) {
	switch clientID {
	case publicClientID:
		return RoleEditor, true, nil
	case serviceClientID, viewerClientID:
		if subtle.ConstantTimeCompare([]byte(secret), []byte(s.clientSecret(clientID))) != 1 {
			return "", false, &oauthError{http.StatusUnauthorized, "invalid_client", "client authentication failed"}
		}
		if clientID == viewerClientID {
			return RoleViewer, false, nil
		}
		return RoleEditor, false, nil
	}
	return "", false, &oauthError{http.StatusUnauthorized, "invalid_client", "unknown client"}
}

func (s *Server) tokens(role, client, scope string, refresh bool) tokenResponse {
	ttl := s.knobs().tokenTTL
	resp := tokenResponse{
		AccessToken: s.issueAccess(role, client, scope, ttl),
		TokenType:   "Bearer",
		ExpiresIn:   int64(ttl / time.Second),
		Scope:       scope,
	}
	if refresh {
		u := userForRole(role)
		resp.RefreshToken = s.signToken(tokenClaims{Kind: "refresh", Subject: u.ID, Role: role, Client: client,
			Scope: scope, Expiry: time.Now().Add(refreshTTL).Unix()})
	}
	return resp
}

func (s *Server) grantClientCredentials(clientID, secret, scope string) (tokenResponse, *oauthError) {
	role, public, oe := s.checkClient(clientID, secret)
	if oe != nil {
		return tokenResponse{}, oe
	}
	if public {
		return tokenResponse{}, &oauthError{http.StatusBadRequest, "unauthorized_client", "a public client cannot use client credentials"}
	}
	if scope == "" {
		scope = defaultScopes
	}
	return s.tokens(role, clientID, scope, false), nil
}

func pkceS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (s *Server) grantAuthCode(clientID, secret string, form url.Values) (tokenResponse, *oauthError) {
	if _, public, oe := s.checkClient(clientID, secret); oe != nil {
		return tokenResponse{}, oe
	} else if !public {
		return tokenResponse{}, &oauthError{http.StatusBadRequest, "unauthorized_client", "only the public client uses the authorization code grant"}
	}
	code, verifier := form.Get("code"), form.Get("code_verifier")
	if code == "" || verifier == "" {
		return tokenResponse{}, &oauthError{http.StatusBadRequest, "invalid_request", "code and code_verifier are required"}
	}
	s.codesMu.Lock()
	ac, ok := s.codes[code]
	delete(s.codes, code) // a code is good for one try
	s.codesMu.Unlock()
	bad := &oauthError{http.StatusBadRequest, "invalid_grant", "the authorization code is invalid, expired or already used"}
	switch {
	case !ok || time.Now().After(ac.expiry):
		return tokenResponse{}, bad
	case ac.clientID != clientID:
		return tokenResponse{}, bad
	case ac.redirectURI != form.Get("redirect_uri"):
		return tokenResponse{}, &oauthError{http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request"}
	case subtle.ConstantTimeCompare([]byte(pkceS256(verifier)), []byte(ac.challenge)) != 1:
		return tokenResponse{}, &oauthError{http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code challenge"}
	}
	return s.tokens(ac.role, clientID, ac.scope, hasScope(ac.scope, "offline_access")), nil
}

func (s *Server) grantRefresh(clientID, secret, refresh string) (tokenResponse, *oauthError) {
	if clientID != "" {
		if _, _, oe := s.checkClient(clientID, secret); oe != nil {
			return tokenResponse{}, oe
		}
	}
	if refresh == "" {
		return tokenResponse{}, &oauthError{http.StatusBadRequest, "invalid_request", "refresh_token is required"}
	}
	c, err := s.parseToken(refresh, "refresh", time.Now())
	if err != nil {
		return tokenResponse{}, &oauthError{http.StatusBadRequest, "invalid_grant", "refresh token: " + err.Error()}
	}
	if clientID != "" && c.Client != clientID {
		return tokenResponse{}, &oauthError{http.StatusBadRequest, "invalid_grant", "refresh token was issued to another client"}
	}
	first, err := s.store.useRefresh(c.ID, refreshTTL)
	if err != nil {
		s.log.Error("redeem refresh token", "err", err)
		return tokenResponse{}, &oauthError{http.StatusInternalServerError, "server_error", "metadata store failure"}
	}
	if !first {
		return tokenResponse{}, &oauthError{http.StatusBadRequest, "invalid_grant", "refresh token already used (tokens rotate)"}
	}
	return s.tokens(c.Role, c.Client, c.Scope, true), nil
}

// loopbackRedirect accepts http URLs on a loopback host only (RFC 8252).
func loopbackRedirect(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Fragment != "" {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	defer func() { s.stats.api(OpAuthorize, sw.code()) }()
	q := r.URL.Query()
	redirect := q.Get("redirect_uri")
	if q.Get("client_id") != publicClientID {
		writeOAuthError(sw, oauthError{http.StatusBadRequest, "invalid_client", "unknown client_id"})
		return
	}
	if !loopbackRedirect(redirect) {
		writeOAuthError(sw, oauthError{http.StatusBadRequest, "invalid_request", "redirect_uri must be a loopback http URL"})
		return
	}
	back := func(v url.Values) {
		u, _ := url.Parse(redirect)
		rq := u.Query()
		for k, vs := range v {
			rq[k] = vs
		}
		if st := q.Get("state"); st != "" {
			rq.Set("state", st)
		}
		u.RawQuery = rq.Encode()
		http.Redirect(sw, r, u.String(), http.StatusFound)
	}
	fail := func(code, desc string) { back(url.Values{"error": {code}, "error_description": {desc}}) }
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "response_type must be code")
		return
	case q.Get("code_challenge") == "":
		fail("invalid_request", "code_challenge is required (PKCE)")
		return
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
		return
	}
	role := RoleEditor
	if q.Get("login_hint") == RoleViewer {
		role = RoleViewer
	}
	scope := q.Get("scope")
	if scope == "" {
		scope = defaultScopes
	}
	code := randomID()
	s.codesMu.Lock()
	now := time.Now()
	for k, c := range s.codes { // drop expired codes
		if now.After(c.expiry) {
			delete(s.codes, k)
		}
	}
	s.codes[code] = authCode{clientID: publicClientID, redirectURI: redirect, challenge: q.Get("code_challenge"),
		role: role, scope: scope, expiry: now.Add(authCodeTTL)}
	s.codesMu.Unlock()
	back(url.Values{"code": {code}})
}
