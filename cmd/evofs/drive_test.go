package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

const seed = "../../testdata/workspace"

func seeded(name string) func(*emulator.Config) {
	return func(c *emulator.Config) { c.Seed, c.WorkspaceName = seed, name }
}

// sameAsSeed reads rel through the mount and compares it with the seed.
func sameAsSeed(mnt, rel string) error {
	got, err := os.ReadFile(filepath.Join(mnt, rel))
	if err != nil {
		return err
	}
	want, _ := os.ReadFile(filepath.Join(seed, rel))
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%s through the mount: %d bytes differ from the seed's %d", rel, len(got), len(want))
	}
	return nil
}

func writeToken(t *testing.T, dir, tok string) string {
	p := filepath.Join(dir, "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWorkspacesListsAndMountFindsWorkspaceByName(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t, seeded("Pit design 2024"))
	info := emu.Info()
	home := t.TempDir()
	env := emuEnv(home, info)
	tok := writeToken(t, home, info.Token)

	out, err := runEvofs(t, bin, env, "workspaces", "--token-file", tok)
	if err != nil {
		t.Fatal(err)
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^organisation\s+` + info.OrgID + `\s+` + emulator.DefaultOrgName + `\s*$`),
		regexp.MustCompile(`(?m)^hub\s+` + regexp.QuoteMeta(info.HubURL) + `\s`),
		regexp.MustCompile(`(?m)^\s+workspace\s+` + info.WorkspaceID + `\s+Pit design 2024\s*$`),
	}
	for _, re := range want {
		if !re.MatchString(out) {
			t.Errorf("evofs workspaces output lacks %s:\n%s", re, out)
		}
	}

	// Only the hub and the name: discovery finds the organisation, the
	// workspace list the id.
	mnt := filepath.Join(home, "mnt")
	watchdog(t, 3*time.Minute, mnt)
	_, logs := startMount(t, bin, env, mnt, "mount", "--hub", info.HubURL+"/", "--workspace", "Pit design 2024",
		"--token-file", tok)
	if err := sameAsSeed(mnt, "README.txt"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "workspace="+info.WorkspaceID) {
		t.Errorf("mount log does not name the workspace id:\n%s", logs.String())
	}
	// The cache went to the user's cache folder, private.
	st, err := os.Stat(filepath.Join(home, "cache", "evofs"))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("default cache folder: %v %v, want mode 0700", err, st)
	}

	// A name that is not there: one clear line.
	_, err = runEvofs(t, bin, env, "mount", "--hub", info.HubURL, "--workspace", "No such", "--token-file", tok, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `no workspace named "No such"`) {
		t.Errorf("mount of a missing name: %v", err)
	}
}

func TestMountKeepsReadingAcrossFiveSecondTokens(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t, seeded("Short tokens"), func(c *emulator.Config) { c.TokenTTL = 5 * time.Second })
	info := emu.Info()
	home := t.TempDir()
	env := emuEnv(home, info)
	path := login(t, bin, env, home)
	before, _ := os.ReadFile(path)

	mnt := filepath.Join(home, "mnt")
	watchdog(t, 4*time.Minute, mnt)
	// A one-second listing TTL makes the mount call the API all the time.
	startMount(t, bin, env, mnt, "mount", "--workspace", "Short tokens", "--listing-ttl", "1s")
	emu.ResetStats()

	// Each loop runs once a round.
	saved := map[string]string{} // path -> sha256 of what was saved there
	loops := map[string]func(round int) error{
		"write": func(round int) error {
			if round%3 != 0 {
				return nil
			}
			p := fmt.Sprintf("saves/round-%03d.txt", round)
			content := []byte(strings.Repeat(fmt.Sprintf("round %d\n", round), 100+round))
			if err := os.MkdirAll(filepath.Join(mnt, "saves"), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(mnt, p), content, 0o644); err != nil {
				return err // close fails if the upload failed: sync write-back
			}
			h := sha256.Sum256(content)
			saved[p] = hex.EncodeToString(h[:])
			return nil
		},
		"read": func(int) error {
			if err := sameAsSeed(mnt, "README.txt"); err != nil {
				return err
			}
			return filepath.Walk(mnt, func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().IsRegular() {
					_, err = os.ReadFile(p)
				}
				return err
			})
		},
		"list": func(int) error {
			names, err := os.ReadDir(mnt)
			if err == nil && len(names) < 4 {
				err = fmt.Errorf("root lists %d names", len(names))
			}
			return err
		},
	}
	end := time.Now().Add(60 * time.Second)
	rounds := 0
	for ; time.Now().Before(end); rounds++ {
		for name, loop := range loops {
			if err := loop(rounds); err != nil {
				t.Fatalf("%s, round %d (%s into the run): %v", name, rounds, time.Until(end)+60*time.Second, err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Another client, whose tokens renew too (they last 5 s here).
	remoteView := newRemoteSide(t, info)
	remoteView.client, _ = remote.New(remote.Config{HubURL: info.HubURL, OrgID: info.OrgID, WorkspaceID: info.WorkspaceID,
		Tokens: remote.ClientCredentials(context.Background(), info.TokenURL, info.ServiceClientID, info.ServiceClientSecret, "evo.file")})
	for p, want := range saved {
		if _, got := remoteView.file(p); got != want {
			t.Errorf("%s: the remote copy differs from what was saved", p)
		}
	}
	if len(saved) < 20 {
		t.Errorf("only %d saves in 60 s", len(saved))
	}
	st := emu.Stats()
	lists := st.APICount(emulator.OpListFiles, 200)
	refreshes := st.APICount(emulator.OpToken, 200)
	t.Logf("%d rounds, %d listings, %d tokens issued, %d listings refused", rounds, lists, refreshes, st.APICount(emulator.OpListFiles, 401))
	if lists < 20 || refreshes < 9 {
		t.Fatalf("%d listings and %d token refreshes in 60 s: the mount did not outlive its tokens", lists, refreshes)
	}
	// Rotated refresh tokens were stored as they came: the stored one is
	// the live one (the first is long spent).
	after, _ := os.ReadFile(path)
	var l storedLogin
	if bytes.Equal(before, after) || json.Unmarshal(after, &l) != nil {
		t.Fatal("the stored login did not change while tokens rotated")
	}
	resp, err := http.PostForm(info.TokenURL, url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {l.Token.RefreshToken}, "client_id": {info.ClientID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// 400 would mean evofs holds a newer refresh token than it stored.
	if resp.StatusCode != 200 {
		t.Fatalf("redeeming the stored refresh token: %d", resp.StatusCode)
	}
}

func TestRenewalFailureIsLoggedOnceAndCachedReadsGoOn(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t, seeded("Failing renewals"), func(c *emulator.Config) { c.TokenTTL = 3 * time.Second })
	info := emu.Info()
	home := t.TempDir()
	env := emuEnv(home, info)
	login(t, bin, env, home)
	mnt := filepath.Join(home, "mnt")
	watchdog(t, 3*time.Minute, mnt)
	_, logs := startMount(t, bin, env, mnt, "mount", "--workspace", info.WorkspaceID, "--listing-ttl", "1s")
	if err := sameAsSeed(mnt, "README.txt"); err != nil {
		t.Fatal(err)
	}
	// Spend the mount's refresh token behind its back: its next renewal fails.
	path := filepath.Join(home, "config", "evofs", "login.json")
	var l storedLogin
	b, _ := os.ReadFile(path)
	json.Unmarshal(b, &l)
	resp, err := http.PostForm(info.TokenURL, url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {l.Token.RefreshToken}, "client_id": {info.ClientID}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("spend the refresh token: %v %v", resp, err)
	}
	resp.Body.Close()
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		if err := sameAsSeed(mnt, "README.txt"); err != nil {
			t.Fatalf("a cached read failed while renewals fail: %v", err)
		}
		os.ReadDir(mnt)
	}
	if n := strings.Count(logs.String(), "cannot renew the access token"); n != 1 {
		t.Fatalf("the renewal failure was logged %d times, want once:\n%s", n, logs.String())
	}
	// A refused refresh is final: no call retries it in a loop.
	if n := emu.Stats().APICount(emulator.OpToken, 400); n > 20 {
		t.Errorf("%d refused refreshes in 12 s: a refused refresh is retried", n)
	}
}

func TestFstabMountAllThenUmount(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t, seeded("Fstab drive"))
	info := emu.Info()
	home := t.TempDir()
	tok := writeToken(t, home, info.Token)
	mnt := filepath.Join(home, "drive")
	os.MkdirAll(mnt, 0o755)
	watchdog(t, 3*time.Minute, mnt)

	// mount(8) finds the helper as /sbin/mount.fuse.evofs.
	helper := "/sbin/mount.fuse.evofs"
	if target, err := os.Readlink(helper); err == nil && strings.Contains(target, "evofs-bin-") {
		os.Remove(helper) // left by an earlier, killed run
	}
	if err := os.Symlink(bin, helper); err != nil {
		t.Fatalf("install the mount helper: %v", err)
	}
	t.Cleanup(func() { os.Remove(helper) })

	logFile := filepath.Join(home, "evofs.log")
	collectLogFile(logFile)
	opts := strings.Join([]string{"hub=" + info.HubURL, "org=" + info.OrgID, "token_file=" + tok,
		"cache_dir=" + filepath.Join(home, "cache"), "log_file=" + logFile, "log_level=debug", "_netdev", "ro",
		// Options the helper once refused: every mount flag is one.
		"write_back=async", "kernel_read_ahead=512KiB", "local_only=*.tmp", "stage_ahead=false", "unmount_wait=1m", "passthrough"}, ",")
	fstab := filepath.Join(home, "fstab")
	line := fmt.Sprintf("Fstab\\040drive %s fuse.evofs %s 0 0\n", mnt, opts)
	os.WriteFile(fstab, []byte("# test fstab\n"+line), 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "mount", "-a", "-T", fstab).CombinedOutput(); err != nil {
		b, _ := os.ReadFile(logFile)
		t.Fatalf("mount -a: %v\n%s\nlog:\n%s", err, out, b)
	}
	t.Cleanup(func() {
		if mounted(mnt) {
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	if !mounted(mnt) {
		t.Fatal("mount -a returned but nothing is mounted")
	}
	if err := sameAsSeed(mnt, "README.txt"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "x"), nil, 0o644); err == nil {
		t.Error("the ro option did not make the mount read-only")
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if !regexp.MustCompile(`(?m)` + regexp.QuoteMeta(mnt) + `\s.*fuse\.evofs`).Match(mi) {
		t.Errorf("mountinfo does not show %s as fuse.evofs", mnt)
	}
	if out, err := exec.CommandContext(ctx, "umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v\n%s", err, out)
	}
	if mounted(mnt) {
		t.Fatal("still mounted after umount")
	}
	// The background process notices and exits.
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(logFile)
		if bytes.Contains(b, []byte("msg=unmounted")) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the background evofs did not log its end:\n%s", b)
		}
	}
}

func TestMetricsScrapeShowsCountersMoving(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t, seeded("Metrics"))
	info := emu.Info()
	home := t.TempDir()
	env := emuEnv(home, info)
	tok := writeToken(t, home, info.Token)
	mnt := filepath.Join(home, "mnt")
	watchdog(t, 3*time.Minute, mnt)
	// Neither hub nor organisation: discovery knows exactly one.
	_, logs := startMount(t, bin, env, mnt, "mount", "--workspace", "Metrics", "--token-file", tok,
		"--metrics-addr", "127.0.0.1:0", "--log-format", "json")
	m := regexp.MustCompile(`"url":"(http://127\.0\.0\.1:\d+/metrics)"`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no metrics URL in the log:\n%s", logs.String())
	}
	first := scrape(t, m[1])
	if err := sameAsSeed(mnt, "README.txt"); err != nil {
		t.Fatal(err)
	}
	if err := sameAsSeed(mnt, "README.txt"); err != nil { // now from the cache
		t.Fatal(err)
	}
	second := scrape(t, m[1])
	// The listing is made before the mount answers (it is the first
	// snapshot, and it proves the token): counted at the first scrape.
	if n := first[`evofs_api_requests_total{call="list_files",status="200"}`]; n < 1 {
		t.Errorf(`evofs_api_requests_total{call="list_files",status="200"} at start: %v, want the start-up listing`, n)
	}
	for _, name := range []string{
		`evofs_api_requests_total{call="get_file",status="200"}`,
		`evofs_api_request_duration_seconds_count{call="get_file"}`,
		`evofs_blob_bytes_total{direction="down"}`,
		`evofs_cache_misses_total`,
		`evofs_cache_bytes`,
	} {
		if second[name] <= first[name] {
			t.Errorf("%s: %v then %v, want it to grow", name, first[name], second[name])
		}
	}
	if second[`evofs_api_requests_total{call="discovery",status="200"}`] != 1 {
		t.Errorf("discovery calls: %v", second[`evofs_api_requests_total{call="discovery",status="200"}`])
	}
	for _, name := range []string{`evofs_uploads_pending`, `evofs_blob_bytes_total{direction="up"}`, `evofs_cache_hits_total`} {
		if _, ok := second[name]; !ok {
			t.Errorf("no %s in the scrape", name)
		}
	}
}

// scrape reads a Prometheus text exposition into series -> value.
func scrape(t *testing.T, u string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %s", resp.StatusCode, b)
	}
	if secretInLogs.Match(b) {
		t.Errorf("a secret in the metrics:\n%s", b)
	}
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape line %q: %v", l, errors.Unwrap(err))
		}
		out[l[:i]] = v
	}
	return out
}
