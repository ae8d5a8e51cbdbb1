package main_test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// TestBinary builds the command, runs it against Azurite, waits for its
// info file and calls it with the info file's token.
func TestBinary(t *testing.T) {
	az := os.Getenv("EVOFS_AZURITE_URL")
	if az == "" {
		t.Fatal("EVOFS_AZURITE_URL is not set: run the tests with `make test` (or contrib/azurite/run go test ...)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "evofs-emulator")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	infoFile := filepath.Join(dir, "info.json")
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--blob-endpoint", az, "--synthetic", "7",
		"--info-file", infoFile, "--log-level", "warn", "--data-dir", filepath.Join(dir, "data"))
	// A container of its own: Azurite may be shared with other tests.
	cmd.Args = append(cmd.Args, "--container", emutest.ContainerName(), "--workspace-id", "11111111-2222-4333-8444-555555555555")
	var stdout strings.Builder
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})

	var info emulator.Info
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(infoFile)
		if err == nil && json.Unmarshal(b, &info) == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("emulator exited before writing its info file: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no info file after 30s")
		}
	}
	if info.HubURL == "" || info.Token == "" || info.WorkspaceID != "11111111-2222-4333-8444-555555555555" {
		t.Fatalf("info %+v", info)
	}

	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := hc.Get(info.StatsURL)
	if err != nil {
		t.Fatal(err)
	}
	var st emulator.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("stats: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()

	req, _ := http.NewRequest(http.MethodGet, info.HubURL+"/file/v2/orgs/"+info.OrgID+"/workspaces/"+info.WorkspaceID+"/files", nil)
	req.Header.Set("Authorization", "Bearer "+info.Token)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var l remote.ListFilesResponse
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != 200 {
		t.Fatalf("list: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if l.Total != 7 {
		t.Fatalf("listed %d files, want 7", l.Total)
	}

	// SIGTERM stops it cleanly.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("no exit 10s after SIGTERM")
	}
	if !strings.Contains(stdout.String(), info.HubURL) {
		t.Fatalf("stdout %q does not name the hub", stdout.String())
	}
}
