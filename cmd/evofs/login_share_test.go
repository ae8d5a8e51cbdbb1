package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// One stored login, many users of it (issue 15): every evofs process that
// renews the stored login re-reads it under a lock and saves the rotated
// refresh token before letting go, so none spends a refresh token another
// has already spent, and a new `evofs login` reaches running mounts.

// readLogin reads the stored login at path.
func readLogin(t *testing.T, path string) storedLogin {
	t.Helper()
	var l storedLogin
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &l)
	}
	if err != nil || l.Token == nil {
		t.Fatalf("stored login %s: %v", path, err)
	}
	return l
}

// redeem redeems refresh at the emulator behind evofs's back and returns
// the status: 200 if it was live (it is spent now).
func redeem(t *testing.T, info emulator.Info, refresh string) int {
	t.Helper()
	resp, err := http.PostForm(info.TokenURL, url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {refresh}, "client_id": {info.ClientID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkLiveLogin checks that the stored login ends with the live refresh
// token (the newest of the rotation: every older one is spent), private.
func checkLiveLogin(t *testing.T, info emulator.Info, path string) {
	t.Helper()
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("login file: %v, mode %v; want 0600", err, st.Mode())
	}
	if code := redeem(t, info, readLogin(t, path).Token.RefreshToken); code != 200 {
		t.Fatalf("redeeming the stored refresh token: %d: the file does not hold the latest one", code)
	}
}

// Two token sources on one stored login, as two processes hold it, renew
// in turn and at once; neither spends a refresh token twice.
func TestLoginStoreTwoSourcesNeverSpendATokenTwice(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t, func(c *emulator.Config) { c.TokenTTL = time.Second })
	info := emu.Info()
	home := t.TempDir()
	path := login(t, bin, emuEnv(home, info), home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx := context.Background()
	a, _, err := (&authFlags{}).tokenSource(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := (&authFlags{}).tokenSource(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	emu.ResetStats()

	// In turn, each once the other's token is too old to take (a second's
	// life): each call redeems the refresh token the other stored.
	srcs := []oauth2.TokenSource{a, b}
	for i := range 8 {
		time.Sleep(800 * time.Millisecond)
		tok, err := srcs[i%2].Token()
		if err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
		if got := readLogin(t, path).Token; got.AccessToken != tok.AccessToken || got.RefreshToken != tok.RefreshToken {
			t.Fatalf("turn %d: the stored login does not hold the token just renewed", i)
		}
	}
	if n := emu.Stats().APICount(emulator.OpToken, 200); n != 8 {
		t.Fatalf("%d refreshes in 8 turns, want 8", n)
	}

	// At once: a fresh token the other stored is taken, else one renews
	// while the other waits for the lock.
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for name, s := range map[string]oauth2.TokenSource{"a": a, "b": b} {
		wg.Go(func() {
			for i := range 60 {
				if _, err := s.Token(); err != nil {
					errs <- fmt.Errorf("%s, call %d: %w", name, i, err)
					return
				}
				time.Sleep(time.Duration(i%4) * 50 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := emu.Stats()
	t.Logf("%d refreshes, %d refused", st.APICount(emulator.OpToken, 200), st.APICount(emulator.OpToken, 400))
	if n := st.APICount(emulator.OpToken, 400); n != 0 {
		t.Fatalf("%d refreshes refused", n)
	}
	if n := st.APICount(emulator.OpToken, 200); n < 8+10 {
		t.Fatalf("only %d refreshes: the sources did not renew at once", n)
	}
	checkLiveLogin(t, info, path)
	if strings.Contains(logs.String(), "cannot") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}

// Processes, not sources: `evofs workspaces` runs (each renews the stored
// login, as its access token lives a second) two at a time.
func TestLoginSharedByConcurrentCommands(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t, func(c *emulator.Config) { c.TokenTTL = time.Second })
	info := emu.Info()
	home := t.TempDir()
	env := emuEnv(home, info)
	path := login(t, bin, env, home)
	emu.ResetStats()

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() {
			for range 6 {
				out, err := runEvofs(t, bin, env, "workspaces")
				if err == nil && !strings.Contains(out, info.WorkspaceID) {
					err = fmt.Errorf("workspaces lists no %s:\n%s", info.WorkspaceID, out)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := emu.Stats()
	if n := st.APICount(emulator.OpToken, 400); n != 0 {
		t.Fatalf("%d refreshes refused", n)
	}
	if n := st.APICount(emulator.OpToken, 200); n < 6 {
		t.Fatalf("only %d refreshes in 18 runs", n)
	}
	checkLiveLogin(t, info, path)
}

// seedFiles are the seed's files, each read through a mount only once
// (so each read needs the service: a download link).
var seedFiles = []string{"README.txt", "tables/assays.csv", "rasters/dem.tif", "vectors/geology.gpkg",
	"vectors/collars.shp", "vectors/collars.shx", "vectors/collars.dbf", "vectors/collars.prj", "vectors/collars.cpg"}

// A mount on the stored login keeps writing and reading uncached files
// while `evofs workspaces` and a second mount renew the same login.
func TestLoginSharedMountKeepsWorking(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t, seeded("Shared login"), func(c *emulator.Config) { c.TokenTTL = 3 * time.Second })
	info := emu.Info()
	home := t.TempDir()
	env := emuEnv(home, info)
	path := login(t, bin, env, home)
	mnt := filepath.Join(home, "mnt")
	watchdog(t, 4*time.Minute, mnt)
	_, logs := startMount(t, bin, env, mnt, "mount", "--workspace", info.WorkspaceID, "--listing-ttl", "1s")
	emu.ResetStats()

	var mnt2 string
	for i, rel := range seedFiles[:6] {
		if i == 2 { // a second mount of its own, on the same login
			mnt2 = filepath.Join(home, "mnt2")
			watchdog(t, 4*time.Minute, mnt2)
			startMount(t, bin, env, mnt2, "mount", "--workspace", info.WorkspaceID, "--listing-ttl", "1s",
				"--cache-dir", filepath.Join(home, "cache2"))
		}
		// The other user renews the stored login (its token is older
		// than 10 s or about to be), rotating the refresh token.
		if _, err := runEvofs(t, bin, env, "workspaces"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // the mount's token runs out meanwhile
		if err := sameAsSeed(mnt, rel); err != nil {
			t.Fatalf("round %d: uncached read: %v", i, err)
		}
		if err := os.WriteFile(filepath.Join(mnt, fmt.Sprintf("save-%d.txt", i)), []byte("saved\n"), 0o644); err != nil {
			t.Fatalf("round %d: write: %v", i, err)
		}
		if mnt2 != "" {
			if err := os.WriteFile(filepath.Join(mnt2, fmt.Sprintf("other-%d.txt", i)), []byte("other\n"), 0o644); err != nil {
				t.Fatalf("round %d: write through the second mount: %v", i, err)
			}
		}
	}
	st := emu.Stats()
	t.Logf("%d refreshes, %d refused", st.APICount(emulator.OpToken, 200), st.APICount(emulator.OpToken, 400))
	if n := st.APICount(emulator.OpToken, 400); n != 0 {
		t.Fatalf("%d refreshes refused", n)
	}
	if n := st.APICount(emulator.OpToken, 200); n < 6 {
		t.Fatalf("only %d refreshes: the test did not make the users renew", n)
	}
	if strings.Contains(logs.String(), "cannot renew") {
		t.Fatalf("the mount could not renew:\n%s", logs.String())
	}
	checkLiveLogin(t, info, path)
}

// A mount whose stored login is spent fails what needs the service; a new
// `evofs login` makes it work again at once, without a restart.
func TestLoginRenewedReachesRunningMount(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t, seeded("Login again"), func(c *emulator.Config) { c.TokenTTL = 3 * time.Second })
	info := emu.Info()
	home := t.TempDir()
	env := emuEnv(home, info)
	path := login(t, bin, env, home)
	mnt := filepath.Join(home, "mnt")
	watchdog(t, 4*time.Minute, mnt)
	_, logs := startMount(t, bin, env, mnt, "mount", "--workspace", info.WorkspaceID, "--listing-ttl", "1s")
	if err := sameAsSeed(mnt, "README.txt"); err != nil {
		t.Fatal(err)
	}

	// Spend the stored refresh token behind every evofs's back.
	if code := redeem(t, info, readLogin(t, path).Token.RefreshToken); code != 200 {
		t.Fatalf("spend the refresh token: %d", code)
	}
	var failed error
	for i, end := 0, time.Now().Add(30*time.Second); failed == nil && time.Now().Before(end); i++ {
		time.Sleep(200 * time.Millisecond)
		failed = os.WriteFile(filepath.Join(mnt, fmt.Sprintf("while-broken-%d.txt", i)), []byte(fmt.Sprintln(i)), 0o644)
	}
	if failed == nil {
		t.Fatalf("writes still work 30 s after the login was spent: the test broke nothing\n%s", logs.String())
	}
	if err := sameAsSeed(mnt, "tables/assays.csv"); err == nil {
		t.Fatal("an uncached read works with the login spent")
	}
	t.Logf("with the login spent: %v", failed)

	login(t, bin, env, home)
	start := time.Now()
	var err error
	for i, end := 0, start.Add(10*time.Second); time.Now().Before(end); i++ {
		if err = os.WriteFile(filepath.Join(mnt, fmt.Sprintf("after-login-%d.txt", i)), []byte(fmt.Sprintln(i)), 0o644); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the mount still fails 10 s after a new login: %v\n%s", err, logs.String())
	}
	t.Logf("the mount worked again %s after the new login", time.Since(start).Round(time.Millisecond))
	if err := sameAsSeed(mnt, "tables/assays.csv"); err != nil {
		t.Fatalf("uncached read after the new login: %v", err)
	}
	// The renewals keep going on the new login.
	time.Sleep(4 * time.Second)
	if err := sameAsSeed(mnt, "rasters/dem.tif"); err != nil {
		t.Fatalf("uncached read a token later: %v", err)
	}
	if !strings.Contains(logs.String(), "access token renewed again") {
		t.Errorf("the recovery was not logged:\n%s", logs.String())
	}
	checkLiveLogin(t, info, path)
}
