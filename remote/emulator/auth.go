package emulator

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/evofs/evofs/remote"
)

// Tokens are self-contained: "evo1.<payload>.<mac>", payload the base64url
// of a JSON tokenClaims and mac the base64url HMAC-SHA256 of "evo1.<payload>"
// under a key kept in the store, so tokens survive a restart on the same
// data dir. Access and refresh tokens differ by Kind.

const tokenPrefix = "evo1."

type tokenClaims struct {
	Kind    string `json:"typ"` // "access" | "refresh"
	Subject string `json:"sub"` // user id
	Role    string `json:"role"`
	Client  string `json:"cid,omitempty"`
	Scope   string `json:"scope,omitempty"`
	Expiry  int64  `json:"exp"` // unix seconds
	ID      string `json:"jti"`
}

// users: the fixed identities of the emulator.
var (
	editorUser = remote.User{ID: "0e6a3c1d-5b7f-4c2a-9d8e-1f2a3b4c5d01", Name: "Emulator Editor", Email: "editor@evofs-emulator.invalid"}
	viewerUser = remote.User{ID: "0e6a3c1d-5b7f-4c2a-9d8e-1f2a3b4c5d02", Name: "Emulator Viewer", Email: "viewer@evofs-emulator.invalid"}
)

func userByID(id string) *remote.User {
	switch id {
	case editorUser.ID:
		u := editorUser
		return &u
	case viewerUser.ID:
		u := viewerUser
		return &u
	case "":
		return nil
	}
	return &remote.User{ID: id}
}

func userForRole(role string) remote.User {
	if role == RoleViewer {
		return viewerUser
	}
	return editorUser
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Server) mac(msg string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func (s *Server) signToken(c tokenClaims) string {
	if c.ID == "" {
		c.ID = randomID()
	}
	b, _ := json.Marshal(c)
	body := tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return body + "." + base64.RawURLEncoding.EncodeToString(s.mac(body))
}

var errBadToken = errors.New("token is malformed or its signature is wrong")

// parseToken checks a token's signature, kind and expiry.
func (s *Server) parseToken(tok, kind string, now time.Time) (*tokenClaims, error) {
	i := strings.LastIndexByte(tok, '.')
	if !strings.HasPrefix(tok, tokenPrefix) || i <= len(tokenPrefix) {
		return nil, errBadToken
	}
	body, sig := tok[:i], tok[i+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(body)) {
		return nil, errBadToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(body[len(tokenPrefix):])
	if err != nil {
		return nil, errBadToken
	}
	var c tokenClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, errBadToken
	}
	if c.Kind != kind {
		return nil, fmt.Errorf("not an %s token", kind)
	}
	if now.Unix() >= c.Expiry {
		return nil, errors.New("token has expired")
	}
	return &c, nil
}

// issueAccess mints an access token for role.
func (s *Server) issueAccess(role, client, scope string, ttl time.Duration) string {
	u := userForRole(role)
	return s.signToken(tokenClaims{Kind: "access", Subject: u.ID, Role: role, Client: client, Scope: scope,
		Expiry: time.Now().Add(ttl).Unix()})
}

// IssueToken mints an access token for role ("editor" or "viewer") that
// lasts ttl (a negative ttl gives an expired token). For tests.
func (s *Server) IssueToken(role string, ttl time.Duration) string {
	if role != RoleViewer {
		role = RoleEditor
	}
	s.stats.update(func(st *Stats) { st.TokensIssued++ })
	return s.issueAccess(role, "", "", ttl)
}

// caller is the authenticated user of a request.
type caller struct {
	user remote.User
	role string
}

// authenticate checks the bearer token of r.
func (s *Server) authenticate(r *http.Request) (*caller, *apiError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, problemf(http.StatusUnauthorized, remote.CodeMissingToken, "no Authorization header")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return nil, problemf(http.StatusUnauthorized, remote.CodeInvalidToken, "the Authorization header is not a bearer token")
	}
	c, err := s.parseToken(strings.TrimSpace(tok), "access", time.Now())
	if err != nil {
		return nil, problemf(http.StatusUnauthorized, remote.CodeInvalidToken, "%v", err)
	}
	u := userForRole(c.Role)
	return &caller{user: u, role: c.Role}, nil
}

// requireEditor refuses a viewer (403 with the roles).
func requireEditor(c *caller) *apiError {
	if c.role == RoleEditor {
		return nil
	}
	e := problemf(http.StatusForbidden, remote.CodeInsufficientRole, "this call needs the editor or owner role")
	e.permittedRoles = []string{"owner", RoleEditor}
	e.yourRole = c.role
	return e
}

// clientSecret derives a confidential client's secret from the signing key,
// so it is stable across restarts on the same data dir.
func (s *Server) clientSecret(clientID string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("client-secret:" + clientID))[:32]
}

// OAuth client ids.
const (
	publicClientID  = "evofs-desktop"
	serviceClientID = "evofs-service"
	viewerClientID  = "evofs-viewer"
)
