package remote_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// Contract tests: the client against the emulator, bytes in real Azurite.
// Assertions read the emulator's counters, not log lines.

func emuClient(t *testing.T, emu *emulator.Server, src oauth2.TokenSource) *remote.Client {
	t.Helper()
	info := emu.Info()
	if src == nil {
		src = remote.StaticToken(info.Token)
	}
	c, err := remote.New(remote.Config{HubURL: info.HubURL, OrgID: info.OrgID, WorkspaceID: info.WorkspaceID, Tokens: src,
		Retry: remote.RetryPolicy{Base: 20 * time.Millisecond, Max: 500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writerAt collects a download.
type writerAt struct{ b []byte }

func (w *writerAt) WriteAt(p []byte, off int64) (int, error) {
	copy(w.b[off:], p)
	return len(p), nil
}

func download(t *testing.T, c *remote.Client, b *remote.Blobs, fileID string) ([]byte, *remote.DownloadFileResponse) {
	t.Helper()
	d, err := c.GetFile(context.Background(), fileID, remote.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := &writerAt{b: make([]byte, d.Size)}
	if err := b.Download(context.Background(), remote.DownloadLink(c, d), w, d.Size); err != nil {
		t.Fatalf("download %s: %v", d.FullPath(), err)
	}
	return w.b, d
}

func TestContractEveryCall(t *testing.T) {
	ctx := context.Background()
	emu := emutest.Start(t)
	c := emuClient(t, emu, nil)
	b := remote.NewBlobs(remote.BlobConfig{})

	v1 := []byte("first version")
	up1, err := c.UploadPath(ctx, b, "A/B/new file.txt", bytes.NewReader(v1), int64(len(v1)), remote.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byPath, err := c.GetFileByPath(ctx, "A/B/new file.txt", remote.GetOptions{})
	if err != nil || byPath.FileID != up1.FileID || byPath.VersionID != up1.VersionID || byPath.Size != int64(len(v1)) ||
		byPath.Path != "/A/B/" || byPath.Name != "new file.txt" || byPath.Download == "" {
		t.Fatalf("get by path: %+v, %v", byPath, err)
	}

	// Update by id makes a second version; the first stays readable by id.
	v2 := []byte("second, longer version")
	up2, err := c.UpdateFile(ctx, up1.FileID, "")
	if err != nil || up2.FileID != up1.FileID || up2.VersionID == up1.VersionID {
		t.Fatalf("update: %+v, %v", up2, err)
	}
	// Before the blob is committed, readers get the previous version.
	if d, _ := c.GetFile(ctx, up1.FileID, remote.GetOptions{}); d.VersionID != up1.VersionID {
		t.Fatalf("uncommitted version %s is already the latest", up2.VersionID)
	}
	if err := b.Upload(ctx, c.UploadLink(up2), bytes.NewReader(v2), int64(len(v2)), remote.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	got, d := download(t, c, b, up1.FileID)
	if !bytes.Equal(got, v2) || d.VersionID != up2.VersionID {
		t.Fatalf("latest is %q (version %s)", got, d.VersionID)
	}
	old, err := c.GetFile(ctx, up1.FileID, remote.GetOptions{VersionID: up1.VersionID, IncludeVersions: true})
	if err != nil || old.VersionID != up1.VersionID || old.Size != int64(len(v1)) || len(old.Versions) != 2 {
		t.Fatalf("get version 1 with versions: %+v, %v", old, err)
	}

	// Listing with filters.
	other := []byte("x")
	if _, err := c.UploadPath(ctx, b, "C/other.csv", bytes.NewReader(other), 1, remote.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	page, err := c.ListFiles(ctx, remote.ListOptions{FileName: "NEW FILE"})
	if err != nil || page.Total != 1 || len(page.Files) != 1 || page.Files[0].FileID != up1.FileID || page.Files[0].FullPath() != "A/B/new file.txt" {
		t.Fatalf("list file_name: %+v, %v", page, err)
	}
	page, err = c.ListFiles(ctx, remote.ListOptions{OrderBy: "desc:name", ModifiedAt: []string{"gte:2000-01-01T00:00:00Z"}})
	if err != nil || page.Total != 2 || page.Files[0].Name != "other.csv" {
		t.Fatalf("list order_by desc:name: %+v, %v", page, err)
	}

	// Delete by id, list deleted, restore in place (204).
	if err := c.DeleteFile(ctx, up1.FileID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetFile(ctx, up1.FileID, remote.GetOptions{}); !errors.Is(err, remote.ErrGone) {
		t.Fatalf("get deleted: %v", err)
	}
	if d, err := c.GetFile(ctx, up1.FileID, remote.GetOptions{Deleted: true}); err != nil || d.DeletedAt == nil {
		t.Fatalf("get deleted with deleted=true: %+v, %v", d, err)
	}
	del, err := c.ListFiles(ctx, remote.ListOptions{Deleted: true})
	if err != nil || del.Total != 1 || del.Files[0].FileID != up1.FileID {
		t.Fatalf("list deleted: %+v, %v", del, err)
	}
	r, err := c.RestoreFile(ctx, up1.FileID)
	if err != nil || r.Moved {
		t.Fatalf("restore: %+v, %v", r, err)
	}
	if got, _ := download(t, c, b, up1.FileID); !bytes.Equal(got, v2) {
		t.Fatalf("restored content %q", got)
	}

	// Delete by path; another file takes the path; restore moves (303).
	if err := c.DeleteFileByPath(ctx, "A/B/new file.txt"); err != nil {
		t.Fatal(err)
	}
	taker, err := c.UploadPath(ctx, b, "A/B/new file.txt", bytes.NewReader(other), 1, remote.UploadOptions{})
	if err != nil || taker.FileID == up1.FileID {
		t.Fatalf("new file at the old path: %+v, %v", taker, err)
	}
	r, err = c.RestoreFile(ctx, up1.FileID)
	if err != nil || !r.Moved || r.File.FileID != up1.FileID || r.File.FullPath() == "A/B/new file.txt" {
		t.Fatalf("restore over a taken path: %+v, %v", r, err)
	}
	s := emu.Stats()
	for _, op := range []string{emulator.OpListFiles, emulator.OpGetFile, emulator.OpGetFileByPath, emulator.OpUpsertFileByPath,
		emulator.OpUpdateFile, emulator.OpRestoreFile, emulator.OpDeleteFile, emulator.OpDeleteFileByPath} {
		if s.APICalls(op) == 0 {
			t.Errorf("no %s call was made", op)
		}
	}
	if s.APICount(emulator.OpRestoreFile, 204) != 1 || s.APICount(emulator.OpRestoreFile, 303) != 1 {
		t.Errorf("restore statuses: %v", s.API[emulator.OpRestoreFile])
	}
}

func TestContractErrorCodes(t *testing.T) {
	ctx := context.Background()
	emu := emutest.Start(t)
	c := emuClient(t, emu, nil)
	b := remote.NewBlobs(remote.BlobConfig{})
	one := []byte("1")
	up, err := c.UploadPath(ctx, b, "dir/file.txt", bytes.NewReader(one), 1, remote.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := c.UploadPath(ctx, b, "gone.txt", bytes.NewReader(one), 1, remote.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteFile(ctx, gone.FileID); err != nil {
		t.Fatal(err)
	}
	viewer := emuClient(t, emu, remote.StaticToken(emu.Info().ViewerToken))
	bogus := emuClient(t, emu, remote.StaticToken("not-a-token"))
	missingID := "6f1c1a52-0000-4000-8000-000000000000"

	cases := []struct {
		name string
		call func() error
		is   error
		code string
	}{
		{"bad-request", func() error { _, err := c.RestoreFile(ctx, up.FileID); return err }, remote.ErrInvalid, remote.CodeBadRequest},
		{"invalid-path", func() error {
			_, err := c.GetFileByPath(ctx, "dir/bad\x01name", remote.GetOptions{})
			return err
		}, remote.ErrInvalid, remote.CodeInvalidPath},
		{"no-upload-in-progress", func() error { _, err := c.UpdateFile(ctx, up.FileID, up.VersionID); return err }, remote.ErrNoUploadInProgress, remote.CodeNoUploadInProgress},
		{"invalid-token", func() error { _, err := bogus.ListFiles(ctx, remote.ListOptions{}); return err }, remote.ErrUnauthorized, remote.CodeInvalidToken},
		{"insufficient-role", func() error { _, err := viewer.UpsertFileByPath(ctx, "v.txt", ""); return err }, remote.ErrForbidden, remote.CodeInsufficientRole},
		{"viewer delete", func() error { return viewer.DeleteFile(ctx, up.FileID) }, remote.ErrForbidden, remote.CodeInsufficientRole},
		{"not-found", func() error { _, err := c.GetFile(ctx, missingID, remote.GetOptions{}); return err }, remote.ErrNotFound, remote.CodeNotFound},
		{"not-found version", func() error {
			_, err := c.GetFile(ctx, up.FileID, remote.GetOptions{VersionID: "12345"})
			return err
		}, remote.ErrNotFound, remote.CodeNotFound},
		{"already-exists", func() error { _, err := c.UpsertFileByPath(ctx, "dir", ""); return err }, remote.ErrAlreadyExists, remote.CodeAlreadyExists},
		{"gone", func() error { _, err := c.UpdateFile(ctx, gone.FileID, ""); return err }, remote.ErrGone, remote.CodeGone},
		{"validation", func() error { _, err := c.GetFile(ctx, "not-a-uuid", remote.GetOptions{}); return err }, remote.ErrInvalid, remote.CodeValidation},
		{"validation limit", func() error { _, err := c.ListFiles(ctx, remote.ListOptions{Limit: 5001}); return err }, remote.ErrInvalid, remote.CodeValidation},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.is) || remote.ErrorCode(err) != tc.code {
				t.Fatalf("got %v (code %q), want %v with code %s", err, remote.ErrorCode(err), tc.is, tc.code)
			}
		})
	}
	var e *remote.Error
	_, err = viewer.UpsertFileByPath(ctx, "v.txt", "")
	if !errors.As(err, &e) || e.YourRole == "" || len(e.PermittedRoles) == 0 {
		t.Fatalf("403 without roles: %+v", e)
	}

	// missing-token: the client always sends one, so ask by hand.
	info := emu.Info()
	resp, err := http.Get(fmt.Sprintf("%s/file/v2/orgs/%s/workspaces/%s/files", info.HubURL, info.OrgID, info.WorkspaceID))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !bytes.Contains(body, []byte(remote.ProblemTypePrefix+remote.CodeMissingToken)) {
		t.Fatalf("no token: %d %s", resp.StatusCode, body)
	}

	// 500 and 502 answers (api-errors, bad-gateway, metadata/store-error)
	// and dropped connections are retried until the budget is spent.
	emu.SetFaults(1, 0)
	emu.ResetStats()
	short, _ := remote.New(remote.Config{HubURL: info.HubURL, OrgID: info.OrgID, WorkspaceID: info.WorkspaceID,
		Tokens: remote.StaticToken(info.Token), Retry: remote.RetryPolicy{MaxAttempts: 3, Base: time.Millisecond, Max: 2 * time.Millisecond}})
	_, err = short.GetFile(ctx, up.FileID, remote.GetOptions{})
	// net/http itself replays a GET whose reused connection was dropped,
	// so the service may see a few more than our 3 tries.
	if n := emu.Stats().APICalls(emulator.OpGetFile); err == nil || !strings.Contains(err.Error(), "gave up after 3 tries") || n < 3 || n > 6 {
		t.Fatalf("faulty service: err %v after %d calls, want a give-up after 3 tries", err, n)
	}
	emu.SetFaults(0, 0)
}

func TestContractListing12001Files(t *testing.T) {
	emu := emutest.Start(t, func(c *emulator.Config) { c.Synthetic = 12001 })
	c := emuClient(t, emu, nil)
	emu.ResetStats()
	files, err := c.ListAll(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, f := range files {
		ids[f.FileID] = true
	}
	if len(files) != 12001 || len(ids) != 12001 {
		t.Fatalf("%d files, %d distinct, want 12001", len(files), len(ids))
	}
	if n := emu.Stats().APICalls(emulator.OpListFiles); n != 3 {
		t.Fatalf("%d list requests, want 3", n)
	}
}

func TestContractLinkExpiresMidTransfer(t *testing.T) {
	const size = 64 << 20
	ctx := context.Background()
	emu := emutest.Start(t, func(c *emulator.Config) { c.LinkTTL = 2 * time.Second })
	c := emuClient(t, emu, nil)
	// 32 blocks of 2 MiB, 4 at a time, each request delayed 400 ms: the
	// upload outlasts its link about twice.
	b := remote.NewBlobs(remote.BlobConfig{BlockSize: 2 << 20, SingleShotMax: 2 << 20, Concurrency: 4})
	src := randomBytes(size, 9)
	emu.SetLatency(0, 400*time.Millisecond)
	emu.ResetStats()
	up, err := c.UploadPath(ctx, b, "big/upload.bin", bytes.NewReader(src), size, remote.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := emu.Stats()
	if s.Links.UploadReissued == 0 {
		t.Fatalf("no upload link was re-issued: %+v", s.Links)
	}
	if s.BlocksRestaged != 0 {
		t.Fatalf("%d blocks were sent twice", s.BlocksRestaged)
	}
	if pb := s.Blob[emulator.BlobOpPutBlock]; pb == nil || pb.Status[201] != 32 {
		t.Fatalf("put block: %+v, want 32 staged", pb)
	}

	emu.ResetStats()
	got, d := download(t, c, b, up.FileID)
	s = emu.Stats()
	if sha256.Sum256(got) != sha256.Sum256(src) || d.VersionID != up.VersionID {
		t.Fatal("downloaded bytes differ from the upload")
	}
	if s.APICalls(emulator.OpGetFile) < 2 {
		t.Fatalf("the download link was never re-issued (%d get calls)", s.APICalls(emulator.OpGetFile))
	}
	g := s.Blob[emulator.BlobOpGet]
	// The link is renewed ahead of its expiry or after a refusal (403,
	// whose error body the byte count includes); either way every range
	// was read successfully exactly once.
	if g == nil || g.Status[206] != 32 {
		t.Fatalf("blob GETs %+v: want 32 ranges, each read once", g)
	}
}

// noExpiry hides the token's expiry, so that the client learns it expired
// only from the service's 401.
type noExpiry struct{ src oauth2.TokenSource }

func (n noExpiry) Token() (*oauth2.Token, error) {
	t, err := n.src.Token()
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: t.AccessToken}, nil
}

func TestContractTokenExpiresMidRun(t *testing.T) {
	ctx := context.Background()
	emu := emutest.Start(t, func(c *emulator.Config) { c.TokenTTL = time.Second })
	info := emu.Info()
	for _, tc := range []struct {
		name string
		src  oauth2.TokenSource
	}{
		{"renewed before expiry", remote.ClientCredentials(ctx, info.TokenURL, info.ServiceClientID, info.ServiceClientSecret)},
		{"renewed after a 401", noExpiry{remote.ClientCredentials(ctx, info.TokenURL, info.ServiceClientID, info.ServiceClientSecret)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := emuClient(t, emu, tc.src)
			emu.ResetStats()
			deadline := time.Now().Add(4 * time.Second)
			for i := 0; time.Now().Before(deadline); i++ {
				if _, err := c.ListFiles(ctx, remote.ListOptions{Limit: 1}); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			s := emu.Stats()
			if s.TokensIssued < 3 {
				t.Fatalf("%d tokens issued over 4 lifetimes", s.TokensIssued)
			}
			if tc.name == "renewed after a 401" && s.APICount(emulator.OpListFiles, 401) == 0 {
				t.Fatal("the token never expired at the service")
			}
		})
	}
}

func TestContractSurvivesTenPercentFaults(t *testing.T) {
	ctx := context.Background()
	emu := emutest.Start(t)
	c := emuClient(t, emu, nil)
	b := remote.NewBlobs(remote.BlobConfig{BlockSize: 1 << 20, SingleShotMax: 1 << 20})
	emu.SetFaults(0.1, 0.1)
	emu.ResetStats()
	for i := 0; i < 12; i++ {
		size := 1 + i*(600<<10) // single shots and multi-block uploads
		src := randomBytes(size, uint64(i))
		path := fmt.Sprintf("faults/f%02d.bin", i)
		up, err := c.UploadPath(ctx, b, path, bytes.NewReader(src), int64(size), remote.UploadOptions{})
		if err != nil {
			t.Fatalf("upload %s: %v", path, err)
		}
		got, _ := download(t, c, b, up.FileID)
		if !bytes.Equal(got, src) {
			t.Fatalf("%s: downloaded bytes differ", path)
		}
		if _, err := c.ListAll(ctx, remote.ListOptions{}); err != nil {
			t.Fatalf("list: %v", err)
		}
	}
	s := emu.Stats()
	if s.Faults.API == 0 || s.Faults.Blob == 0 {
		t.Fatalf("no faults were injected: %+v", s.Faults)
	}
	t.Logf("injected %d API and %d blob faults; all operations succeeded", s.Faults.API, s.Faults.Blob)
}
