package remote_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// recorder is an Observer that counts.
type recorder struct {
	mu      sync.Mutex
	calls   map[string]int // "call status"
	bytes   map[string]int64
	retries map[string]int
}

func (r *recorder) APICall(call string, status int, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[call+" "+itoa(status)]++
}

func (r *recorder) BlobTransfer(op string, up bool, n int64, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bytes == nil {
		r.bytes = map[string]int64{}
	}
	r.bytes[op] += n
}

func (r *recorder) Retry(call string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.retries == nil {
		r.retries = map[string]int{}
	}
	r.retries[call]++
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestPlatformFindsOrganisationsAndWorkspacesByName(t *testing.T) {
	emu := emutest.Start(t, func(c *emulator.Config) { c.WorkspaceName = "Pit Shell" })
	info := emu.Info()
	obs := &recorder{}
	p, err := remote.NewPlatform(remote.PlatformConfig{DiscoveryURL: info.DiscoveryURL,
		Tokens: remote.StaticToken(info.Token), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	orgs, err := p.Organisations(ctx)
	if err != nil || len(orgs) != 1 || orgs[0].ID != info.OrgID || orgs[0].Hubs[0].URL != info.HubURL {
		t.Fatalf("organisations: %+v, %v", orgs, err)
	}
	for _, ref := range []string{"Pit Shell", "pit shell", info.WorkspaceID} {
		w, err := p.FindWorkspace(ctx, info.HubURL, info.OrgID, ref)
		if err != nil || w.ID != info.WorkspaceID || w.Name != "Pit Shell" {
			t.Errorf("find %q: %+v, %v", ref, w, err)
		}
	}
	if _, err := p.FindWorkspace(ctx, info.HubURL, info.OrgID, "Nope"); !errors.Is(err, remote.ErrNotFound) {
		t.Errorf("find a missing name: %v, want ErrNotFound", err)
	}
	bad, _ := remote.NewPlatform(remote.PlatformConfig{DiscoveryURL: info.DiscoveryURL, Tokens: remote.StaticToken("forged")})
	if _, err := bad.Organisations(ctx); !errors.Is(err, remote.ErrUnauthorized) || bytes.Contains([]byte(err.Error()), []byte("forged")) {
		t.Errorf("a refused token: %v", err)
	}

	// The file client and the blobs report to the observer too.
	c, err := remote.New(remote.Config{HubURL: info.HubURL, OrgID: info.OrgID, WorkspaceID: info.WorkspaceID,
		Tokens: remote.StaticToken(info.Token), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	up, err := c.UpsertFileByPath(ctx, "a/b.bin", "")
	if err != nil {
		t.Fatal(err)
	}
	blobs := remote.NewBlobs(remote.BlobConfig{Observer: obs})
	data := randomBytes(3000, 1)
	if err := blobs.Upload(ctx, remote.NewLink(up.Upload, nil), bytes.NewReader(data), int64(len(data)), remote.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ := download(t, c, blobs, up.FileID)
	if !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for _, k := range []string{"discovery 200", "list_workspaces 200", "upsert_file_by_path 200", "get_file 200"} {
		if obs.calls[k] == 0 {
			t.Errorf("no %q observed: %v", k, obs.calls)
		}
	}
	if obs.bytes["put_blob"] != 3000 || obs.bytes["get"] != 3000 {
		t.Errorf("bytes observed: %v", obs.bytes)
	}
}
