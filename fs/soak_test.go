package fs_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
)

// runErr is run for goroutines other than the test's: it returns the error
// instead of failing the test. Like run, the command changes to dir only
// after exec.
func runErr(dir string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `cd "$0" && exec "$@"`, dir, name}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out.String(), nil
}

// errs collects the errors of many goroutines.
type errs struct {
	mu  sync.Mutex
	all []error
}

func (e *errs) add(err error) {
	if err != nil {
		e.mu.Lock()
		e.all = append(e.all, err)
		e.mu.Unlock()
	}
}

func (e *errs) check(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, err := range e.all {
		if i == 10 {
			t.Errorf("... and %d more", len(e.all)-10)
			break
		}
		t.Error(err)
	}
	if len(e.all) > 0 {
		t.FailNow()
	}
}

// waitAll waits for wg, failing the test with every goroutine's stack if
// it takes longer than limit (a hang, not a slow run).
func waitAll(t *testing.T, wg *sync.WaitGroup, limit time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("watchdog: still running after %s; goroutines:\n%s", limit, buf[:n])
	}
}

func shaOut(out string) string { f := strings.Fields(out); return append(f, "")[0] }

// TestConcurrentReadersWritersAndListing: 8 readers of one file, 4
// writers of different files and `ls -R` at once, all finished within a
// watchdog's limit, every byte as it should be.
func TestConcurrentReadersWritersAndListing(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	shared := randomBytes(81, 20<<20+123)
	upload(t, m.Client, m.Blobs, "shared/big.bin", bytes.NewReader(shared), int64(len(shared)))
	for i := range 20 {
		b := randomBytes(uint64(200+i), 10<<10)
		upload(t, m.Client, m.Blobs, fmt.Sprintf("tree/d%d/f%02d.txt", i%4, i), bytes.NewReader(b), int64(len(b)))
	}
	src := t.TempDir()
	type wfile struct {
		path string
		data []byte
	}
	var written []wfile
	for w := range 4 {
		for j := range 3 {
			b := randomBytes(uint64(300+10*w+j), 1<<20*(j+1)+w)
			name := fmt.Sprintf("w%d-%d.bin", w, j)
			os.WriteFile(filepath.Join(src, name), b, 0o644)
			written = append(written, wfile{fmt.Sprintf("out/w%d/%s", w, name), b})
		}
	}
	run(t, m.Dir, "mkdir", "-p", "out/w0", "out/w1", "out/w2", "out/w3")

	var wg sync.WaitGroup
	var bad errs
	start := time.Now()
	for r := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2 {
				out, err := runErr(m.Dir, "sha256sum", "shared/big.bin")
				if err == nil && shaOut(out) != sum(shared) {
					err = fmt.Errorf("reader %d: shared/big.bin reads other bytes", r)
				}
				bad.add(err)
			}
		}()
	}
	writersDone := make(chan struct{})
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for j := range 3 {
				_, err := runErr(src, "cp", fmt.Sprintf("w%d-%d.bin", w, j), filepath.Join(m.Dir, fmt.Sprintf("out/w%d/", w)))
				bad.add(err)
			}
		}()
	}
	go func() { writers.Wait(); close(writersDone) }()
	wg.Add(1)
	lsRuns := 0
	go func() {
		defer wg.Done()
		for {
			out, err := runErr(m.Dir, "ls", "-R", ".")
			bad.add(err)
			if err == nil && (!strings.Contains(out, "f19.txt") || !strings.Contains(out, "big.bin")) {
				bad.add(fmt.Errorf("ls -R misses files:\n%s", out))
			}
			lsRuns++
			select {
			case <-writersDone:
				return
			default:
			}
		}
	}()
	wg.Add(1)
	go func() { defer wg.Done(); <-writersDone }()
	waitAll(t, &wg, 2*time.Minute)
	t.Logf("all done in %s (%d ls -R runs)", time.Since(start).Round(time.Millisecond), lsRuns)
	bad.check(t)
	for _, w := range written {
		if _, b := remoteFile(t, m, w.path); sum(b) != sum(w.data) {
			t.Errorf("%s: remote has %d bytes, want %d, sha differs", w.path, len(b), len(w.data))
		}
		if sha256File(t, filepath.Join(m.Dir, w.path)) != sum(w.data) {
			t.Errorf("%s reads other bytes through the mount", w.path)
		}
	}
}

// TestFaultSoakCopiesInAndOut: with 10% faults on API and blob requests and
// 20 ms latency on each, 4 workers copy 40 files in (cp to the mount) and
// 28 out (cp from the mount) at once: nothing lost, nothing corrupt, the
// faults struck and were retried. It is the small, in-process companion of
// cmd/evofs TestFaultSoakCopiesThreeHundredFilesEachWay (the real binary,
// 300 files each way, retries in its metrics): here the file system itself
// runs under the race detector.
func TestFaultSoakCopiesInAndOut(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	const workers, ins, outs = 4, 40, 28
	size := func(i int) int {
		if i%12 == 5 {
			return 9<<20 + i // more than a block: staged blocks and a block list
		}
		return (i*37%17 + 1) * 23 << 10
	}
	outData := make([][]byte, outs)
	for i := range outs {
		outData[i] = randomBytes(uint64(5000+i), size(i))
		upload(t, m.Client, m.Blobs, fmt.Sprintf("soak/out/o%02d.bin", i), bytes.NewReader(outData[i]), int64(len(outData[i])))
	}
	src, dst := t.TempDir(), t.TempDir()
	inData := make([][]byte, ins)
	for i := range ins {
		inData[i] = randomBytes(uint64(6000+i), size(i+1))
		os.WriteFile(filepath.Join(src, fmt.Sprintf("i%02d.bin", i)), inData[i], 0o644)
	}
	run(t, m.Dir, "mkdir", "-p", "soak/in")
	if _, err := os.Stat(filepath.Join(m.Dir, "soak/out/o00.bin")); err != nil { // the listing, before the faults
		t.Fatal(err)
	}

	emu.ResetStats()
	emu.SetFaults(0.1, 0.1)
	emu.SetLatency(20*time.Millisecond, 20*time.Millisecond)
	var wg sync.WaitGroup
	var bad errs
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < ins; i += workers {
				_, err := runErr(src, "cp", fmt.Sprintf("i%02d.bin", i), filepath.Join(m.Dir, "soak/in/"))
				bad.add(err)
				if i < outs {
					name := fmt.Sprintf("o%02d.bin", i)
					_, err := runErr(m.Dir, "cp", filepath.Join("soak/out", name), filepath.Join(dst, name))
					bad.add(err)
				}
			}
		}()
	}
	waitAll(t, &wg, 2*time.Minute)
	t.Logf("copies done in %s", time.Since(start).Round(time.Millisecond))
	st := emu.Stats()
	emu.SetFaults(0, 0)
	emu.SetLatency(0, 0)
	bad.check(t)
	// With ~130 requests at 10%, no fault at all has odds of about 1e-6;
	// either kind alone being spared is far likelier (0.2% for blobs).
	if st.Faults.API+st.Faults.Blob == 0 {
		t.Errorf("faults struck %d API and %d blob requests: the soak tested nothing", st.Faults.API, st.Faults.Blob)
	}
	apiCalls := 0
	for _, byStatus := range st.API {
		for _, n := range byStatus {
			apiCalls += int(n)
		}
	}
	t.Logf("faults: %d API of %d, %d blob; upserts %d, put blob %v, put block %v", st.Faults.API, apiCalls, st.Faults.Blob,
		st.APICalls(emulator.OpUpsertFileByPath), st.Blob[emulator.BlobOpPutBlob], st.Blob[emulator.BlobOpPutBlock])
	if n := len(m.FS.Pending()); n != 0 {
		t.Errorf("%d uploads still pending after every cp returned (sync write-back)", n)
	}
	for i := range outs {
		name := fmt.Sprintf("o%02d.bin", i)
		if sha256File(t, filepath.Join(dst, name)) != sum(outData[i]) {
			t.Errorf("%s copied out with other bytes", name)
		}
	}
	for i := range ins {
		p := fmt.Sprintf("soak/in/i%02d.bin", i)
		d, b := remoteFile(t, m, p)
		if sum(b) != sum(inData[i]) {
			t.Errorf("%s: remote has %d bytes, want %d, sha differs", p, d.Size, len(inData[i]))
		}
		if sha256File(t, filepath.Join(m.Dir, p)) != sum(inData[i]) {
			t.Errorf("%s reads other bytes through the mount", p)
		}
	}
	got := strings.Fields(run(t, m.Dir, "ls", "soak/in"))
	if len(got) != ins {
		t.Errorf("soak/in lists %d files, want %d", len(got), ins)
	}
}
