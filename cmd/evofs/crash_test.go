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
	"syscall"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// uploadWorkers is the uploader's parallelism (fs/uploader.go): with every
// upload held, this many are in flight and the rest queued.
const uploadWorkers = 4

func TestCrashKill9WithFiftyPendingUploadsRemountFinishesThem(t *testing.T) {
	emu, gate := startGatedEmu(t)
	info := emu.Info()
	bin, tok, cacheDir := newEnv(t, info)
	r := newRemoteSide(t, info)
	gate.Hold(0, opPutBlob, opPutBlock)
	m := startWriteMount(t, bin, info, tok, cacheDir, "--write-back=async", closeTimeUpload)

	const n = 50
	want := map[string]string{}
	if err := os.Mkdir(filepath.Join(m.Dir, "batch"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		p := fmt.Sprintf("batch/f%02d.bin", i)
		b := content(uint64(i)+1, 1+i*2011) // 1 byte to ~96 KiB
		if werr, cerr := writeFile(filepath.Join(m.Dir, p), b); werr != nil || cerr != nil {
			t.Fatalf("write %s: %v, close: %v", p, werr, cerr)
		}
		want[p] = sha(b)
	}
	// Every upload worker is stuck in the gate; the others wait their turn.
	waitFor(t, time.Minute, func() string { return fmt.Sprintf("%d uploads held", gate.Held()) },
		func() bool { return gate.Held() == uploadWorkers })
	st := m.status()
	if st.WriteBack != "async" || len(st.Pending) != n {
		t.Fatalf("status before the kill: write_back %q, %d pending, want async and %d", st.WriteBack, len(st.Pending), n)
	}
	started := emu.Stats().APICount(emulator.OpUpsertFileByPath, 200)
	if started != uploadWorkers {
		t.Fatalf("%d uploads started before the kill, want %d", started, uploadWorkers)
	}

	m.Kill()
	waitFor(t, 30*time.Second, func() string { return fmt.Sprintf("%d requests of the dead mount still held", gate.Held()) },
		func() bool { return gate.Held() == 0 })
	if p := gate.Passed(opPutBlob) + gate.Passed(opPutBlock); p != 0 {
		t.Fatalf("%d blob writes reached Azurite before the kill", p)
	}
	for p := range want {
		r.missing(p)
	}

	gate.Open()
	t0 := time.Now()
	m2 := startWriteMount(t, bin, info, tok, cacheDir, "--write-back=async", closeTimeUpload)
	m2.waitDrained(2 * time.Minute)
	t.Logf("the remount finished %d uploads in %s", n, time.Since(t0).Round(time.Millisecond))
	m2.Stop()

	paths := r.paths()
	if len(paths) != n {
		t.Errorf("%d files remotely, want %d: %v", len(paths), n, paths)
	}
	for p, sum := range want {
		if paths[p] != 1 {
			t.Errorf("%s listed %d times, want once", p, paths[p])
		}
		r.checkFile(p, sum)
	}
	s := emu.Stats()
	if got := s.APICalls(emulator.OpUpsertFileByPath); got != n {
		t.Errorf("%d upserts across both runs, want %d (one new file each)", got, n)
	}
	if got := s.Links.Upload; got != n {
		t.Errorf("%d versions started, want %d", got, n)
	}
	if got := s.Links.UploadReissued; got != started {
		t.Errorf("%d upload links reissued, want %d (the uploads the kill interrupted resume their version)", got, started)
	}
	if b := s.Blob[emulator.BlobOpPutBlob]; b == nil || b.Status[201] != n {
		t.Errorf("put blob: %+v, want %d successes", b, n)
	}
	if s.BlocksRestaged != 0 {
		t.Errorf("%d blocks staged twice", s.BlocksRestaged)
	}
}

// TestCrashKill9AtEachPhaseOfAnUpload kills the mount (SIGKILL) at each
// phase of a multi-block upload, remounts with the same cache dir and
// checks through the API that the workspace ends with the written bytes in
// exactly one version, made by exactly one commit, with no block staged
// twice. In async mode close acknowledged the content before the kill; in
// sync mode close was still waiting for the upload (nothing was
// acknowledged, close fails), and the next mount finishes the journaled
// content all the same.
func TestCrashKill9AtEachPhaseOfAnUpload(t *testing.T) {
	for _, mode := range []string{"async", "sync"} {
		for _, phase := range []string{"before-any-block", "half-staged", "all-staged", "committed-not-journaled"} {
			t.Run(mode+"/"+phase, func(t *testing.T) { testCrashAtPhase(t, mode, phase) })
		}
	}
}

func testCrashAtPhase(t *testing.T, mode, phase string) {
	emu, gate := startGatedEmu(t)
	info := emu.Info()
	bin, tok, cacheDir := newEnv(t, info)
	r := newRemoteSide(t, info)
	const blk = 8 << 20
	size, before := 3*blk+12345, 0 // four blocks, the last one short
	switch phase {
	case "before-any-block":
		gate.Hold(0, opPutBlock)
	case "half-staged":
		// Eight blocks: three staged, then each of the four block writers
		// held with its next one, the eighth not started.
		size, before = 64<<20, 3
		gate.Hold(before, opPutBlock)
	case "all-staged":
		gate.Hold(0, opPutBlockList)
	case "committed-not-journaled":
		gate.HoldAnswer(opPutBlockList)
	}
	blocks := (size + blk - 1) / blk
	m := startWriteMount(t, bin, info, tok, cacheDir, "--write-back="+mode, closeTimeUpload)
	b := content(uint64(size), size)
	const p = "survey/grid.bin"
	if err := os.Mkdir(filepath.Join(m.Dir, "survey"), 0o755); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	if mode == "async" {
		if werr, cerr := writeFile(filepath.Join(m.Dir, p), b); werr != nil || cerr != nil {
			t.Fatalf("write: %v, close: %v", werr, cerr) // acknowledged from here on
		}
	} else {
		go func() {
			werr, cerr := writeFile(filepath.Join(m.Dir, p), b)
			if werr != nil {
				cerr = fmt.Errorf("write (not close): %w", werr)
			}
			closed <- cerr
		}()
	}

	// Wait for the phase: the upload's requests held where the case says,
	// the journal (through evofs status) showing what was staged.
	held, staged := 1, int64(size) // a held Put Block List (or its answer)
	switch phase {
	case "before-any-block":
		held, staged = min(blocks, uploadWorkers), 0
	case "half-staged":
		// A block writer journals its block before it takes the next one.
		held, staged = uploadWorkers, int64(before*blk)
	}
	var last mountStatus
	waitFor(t, time.Minute, func() string { return fmt.Sprintf("held %d, status %+v", gate.Held(), last.Pending) }, func() bool {
		if gate.Held() != held {
			return false
		}
		last = m.status()
		return len(last.Pending) == 1 && last.Pending[0].Uploading && last.Pending[0].Staged == staged
	})
	s := emu.Stats()
	wantStaged := before
	if staged == int64(size) {
		wantStaged = blocks
	}
	if got := gate.Answered(opPutBlock); got != wantStaged {
		t.Fatalf("%d blocks staged before the kill, want %d", got, wantStaged)
	}
	if s.Links.Upload != 1 {
		t.Fatalf("%d versions started before the kill, want 1", s.Links.Upload)
	}
	wantCommits := 0
	if phase == "committed-not-journaled" {
		wantCommits = 1 // done by the store; the mount has not heard
	}
	if got := gate.Answered(opPutBlockList); got != wantCommits {
		t.Fatalf("%d block lists committed before the kill, want %d", got, wantCommits)
	}

	m.Kill()
	waitFor(t, 30*time.Second, func() string { return fmt.Sprintf("%d requests of the dead mount still held", gate.Held()) },
		func() bool { return gate.Held() == 0 })
	if mode == "sync" {
		if err := <-closed; err == nil {
			t.Fatal("close returned 0 from a mount killed before its upload was done")
		}
	}
	if phase != "committed-not-journaled" {
		r.missing(p)
	}
	gate.Open()
	m2 := startWriteMount(t, bin, info, tok, cacheDir, "--write-back="+mode, closeTimeUpload)
	m2.waitDrained(2 * time.Minute)
	m2.Stop()
	if !strings.Contains(m2.Stderr.String(), "resuming an upload left by the last run") {
		t.Errorf("the remount did not resume the journaled upload:\n%s", m2.Stderr.String())
	}

	if got := r.paths(); len(got) != 1 || got[p] != 1 {
		t.Errorf("remote files %v, want only %s, once", got, p)
	}
	d := r.checkFile(p, sha(b)) // and exactly one version
	s = emu.Stats()
	if s.Links.Upload != 1 || s.APICalls(emulator.OpUpsertFileByPath) != 1 {
		t.Errorf("%d versions started (%d upserts), want 1: the remount resumes version %s",
			s.Links.Upload, s.APICalls(emulator.OpUpsertFileByPath), d.VersionID)
	}
	if got := gate.Answered(opPutBlockList); got != 1 {
		t.Errorf("%d block lists committed, want 1", got)
	}
	if s.BlocksRestaged != 0 {
		t.Errorf("%d blocks staged twice: the resumed upload must skip the journaled ones", s.BlocksRestaged)
	}
	if got := gate.Answered(opPutBlock); got != blocks {
		t.Errorf("%d blocks staged in all, want %d", got, blocks)
	}
	if phase == "committed-not-journaled" {
		// The remount asks for a link to its version, hears that the
		// upload is complete and clears the journal: nothing is sent.
		if got := s.APICount(emulator.OpUpdateFile, 400); got != 1 || s.Links.UploadReissued != 0 {
			t.Errorf("update_file answered 400 %d times, %d links reissued; want the remount told once that version %s is complete",
				got, s.Links.UploadReissued, d.VersionID)
		}
	} else if s.Links.UploadReissued < 1 {
		t.Errorf("no upload link reissued: the remount did not resume the journaled version")
	}
}

func TestUnmountWithUploadsPending(t *testing.T) {
	for _, mode := range []string{"sync", "async"} {
		for _, how := range []string{"umount", "SIGTERM"} {
			t.Run(mode+"/"+how, func(t *testing.T) { testUnmountPending(t, mode, how) })
		}
	}
}

func testUnmountPending(t *testing.T, mode, how string) {
	emu, gate := startGatedEmu(t)
	info := emu.Info()
	bin, tok, cacheDir := newEnv(t, info)
	r := newRemoteSide(t, info)
	extra := []string{"--write-back=" + mode, closeTimeUpload}
	if mode == "sync" && how == "SIGTERM" {
		// The closes wait on held uploads through the unmount: a service
		// that slow still answers (a stall would fail them with EIO).
		extra = append(extra, "--stall-timeout=10m")
	}
	m := startWriteMount(t, bin, info, tok, cacheDir, extra...)
	files := map[string][]byte{
		"pending/a.txt":  []byte("acknowledged, then unmounted\n"),
		"pending/b.bin":  content(2, 300<<10),
		"pending/c.bin":  content(3, 17<<20), // three blocks
		"pending/d.json": []byte(`{"d": 4}`),
	}
	// Four uploads in flight (one per worker): three single Put Blobs and
	// the three blocks of c.bin.
	const allHeld = 6
	if err := os.Mkdir(filepath.Join(m.Dir, "pending"), 0o755); err != nil {
		t.Fatal(err)
	}
	unmount := func() {
		t.Helper()
		if how == "SIGTERM" {
			m.Signal(syscall.SIGTERM)
			return
		}
		if out, err := exec.Command("umount", m.Dir).CombinedOutput(); err != nil {
			t.Fatalf("umount: %v\n%s", err, out)
		}
	}
	unmounted := func() {
		t.Helper()
		waitFor(t, time.Minute, func() string { return "unmounted" }, func() bool { return !mounted(m.Dir) })
	}

	switch {
	case mode == "async":
		// Closed (acknowledged) with every upload held.
		gate.Hold(0, opPutBlob, opPutBlock)
		for p, b := range files {
			if werr, cerr := writeFile(filepath.Join(m.Dir, p), b); werr != nil || cerr != nil {
				t.Fatalf("write %s: %v, close: %v", p, werr, cerr)
			}
		}
		waitFor(t, time.Minute, func() string { return fmt.Sprintf("%d requests held", gate.Held()) },
			func() bool { return gate.Held() == allHeld })
		if st := m.status(); len(st.Pending) != len(files) {
			t.Fatalf("%d pending before unmount, want %d", len(st.Pending), len(files))
		}
		unmount()
		m.Exit(time.Minute) // at once: async mode leaves them to the journal
		if log := m.Stderr.String(); !strings.Contains(log, fmt.Sprintf("uploads_left_in_journal=%d", len(files))) {
			t.Fatalf("the unmount log does not say %d uploads are left in the journal:\n%s", len(files), log)
		}
		waitFor(t, 30*time.Second, func() string { return "held requests released" }, func() bool { return gate.Held() == 0 })
		for p := range files {
			r.missing(p)
		}
		gate.Open()
		m2 := startWriteMount(t, bin, info, tok, cacheDir, "--write-back="+mode, closeTimeUpload)
		m2.waitDrained(2 * time.Minute)
		m2.Stop()

	case how == "SIGTERM":
		// Sync: programs are in close(), each waiting for its upload, when
		// evofs is told to stop. The mount is busy, so evofs detaches it
		// and keeps serving until the last close.
		gate.Hold(0, opPutBlob, opPutBlock)
		errs := make(chan error, len(files))
		for p, b := range files {
			go func() {
				werr, cerr := writeFile(filepath.Join(m.Dir, p), b)
				if werr == nil && cerr != nil {
					werr = fmt.Errorf("close %s: %w", p, cerr)
				}
				errs <- werr
			}()
		}
		waitFor(t, time.Minute, func() string { return fmt.Sprintf("%d uploads held", gate.Held()) },
			func() bool { return gate.Held() == allHeld })
		if st := m.status(); len(st.Pending) != len(files) {
			t.Fatalf("%d pending before unmount, want %d", len(st.Pending), len(files))
		}
		unmount()
		unmounted()
		if m.exited() {
			t.Fatalf("evofs exited with closes waiting for their uploads:\n%s", m.Stderr.String())
		}
		// The line may still be on its way through the stderr pipe.
		waitFor(t, 30*time.Second, func() string { return "the busy mount detached lazily:\n" + m.Stderr.String() },
			func() bool { return strings.Contains(m.Stderr.String(), "detaching lazily") })
		gate.Open()
		for range files {
			if err := <-errs; err != nil {
				t.Errorf("a program's write: %v", err)
			}
		}
		m.Exit(time.Minute)

	default:
		// Sync, umount: the closes failed (the store refused the blocks),
		// so evofs retries in the background; those retries are held when
		// the folder is unmounted. evofs must finish them before it exits.
		gate.Refuse(opPutBlob, opPutBlock)
		for p, b := range files {
			werr, cerr := writeFile(filepath.Join(m.Dir, p), b)
			if werr != nil || cerr == nil {
				t.Fatalf("write %s: %v, close: %v; want the upload's failure from close", p, werr, cerr)
			}
		}
		gate.Hold(0, opPutBlob, opPutBlock)
		var st mountStatus
		waitFor(t, time.Minute, func() string { return fmt.Sprintf("held %d, status %+v", gate.Held(), st.Pending) }, func() bool {
			if gate.Held() != allHeld {
				return false
			}
			st = m.status()
			return len(st.Pending) == len(files)
		})
		for _, p := range st.Pending {
			if p.Failures < 1 || p.LastError == "" {
				t.Errorf("%s: %d failures, last error %q: want the refusal recorded", p.Path, p.Failures, p.LastError)
			}
		}
		unmount()
		unmounted()
		if m.exited() {
			t.Fatalf("evofs exited with uploads pending in sync mode:\n%s", m.Stderr.String())
		}
		gate.Open()
		m.Exit(time.Minute)
	}

	if mode == "sync" {
		if log := m.Stderr.String(); !strings.Contains(log, "uploads_left_in_journal=0") {
			t.Errorf("sync mode left uploads in the journal:\n%s", log)
		}
	}
	paths := r.paths()
	for p, b := range files {
		if paths[p] != 1 {
			t.Errorf("%s listed %d times, want once", p, paths[p])
		}
		r.checkFile(p, sha(b))
	}
	s := emu.Stats()
	if got := s.APICalls(emulator.OpUpsertFileByPath); got != int64(len(files)) {
		t.Errorf("%d upserts, want %d", got, len(files))
	}
	if s.BlocksRestaged != 0 {
		t.Errorf("%d blocks staged twice", s.BlocksRestaged)
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
	replaceToken(t, tok, emu.IssueToken(emulator.RoleEditor, tokenTTL))
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
				replaceToken(t, tok, emu.IssueToken(emulator.RoleEditor, tokenTTL))
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
	m := startWriteMount(t, bin, info, tok, cacheDir)
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
	m := startWriteMount(t, bin, info, tok, cacheDir, "--write-back=async", closeTimeUpload)

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

// closeTimeUpload turns off sending blocks while a file is written: these
// tests hold and count the requests of the upload that close (or the
// background) makes. Sending ahead has tests of its own (fs: TestWriteLargeFile,
// TestUploadSurvivesLinkAndTokenExpiry here).
const closeTimeUpload = "--stage-ahead=false"
