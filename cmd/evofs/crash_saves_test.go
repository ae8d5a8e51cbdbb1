package main

// Saves that lose nothing across a crash (issue 14): content committed
// before a kill -9 is not uploaded again by the next mount, neither over a
// newer version another client saved meanwhile nor as a second identical
// version.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

const (
	savesHoldEnv = "EVOFS_TEST_SAVES_HOLD"      // the path to open O_RDWR and hold
	savesTextEnv = "EVOFS_TEST_SAVES_HOLD_TEXT" // written at offset 0 and fsynced, unless empty
)

// init is holdWritten's other process when the test binary runs with
// savesHoldEnv set: open the file O_RDWR, write the text at 0 and fsync it
// (unless it is empty), say "ready", wait for stdin to end, close. The
// close's error is not reported: the mount may be dead by then.
func init() {
	p := os.Getenv(savesHoldEnv)
	if p == "" {
		return
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if text := os.Getenv(savesTextEnv); err == nil && text != "" {
		if _, err = f.WriteAt([]byte(text), 0); err == nil {
			err = f.Sync()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	f.Close()
	os.Exit(0)
}

// holdWritten has another process open path O_RDWR, write text at 0 and
// fsync it (nothing if text is ""), and keep the descriptor open until the
// returned func is called.
func holdWritten(t *testing.T, path, text string) (closeIt func()) {
	t.Helper()
	return holder(t, path, false, savesHoldEnv+"="+path, savesTextEnv+"="+text)
}

// versionCount is the number of committed versions of the file at p.
func (r *remoteSide) versionCount(p string) int {
	r.t.Helper()
	d, err := r.client.GetFileByPath(context.Background(), p, remote.GetOptions{IncludeVersions: true})
	if err != nil {
		r.t.Fatalf("get %s: %v", p, err)
	}
	return len(d.Versions)
}

// settleQuietly waits until the mount has nothing pending, then for quiet
// more seconds in which the service must see no upload call at all.
func settleQuietly(t *testing.T, m *mountProc, emu *emulator.Server, quiet time.Duration) {
	t.Helper()
	m.waitDrained(time.Minute)
	deadline := time.Now().Add(quiet)
	for time.Now().Before(deadline) {
		s := emu.Stats()
		if n := s.APICalls(emulator.OpUpdateFile) + s.APICalls(emulator.OpUpsertFileByPath); n != 0 {
			t.Errorf("the remount made %d upload calls (update %d, upsert %d): content committed before the kill went up again",
				n, s.APICalls(emulator.OpUpdateFile), s.APICalls(emulator.OpUpsertFileByPath))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSaveCrashAfterFsyncKeepsTheirVersion (sync): a process holds a file
// open, writes and fsyncs it (a committed version); another client saves a
// newer version; evofs is killed -9 with the descriptor still open, and
// remounted with the same cache. The remount uploads nothing: the latest
// version is still the other client's, no version is added, and no
// conflict copy is made (nothing was lost).
func TestSaveCrashAfterFsyncKeepsTheirVersion(t *testing.T) {
	emu := emutest.Start(t)
	info := emu.Info()
	bin, tok, cacheDir := newEnv(t, info)
	r := newRemoteSide(t, info)
	const p = "shared/plan.txt"
	base := []byte("base version\n")
	if _, err := r.client.UploadPath(context.Background(), r.blobs, p, strings.NewReader(string(base)), int64(len(base)), remote.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	m := startWriteMount(t, bin, info, tok, cacheDir, "--write-back=sync", "--listing-ttl=1s")
	closeIt := holdWritten(t, filepath.Join(m.Dir, p), "ours")
	ours := "ours version\n"
	if d, got := r.file(p); got != sha([]byte(ours)) || len(d.Versions) != 2 {
		t.Fatalf("after the fsync: %d versions, sha %s; want 2 and ours (%s)", len(d.Versions), got[:12], sha([]byte(ours))[:12])
	}
	theirs := []byte("their newer version\n")
	up, err := r.client.UploadPath(context.Background(), r.blobs, p, strings.NewReader(string(theirs)), int64(len(theirs)), remote.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}

	m.Kill()
	closeIt()
	emu.ResetStats()
	m2 := startWriteMount(t, bin, info, tok, cacheDir, "--write-back=sync", "--listing-ttl=1s")
	settleQuietly(t, m2, emu, 4*time.Second)
	m2.Stop()

	d, got := r.file(p)
	if got != sha(theirs) || d.VersionID != up.VersionID {
		t.Errorf("%s after the remount: version %s (sha %s), want theirs, %s", p, d.VersionID, got[:12], up.VersionID)
	}
	if len(d.Versions) != 3 {
		t.Errorf("%s: %d versions, want 3 (base, ours, theirs)", p, len(d.Versions))
	}
	if paths := r.paths(); len(paths) != 1 || paths[p] != 1 {
		t.Errorf("remote files %v, want only %s", paths, p)
	}
}

// TestSaveCrashAfterAsyncCommitNoSecondVersion (async): a file written and
// closed is committed in the background; evofs is then killed -9 (with
// another descriptor of the file still open, or none) and remounted with
// the same cache. The remount uploads nothing: no second identical
// version.
func TestSaveCrashAfterAsyncCommitNoSecondVersion(t *testing.T) {
	for _, held := range []bool{false, true} {
		name := "closed"
		if held {
			name = "held-open-elsewhere"
		}
		t.Run(name, func(t *testing.T) {
			emu := emutest.Start(t)
			info := emu.Info()
			bin, tok, cacheDir := newEnv(t, info)
			r := newRemoteSide(t, info)
			const p, q = "shared/plan.txt", "shared/new.txt"
			base := "base version\n"
			if _, err := r.client.UploadPath(context.Background(), r.blobs, p, strings.NewReader(base), int64(len(base)), remote.UploadOptions{}); err != nil {
				t.Fatal(err)
			}
			m := startWriteMount(t, bin, info, tok, cacheDir, "--write-back=async")
			if held {
				holdWritten(t, filepath.Join(m.Dir, p), "")
			}
			edit, fresh := content(1, 300<<10), content(2, 5000)
			for path, b := range map[string][]byte{p: edit, q: fresh} {
				if werr, cerr := writeFile(filepath.Join(m.Dir, path), b); werr != nil || cerr != nil {
					t.Fatalf("write %s: %v, close: %v", path, werr, cerr)
				}
			}
			waitFor(t, time.Minute, func() string { return "both committed" }, func() bool {
				d1, err1 := r.client.GetFileByPath(context.Background(), p, remote.GetOptions{})
				_, err2 := r.client.GetFileByPath(context.Background(), q, remote.GetOptions{})
				return err1 == nil && err2 == nil && d1.Size == int64(len(edit))
			})
			m.waitDrained(time.Minute)
			if _, got := r.file(p); got != sha(edit) {
				t.Fatalf("%s before the kill: sha %s, want ours", p, got[:12])
			}
			n1, n2 := r.versionCount(p), r.versionCount(q)
			if n1 != 2 || n2 != 1 {
				t.Fatalf("before the kill: %s has %d versions (want 2), %s %d (want 1)", p, n1, q, n2)
			}

			m.Kill()
			emu.ResetStats()
			m2 := startWriteMount(t, bin, info, tok, cacheDir, "--write-back=async")
			settleQuietly(t, m2, emu, 4*time.Second)
			m2.Stop()

			if _, got := r.file(p); got != sha(edit) {
				t.Errorf("%s after the remount: sha %s, want ours", p, got[:12])
			}
			if n := r.versionCount(p); n != 2 {
				t.Errorf("%s: %d versions after the remount, want 2", p, n)
			}
			r.checkFile(q, sha(fresh))
			if paths := r.paths(); len(paths) != 2 {
				t.Errorf("remote files %v, want %s and %s", paths, p, q)
			}
		})
	}
}
