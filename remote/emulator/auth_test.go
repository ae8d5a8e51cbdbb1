package emulator_test

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
)

type tokenResp struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	Error        string `json:"error"`
}

func (e *env) token(form url.Values, basicID, basicSecret string) (int, tokenResp) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.s.Info().TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(basicID, basicSecret)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResp
	_ = decodeBody(resp, &tr)
	return resp.StatusCode, tr
}

// canWrite reports the status of an upsert with tok.
func (e *env) canWrite(tok string) int {
	e.t.Helper()
	resp, _ := e.do(http.MethodPut, e.base+"/files/path/w.txt", tok, nil)
	return resp.StatusCode
}

func TestClientCredentials(t *testing.T) {
	e := newEnv(t)
	info := e.s.Info()
	tests := []struct {
		name       string
		form       url.Values
		basic      [2]string
		wantStatus int
		wantErr    string
		writeWith  int // upsert status with the token
	}{
		{"service, form", url.Values{"grant_type": {"client_credentials"}, "client_id": {info.ServiceClientID}, "client_secret": {info.ServiceClientSecret}}, [2]string{}, 200, "", 200},
		{"service, basic", url.Values{"grant_type": {"client_credentials"}, "scope": {"evo.file"}}, [2]string{info.ServiceClientID, info.ServiceClientSecret}, 200, "", 200},
		{"viewer", url.Values{"grant_type": {"client_credentials"}, "client_id": {info.ViewerClientID}, "client_secret": {info.ViewerClientSecret}}, [2]string{}, 200, "", 403},
		{"wrong secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {info.ServiceClientID}, "client_secret": {"x"}}, [2]string{}, 401, "invalid_client", 0},
		{"unknown client", url.Values{"grant_type": {"client_credentials"}, "client_id": {"who"}}, [2]string{}, 401, "invalid_client", 0},
		{"public client", url.Values{"grant_type": {"client_credentials"}, "client_id": {info.ClientID}}, [2]string{}, 400, "unauthorized_client", 0},
		{"bad grant", url.Values{"grant_type": {"password"}}, [2]string{}, 400, "unsupported_grant_type", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, tr := e.token(tc.form, tc.basic[0], tc.basic[1])
			if status != tc.wantStatus || tr.Error != tc.wantErr {
				t.Fatalf("token: %d %+v, want %d %q", status, tr, tc.wantStatus, tc.wantErr)
			}
			if status != 200 {
				return
			}
			if tr.TokenType != "Bearer" || tr.ExpiresIn != 3600 || tr.AccessToken == "" || tr.RefreshToken != "" {
				t.Fatalf("token response %+v", tr)
			}
			if got := e.canWrite(tr.AccessToken); got != tc.writeWith {
				t.Fatalf("upsert with the token: %d, want %d", got, tc.writeWith)
			}
		})
	}
	if st := e.s.Stats(); st.TokensIssued != 3 || st.APICount(emulator.OpToken, 200) != 3 || st.APICount(emulator.OpToken, 401) != 2 {
		t.Fatalf("token stats: issued %d, %v", st.TokensIssued, st.API[emulator.OpToken])
	}
}

func pkce(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorize runs the authorize endpoint and returns the redirect's query.
func (e *env) authorize(q url.Values) (int, url.Values) {
	e.t.Helper()
	resp, b := e.do(http.MethodGet, e.s.Info().AuthorizeURL+"?"+q.Encode(), "", nil)
	if resp.StatusCode != http.StatusFound {
		return resp.StatusCode, nil
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Host != "127.0.0.1:53682" || loc.Path != "/callback" {
		e.t.Fatalf("redirect to %q (%v); body %s", resp.Header.Get("Location"), err, b)
	}
	return resp.StatusCode, loc.Query()
}

func TestAuthCodePKCEAndRefresh(t *testing.T) {
	e := newEnv(t)
	info := e.s.Info()
	const redirect = "http://127.0.0.1:53682/callback"
	verifier := "a-verifier-of-enough-length-0123456789-abcdefghijklmnop"
	authQ := func(extra ...string) url.Values {
		q := url.Values{"response_type": {"code"}, "client_id": {info.ClientID}, "redirect_uri": {redirect},
			"code_challenge": {pkce(verifier)}, "code_challenge_method": {"S256"}, "state": {"st4te"},
			"scope": {"evo.file offline_access"}}
		for i := 0; i+1 < len(extra); i += 2 {
			q.Set(extra[i], extra[i+1])
		}
		return q
	}
	exchange := func(code, v string) (int, tokenResp) {
		return e.token(url.Values{"grant_type": {"authorization_code"}, "client_id": {info.ClientID},
			"code": {code}, "code_verifier": {v}, "redirect_uri": {redirect}}, "", "")
	}

	// Refused requests.
	if st, _ := e.authorize(authQ("redirect_uri", "https://evil.example/cb")); st != http.StatusBadRequest {
		t.Fatalf("non-loopback redirect: %d", st)
	}
	if st, _ := e.authorize(authQ("client_id", "nobody")); st != http.StatusBadRequest {
		t.Fatalf("unknown client: %d", st)
	}
	if _, q := e.authorize(authQ("code_challenge_method", "plain")); q.Get("error") != "invalid_request" || q.Get("state") != "st4te" {
		t.Fatalf("plain PKCE: %v", q)
	}

	// A wrong verifier is refused.
	_, q := e.authorize(authQ())
	if q.Get("state") != "st4te" || q.Get("code") == "" {
		t.Fatalf("authorize redirect query %v", q)
	}
	if st, tr := exchange(q.Get("code"), verifier+"x"); st != 400 || tr.Error != "invalid_grant" {
		t.Fatalf("wrong verifier: %d %+v", st, tr)
	}
	// The right one works, once.
	_, q = e.authorize(authQ())
	st, tr := exchange(q.Get("code"), verifier)
	if st != 200 || tr.AccessToken == "" || tr.RefreshToken == "" || tr.Scope != "evo.file offline_access" {
		t.Fatalf("exchange: %d %+v", st, tr)
	}
	if st, _ := exchange(q.Get("code"), verifier); st != 400 {
		t.Fatalf("code reused: %d", st)
	}
	if got := e.canWrite(tr.AccessToken); got != 200 {
		t.Fatalf("editor from auth code cannot write: %d", got)
	}

	// Refresh rotates: a new refresh token; the old one is spent.
	refresh := func(rt string) (int, tokenResp) {
		return e.token(url.Values{"grant_type": {"refresh_token"}, "client_id": {info.ClientID}, "refresh_token": {rt}}, "", "")
	}
	st, tr2 := refresh(tr.RefreshToken)
	if st != 200 || tr2.AccessToken == "" || tr2.RefreshToken == "" || tr2.RefreshToken == tr.RefreshToken {
		t.Fatalf("refresh: %d %+v", st, tr2)
	}
	if st, tr3 := refresh(tr.RefreshToken); st != 400 || tr3.Error != "invalid_grant" {
		t.Fatalf("spent refresh token: %d %+v", st, tr3)
	}
	if st, _ := refresh(tr2.RefreshToken); st != 200 {
		t.Fatalf("rotated refresh token: %d", st)
	}
	if st, tr4 := refresh(tr2.AccessToken); st != 400 || tr4.Error != "invalid_grant" {
		t.Fatalf("access token as refresh token: %d %+v", st, tr4)
	}

	// Without offline_access no refresh token; login_hint=viewer gives a viewer.
	_, q = e.authorize(authQ("scope", "evo.file", "login_hint", "viewer"))
	st, tr = exchange(q.Get("code"), verifier)
	if st != 200 || tr.RefreshToken != "" {
		t.Fatalf("no offline_access: %d %+v", st, tr)
	}
	resp, b := e.do(http.MethodPut, e.base+"/files/path/w.txt", tr.AccessToken, nil)
	wantProblem(t, resp, b, http.StatusForbidden, remote.CodeInsufficientRole)
	if st := e.s.Stats(); st.APICount(emulator.OpAuthorize, http.StatusFound) != 4 || st.APICount(emulator.OpAuthorize, http.StatusBadRequest) != 2 {
		t.Fatalf("authorize stats %v", st.API[emulator.OpAuthorize])
	}
}
