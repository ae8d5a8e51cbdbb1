package main

// Crashes, unmounts and expiries with uploads pending (issue 4): nothing a
// program was told is written may be lost. Each test mounts with the real
// binary in a child process, checks bytes through the API (never through
// the mount) and asserts the emulator's counters. Uploads are made pending
// deterministically by a gate in front of Azurite that holds blob writes
// (see blobGate), not by timing.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

func TestCrashKill9MidUploadResumesTheSameVersion(t *testing.T) {
	emu, gate := startGatedEmu(t)
	info := emu.Info()
	bin, tok, cacheDir := newEnv(t, info)
	r := newRemoteSide(t, info)
	const size, blk = 64 << 20, 8 << 20 // eight blocks
	const before = 3                    // blocks staged before the crash
	gate.Hold(before, opPutBlock)
	m := startMount(t, bin, info, tok, cacheDir, "--write-back=async")
	b := content(64, size)
	if err := os.Mkdir(filepath.Join(m.Dir, "survey"), 0o755); err != nil {
		t.Fatal(err)
	}
	if werr, cerr := writeFile(filepath.Join(m.Dir, "survey/grid.bin"), b); werr != nil || cerr != nil {
		t.Fatalf("write: %v, close: %v", werr, cerr)
	}
	// Each of the upload's parallel block writers is held with its next
	// block: the blocks before it are staged and journaled (a writer
	// journals its block before it takes the next one).
	var last mountStatus
	waitFor(t, time.Minute, func() string { return fmt.Sprintf("held %d, status %+v", gate.Held(), last.Pending) }, func() bool {
		if gate.Held() != 4 {
			return false
		}
		last = m.status()
		return len(last.Pending) == 1 && last.Pending[0].Uploading && last.Pending[0].Staged == before*blk
	})
	if got := emu.Stats().Blob[emulator.BlobOpPutBlock].Status[201]; got != before {
		t.Fatalf("%d blocks staged before the kill, want %d", got, before)
	}

	m.Kill()
	waitFor(t, 30*time.Second, func() string { return fmt.Sprintf("%d requests of the dead mount still held", gate.Held()) },
		func() bool { return gate.Held() == 0 })
	r.missing("survey/grid.bin")
	gate.Open()
	m2 := startMount(t, bin, info, tok, cacheDir, "--write-back=async")
	m2.waitDrained(2 * time.Minute)
	m2.Stop()

	d := r.checkFile("survey/grid.bin", sha(b))
	s := emu.Stats()
	if s.BlocksRestaged != 0 {
		t.Errorf("%d blocks staged twice: the resumed upload must skip the journaled ones", s.BlocksRestaged)
	}
	if got := s.Blob[emulator.BlobOpPutBlock].Status[201]; got != size/blk {
		t.Errorf("%d blocks staged in all, want %d", got, size/blk)
	}
	if s.Links.Upload != 1 || s.APICalls(emulator.OpUpsertFileByPath) != 1 {
		t.Errorf("%d versions started (%d upserts), want 1: the remount resumes version %s", s.Links.Upload, s.APICalls(emulator.OpUpsertFileByPath), d.VersionID)
	}
	if s.Links.UploadReissued < 1 {
		t.Errorf("no upload link reissued: the remount did not resume the journaled version")
	}
	if got := s.Blob[emulator.BlobOpPutBlockList].Status[201]; got != 1 {
		t.Errorf("%d commits, want 1", got)
	}
}

func TestUploadSurvivesLinkAndTokenExpiry(t *testing.T) {
	const linkTTL, tokenTTL = 4 * time.Second, 2 * time.Second
	emu := emutest.Start(t, func(c *emulator.Config) { c.LinkTTL = linkTTL })
	info := emu.Info()
	bin, tok, cacheDir := newEnv(t, info)
	r := newRemoteSide(t, info)
	// The mount's tokens live 2 s; a helper keeps the token file fresh, as
	// a login agent would, and evofs re-reads it when the service refuses
	// the one it holds.
	writeToken(t, tok, emu.IssueToken(emulator.RoleEditor, tokenTTL))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				writeToken(t, tok, emu.IssueToken(emulator.RoleEditor, tokenTTL))
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)

	const size = 256 << 20
	src := filepath.Join(t.TempDir(), "big.bin")
	b := content(256, size)
	if err := os.WriteFile(src, b, 0o644); err != nil {
		t.Fatal(err)
	}
	want := sha(b)
	b = nil
	m := startMount(t, bin, info, tok, cacheDir)
	// Half a second before each blob request: the 32 blocks, four at a
	// time, take at least 4 s, longer than an upload link lives (4 s, so
	// it is renewed after 3 s at the latest) and than two tokens live.
	emu.SetLatency(0, 500*time.Millisecond)
	t0 := time.Now()
	if out, err := exec.Command("cp", src, filepath.Join(m.Dir, "big.bin")).CombinedOutput(); err != nil {
		t.Fatalf("cp (its close is the upload): %v\n%s", err, out)
	}
	t.Logf("cp of 256 MiB, upload included: %s", time.Since(t0).Round(time.Millisecond))
	emu.SetLatency(0, 0)
	m.Stop()

	r.checkFile("big.bin", want)
	s := emu.Stats()
	if s.BlocksRestaged != 0 {
		t.Errorf("%d blocks staged twice", s.BlocksRestaged)
	}
	if s.Links.Upload != 1 || s.APICount(emulator.OpUpsertFileByPath, 200) != 1 {
		t.Errorf("%d versions started (%d upserts), want 1", s.Links.Upload, s.APICount(emulator.OpUpsertFileByPath, 200))
	}
	if s.Links.UploadReissued < 1 {
		t.Errorf("the upload link was never renewed: the upload did not outlive it")
	}
	if got := s.APICount(emulator.OpUpdateFile, 401); got < 1 {
		t.Errorf("no link renewal met an expired token (update_file: %v)", s.API[emulator.OpUpdateFile])
	}
	if b := s.Blob[emulator.BlobOpPutBlock]; b == nil || b.Status[201] != size/(8<<20) {
		t.Errorf("put block: %+v, want %d successes", b, size/(8<<20))
	}
	t.Logf("api: %v; links: %+v", s.API, s.Links)
}

func TestStatusShowsPendingUploadsThenNone(t *testing.T) {
	emu, gate := startGatedEmu(t)
	info := emu.Info()
	bin, tok, cacheDir := newEnv(t, info)
	r := newRemoteSide(t, info)
	gate.Hold(0, opPutBlob)
	gate.Hold(1, opPutBlock) // one block of big.bin goes through
	m := startMount(t, bin, info, tok, cacheDir, "--write-back=async")

	notes := content(5, 5000)
	big := content(24, 24<<20) // three blocks
	if werr, cerr := writeFile(filepath.Join(m.Dir, "notes.txt"), notes); werr != nil || cerr != nil {
		t.Fatal(werr, cerr)
	}
	if werr, cerr := writeFile(filepath.Join(m.Dir, "big.bin"), big); werr != nil || cerr != nil {
		t.Fatal(werr, cerr)
	}
	// Another program holds open.txt open, written: not this process,
	// whose children (evofs status) would close a copy of the descriptor,
	// and every close is a flush.
	closeOpen := holdOpen(t, filepath.Join(m.Dir, "open.txt"), "hello")

	var st mountStatus
	waitFor(t, time.Minute, func() string { return fmt.Sprintf("held %d, status %+v", gate.Held(), st.Pending) }, func() bool {
		if gate.Held() != 3 {
			return false
		}
		st = m.status()
		return len(st.Pending) == 3 && st.Pending[0].Staged == 8<<20
	})
	wantJSON := []struct {
		path              string
		size, staged      int64
		uploading, isOpen bool
	}{
		{"/big.bin", 24 << 20, 8 << 20, true, false},
		{"/notes.txt", 5000, 0, true, false},
		{"/open.txt", 5, 0, false, true},
	}
	if st.WriteBack != "async" {
		t.Errorf("write_back %q, want async", st.WriteBack)
	}
	for i, w := range wantJSON {
		p := st.Pending[i]
		if p.Path != w.path || p.Size != w.size || p.Staged != w.staged || p.Uploading != w.uploading || p.Open != w.isOpen || p.Failures != 0 {
			t.Errorf("status --json entry %d: %+v, want %+v", i, p, w)
		}
	}
	human := m.run("status", m.Dir)
	wantHuman := "write-back: async\n3 pending upload(s):\n" +
		"  /big.bin\t24 MiB\tuploading 8.0 MiB of 24 MiB\n" +
		"  /notes.txt\t4.9 KiB\tuploading 0 B of 4.9 KiB\n" +
		"  /open.txt\t5 B\topen\n"
	if human != wantHuman {
		t.Errorf("evofs status:\n%s\nwant:\n%s", human, wantHuman)
	}

	closeOpen()
	gate.Open()
	m.waitDrained(time.Minute)
	if got := m.run("status", m.Dir); got != "write-back: async\nno pending uploads\n" {
		t.Errorf("evofs status once drained:\n%s", got)
	}
	if raw := strings.TrimSpace(m.run("status", "--json", m.Dir)); !strings.Contains(raw, `"write_back":"async"`) {
		t.Errorf("evofs status --json once drained: %s", raw)
	}
	m.Stop()
	r.checkFile("notes.txt", sha(notes))
	r.checkFile("big.bin", sha(big))
	r.checkFile("open.txt", sha([]byte("hello")))
	if s := emu.Stats(); s.BlocksRestaged != 0 {
		t.Errorf("%d blocks staged twice", s.BlocksRestaged)
	}
}
