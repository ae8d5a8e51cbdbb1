package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// emuEnv points evofs at the emulator's identity and discovery endpoints
// through the environment, as a user would with a config file.
func emuEnv(home string, info emulator.Info, extra ...string) []string {
	return userEnv(home, append([]string{
		"EVOFS_AUTH_URL=" + info.AuthorizeURL, "EVOFS_TOKEN_URL=" + info.TokenURL,
		"EVOFS_CLIENT_ID=" + info.ClientID, "EVOFS_DISCOVERY_URL=" + info.DiscoveryURL,
		"EVOFS_LOG_LEVEL=debug",
	}, extra...)...)
}

// login runs `evofs login` and plays the browser: a fake xdg-open hands it
// the authorize URL, which the test follows (the emulator consents at once
// and redirects to evofs's loopback listener). It returns the stored
// login's path.
func login(t *testing.T, bin string, env []string, home string) string {
	t.Helper()
	fake := filepath.Join(home, "fakebin")
	opened := filepath.Join(home, "opened-url")
	os.MkdirAll(fake, 0o755)
	os.Remove(opened) // a second login in the same home must not follow the first one's URL
	os.WriteFile(filepath.Join(fake, "xdg-open"), []byte("#!/bin/sh\nprintf '%s' \"$1\" > "+opened+".tmp && mv "+opened+".tmp "+opened+"\n"), 0o755)
	for i, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			env[i] = "PATH=" + fake + ":" + kv[len("PATH="):]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &logBuffer{}
	cmd := exec.CommandContext(ctx, bin, "login")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var authURL string
	for authURL == "" {
		select {
		case err := <-done:
			t.Fatalf("evofs login exited before opening the browser: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		b, _ := os.ReadFile(opened)
		authURL = string(b)
	}
	if !strings.Contains(out.String(), authURL) {
		t.Errorf("login did not print the URL it opened:\n%s", out.String())
	}
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" ||
		q.Get("scope") != "evo.file evo.workspace evo.discovery offline_access" ||
		!strings.HasPrefix(q.Get("redirect_uri"), "http://127.0.0.1:") {
		t.Errorf("authorize URL %s", authURL)
	}
	// The browser: follow the authorize URL and its redirect to evofs.
	resp, err := http.Get(authURL)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("Signed in")) {
		t.Fatalf("browser landed on %d %s", resp.StatusCode, page)
	}
	if err := <-done; err != nil {
		t.Fatalf("evofs login: %v\n%s", err, out.String())
	}
	return filepath.Join(home, "config", "evofs", "login.json")
}

func TestLoginStoresTokenPrivatelyAndLogoutRemovesIt(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t)
	info := emu.Info()
	home := t.TempDir()
	env := emuEnv(home, info)
	path := login(t, bin, env, home)

	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("login file: %v, mode %v; want 0600", err, st.Mode())
	}
	if dir, _ := os.Stat(filepath.Dir(path)); dir.Mode().Perm() != 0o700 {
		t.Errorf("login folder mode %v; want 0700", dir.Mode())
	}
	var l storedLogin
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &l); err != nil || l.Token.AccessToken == "" || l.Token.RefreshToken == "" ||
		l.TokenURL != info.TokenURL || l.ClientID != info.ClientID {
		t.Fatalf("stored login %s: %v", b, err)
	}
	st2 := emu.Stats()
	if st2.APICount(emulator.OpAuthorize, 302) != 1 || st2.APICount(emulator.OpToken, 200) != 1 {
		t.Errorf("emulator saw %v", st2.API)
	}

	// The stored login works for the next command.
	out, err := runEvofs(t, bin, env, "workspaces")
	if err != nil || !strings.Contains(out, info.WorkspaceID) {
		t.Fatalf("workspaces with the stored login: %q, %v", out, err)
	}

	if _, err := runEvofs(t, bin, env, "logout"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("login file after logout: %v", err)
	}
	if _, err := runEvofs(t, bin, env, "workspaces"); err == nil || !strings.Contains(err.Error(), "evofs login") {
		t.Fatalf("workspaces after logout: %v, want a hint to sign in", err)
	}
}
