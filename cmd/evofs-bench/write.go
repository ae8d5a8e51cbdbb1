package main

// The write benchmarks (issue 4), against the emulator in the same run:
//
//   - `cp` of a file into a sync-mode mount (cp returns after close, which
//     returns after the commit), as a ratio to a direct parallel upload of
//     the same bytes through an upload link (same block size and
//     concurrency as evofs);
//   - many small files copied in with API latency, files per second in
//     sync and async write-back (for async: when cp returned and when
//     the mount's status shows nothing pending);
//   - evofs's peak RSS while a large file is written and committed;
//   - gdal_translate of a GeoTIFF into a sync-mode mount until committed,
//     against the same command onto the local disk followed by a direct
//     upload of its output (gdal.go).
//
// Every committed file is checked through the API (size and sha256, or
// size and bytes for the small files), so a figure cannot come from an
// upload that did not happen.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/evofs/evofs/cache"
	evofs "github.com/evofs/evofs/fs"
	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
)

var (
	benchReads   = flag.Bool("reads", true, "run the read benchmarks")
	benchWrites  = flag.Bool("writes", true, "run the write benchmarks")
	cpSize       = flag.Int64("cp-size", gib, "bytes of the file copied into the mount with cp (0: skip)")
	smallCount   = flag.Int("small-files", 1000, "number of small files copied in, in each write-back mode (0: skip)")
	smallSize    = flag.Int("small-size", 4<<10, "bytes of each small file")
	smallLatency = flag.Duration("small-latency", 5*time.Millisecond, "API latency of the emulator while the small files are copied in")
	wrssSize     = flag.Int64("write-rss-size", 4*gib, "bytes of the file written while watching evofs's peak RSS (0: skip)")
	gdalSize     = flag.Int64("gdal-size", 400_000_000, "bytes (about) of the Float32 GeoTIFF gdal_translate writes into the mount (0: skip)")
)

// chunk is the unit of generated content: 1 MiB of pseudo-random bytes
// seeded by its index, so any part of a file is cheap to make again.
const chunk = 1 << 20

// genChunk fills p (at most chunk bytes) with chunk i of stream seed.
func genChunk(p []byte, seed, i uint64) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	binary.LittleEndian.PutUint64(key[8:], i)
	r := rand.NewChaCha8(key)
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, r.Uint64())
		p = p[8:]
	}
	for j := range p {
		p[j] = byte(r.Uint64())
	}
}

// writeGenerated writes size bytes of stream seed to w and returns their
// sha256.
func writeGenerated(w io.Writer, seed uint64, size int64) ([32]byte, error) {
	h := sha256.New()
	buf := make([]byte, chunk)
	for i, off := uint64(0), int64(0); off < size; i, off = i+1, off+chunk {
		p := buf[:min(chunk, size-off)]
		genChunk(p, seed, i)
		h.Write(p)
		if _, err := w.Write(p); err != nil {
			return [32]byte{}, err
		}
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}

// wbench is one run of the write benchmarks.
type wbench struct {
	prof             profile
	bin, work, token string
	info             emulator.Info
	emu              *emulator.Server
	client           *remote.Client
	blobs            *remote.Blobs
}

func runWrites(prof profile, evofsBin string) error {
	ctx := context.Background()
	rig, err := newRig(ctx, prof, "bench-write", "evofs-wbench-")
	if err != nil {
		return err
	}
	defer rig.close()
	work, emu, info, client := rig.work, rig.emu, rig.info, rig.client
	b := &wbench{prof: prof, bin: evofsBin, work: work, info: info, emu: emu, client: client,
		// The same blob settings as `evofs mount` (8 MiB blocks, 4 in flight).
		blobs: remote.NewBlobs(remote.BlobConfig{}),
		token: filepath.Join(work, "token")}
	if err := os.WriteFile(b.token, []byte(info.Token), 0o600); err != nil {
		return err
	}
	fmt.Printf("\nevofs write benchmark: emulator + Azurite on this machine (%d cores), evofs as a subprocess, profile %s\n",
		runtime.NumCPU(), prof)
	if *cpSize > 0 {
		if err := b.copyBig(ctx, *cpSize); err != nil {
			return fmt.Errorf("cp benchmark: %w", err)
		}
	}
	if *smallCount > 0 {
		if err := b.smallFiles(ctx, *smallCount, *smallSize, *smallLatency); err != nil {
			return fmt.Errorf("small files benchmark: %w", err)
		}
	}
	if *wrssSize > 0 {
		if err := b.writeRSS(ctx, *wrssSize); err != nil {
			return fmt.Errorf("write RSS benchmark: %w", err)
		}
	}
	if *gdalSize > 0 {
		if err := b.gdal(ctx, *gdalSize); err != nil { // gdal.go
			return fmt.Errorf("gdal_translate benchmark: %w", err)
		}
	}
	return nil
}

// copyBig times `cp` of a local file into a sync mount against a direct
// upload of the same file.
func (b *wbench) copyBig(ctx context.Context, size int64) error {
	src := filepath.Join(b.work, "big.bin")
	f, err := os.Create(src)
	if err != nil {
		return err
	}
	sum, err := writeGenerated(f, 1, size)
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		return err
	}
	defer os.Remove(src)
	// Both read the source from the page cache: it was just written.
	if f, err = os.Open(src); err != nil {
		return err
	}
	start, use0 := time.Now(), cpuNow()
	up, err := b.client.UpsertFileByPath(ctx, "direct/big.bin", "")
	if err == nil {
		err = b.blobs.Upload(ctx, b.client.UploadLink(up), f, size, remote.UploadOptions{})
	}
	direct, directUse := time.Since(start), use0.since()
	f.Close()
	if err != nil {
		return fmt.Errorf("direct upload: %w", err)
	}
	if err := b.verify(ctx, "direct/big.bin", size, sum); err != nil {
		return err
	}

	journal, err := b.journalAlone(ctx, src, size)
	if err != nil {
		return err
	}

	m, err := b.mount("sync", "cache-cp")
	if err != nil {
		return err
	}
	defer m.unmount()
	if err := os.Mkdir(filepath.Join(m.dir, "cp"), 0o755); err != nil {
		return err
	}
	cpu0 := cpuSeconds(m.pid())
	b.emu.ResetStats()
	start, use0 = time.Now(), cpuNow()
	uploading := m.watchUpload(start)
	err = command("cp", src, filepath.Join(m.dir, "cp", "big.bin"))
	viaCP, cpUse := time.Since(start), use0.since()
	cpu := cpuSeconds(m.pid()) - cpu0
	started := <-uploading
	cpBlobs := blobRequests(b.emu.Stats())
	if err != nil {
		return err
	}
	if err := m.unmount(); err != nil {
		return err
	}
	if err := b.verify(ctx, "cp/big.bin", size, sum); err != nil {
		return err
	}
	fmt.Printf("\n%-52s %10s %10s\n", fmt.Sprintf("%s file", human(size)), "time", "MB/s")
	row := func(name string, d time.Duration) {
		fmt.Printf("%-52s %10s %10.0f\n", name, d.Round(time.Millisecond), float64(size)/d.Seconds()/1e6)
	}
	row("direct upload (upsert + parallel Put Block)", direct)
	row("the journal alone: 1 MiB writes into cache.Dirty", journal)
	row("cp into the mount, sync write-back (committed)", viaCP)
	if started.at > 0 {
		row("  its writes into the journal (until the upload starts)", started.at)
		row("  its upload at close (until the commit)", viaCP-started.at)
		fmt.Printf("  evofs CPU: %.2f s writing, %.2f s uploading\n", started.cpu-cpu0, cpu0+cpu-started.cpu)
	}
	fmt.Printf("cp / direct: %.2f× the time (target ≤ 1.2); evofs CPU %.2f s/GiB; committed bytes checked (size, sha256)\n",
		viaCP.Seconds()/direct.Seconds(), cpu/(float64(size)/gib))
	cpuBudget("cp into the mount", size, direct, viaCP, directUse, cpUse, time.Duration(float64(direct)*1.2))
	fmt.Printf("  blob requests of the cp: %s\n", cpBlobs)
	return nil
}

// blobRequests sums up the blob requests of st: count and MiB of each op.
func blobRequests(st emulator.Stats) string {
	ops := make([]string, 0, len(st.Blob))
	for op := range st.Blob {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	var parts []string
	for _, op := range ops {
		parts = append(parts, fmt.Sprintf("%s %d (%.0f MiB)", op, st.Blob[op].Count, float64(st.Blob[op].Bytes)/(1<<20)))
	}
	return strings.Join(parts, ", ")
}

// journalAlone writes the file at src into a fresh cache's journal in
// 1 MiB writes, as the mount does with cp's writes, without FUSE or an
// upload: what storing the bytes costs on this machine.
func (b *wbench) journalAlone(ctx context.Context, src string, size int64) (time.Duration, error) {
	dir := filepath.Join(b.work, "cache-journal")
	defer os.RemoveAll(dir)
	c, err := cache.Open(cache.Options{Dir: dir, MaxBytes: 20 * gib, BlockSize: 4 << 20})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	d, err := c.NewDirty(cache.Record{Path: "journal.bin"}, nil)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	for off := int64(0); off < size; {
		n, err := f.ReadAt(buf, off)
		if n > 0 {
			if _, werr := d.WriteAt(ctx, buf[:n], off); werr != nil {
				return 0, fmt.Errorf("journal write at %d: %w", off, werr)
			}
			off += int64(n)
		}
		if err != nil && (!errors.Is(err, io.EOF) || off < size) {
			return 0, fmt.Errorf("read %s: %w", src, err)
		}
	}
	return time.Since(start), nil
}

// smallFiles copies n files of size bytes into a sync mount and into an
// async one, with the emulator's API latency set to lat.
func (b *wbench) smallFiles(ctx context.Context, n, size int, lat time.Duration) error {
	src := filepath.Join(b.work, "small")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(src)
	want := map[string][]byte{}
	for i := range n {
		p := make([]byte, size)
		genChunk(p, 2, uint64(i))
		name := fmt.Sprintf("f%05d.bin", i)
		want[name] = p
		if err := os.WriteFile(filepath.Join(src, name), p, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("\n%d files of %d KiB copied in (cp -r), %s API latency:\n", n, size>>10, lat)
	for _, mode := range []string{"sync", "async"} {
		m, err := b.mount(mode, "cache-small-"+mode)
		if err != nil {
			return err
		}
		before := b.emu.Stats()
		b.emu.SetLatency(lat, b.prof.latency)
		start := time.Now()
		err = command("cp", "-r", "-T", src, filepath.Join(m.dir, "small-"+mode))
		returned := time.Since(start)
		var committed time.Duration
		if err == nil {
			err = m.waitCommitted(10 * time.Minute)
			committed = time.Since(start)
		}
		b.emu.SetLatency(0, b.prof.latency)
		if err != nil {
			m.unmount()
			return err
		}
		after := b.emu.Stats()
		if err := m.unmount(); err != nil {
			return err
		}
		if err := b.verifySmall(ctx, "small-"+mode, want); err != nil {
			return err
		}
		rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
		calls := func(op string) float64 { return float64(after.APICalls(op)-before.APICalls(op)) / float64(n) }
		fmt.Printf("  %-5s cp returned after %8s: %6.0f files/s;  all committed after %8s: %6.0f files/s",
			mode, returned.Round(time.Millisecond), rate(returned), committed.Round(time.Millisecond), rate(committed))
		fmt.Printf("  (API calls a file: %.2f upsert, %.2f update, %.2f delete, %.2f list)\n",
			calls(emulator.OpUpsertFileByPath), calls(emulator.OpUpdateFile), calls(emulator.OpDeleteFile), calls(emulator.OpListFiles))
	}
	fmt.Printf("  target: ≥ 200 files/s in async mode; every file's bytes checked through the API\n")
	return nil
}

// writeRSS writes a generated file of size bytes into a sync mount (close
// returns after the commit) while sampling evofs's memory.
func (b *wbench) writeRSS(ctx context.Context, size int64) error {
	m, err := b.mount("sync", "cache-rss")
	if err != nil {
		return err
	}
	defer m.unmount()
	if err := os.Mkdir(filepath.Join(m.dir, "rss"), 0o755); err != nil {
		return err
	}
	stop := make(chan struct{})
	peakAnon := make(chan int64)
	go func() {
		var peak int64
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, procStatus(m.pid(), "RssAnon:"))
			select {
			case <-stop:
				peakAnon <- peak
				return
			case <-t.C:
			}
		}
	}()
	start := time.Now()
	f, err := os.Create(filepath.Join(m.dir, "rss", "big.bin"))
	var sum [32]byte
	var written time.Duration
	if err == nil {
		sum, err = writeGenerated(f, 3, size)
		written = time.Since(start)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	d := time.Since(start)
	close(stop)
	anon := <-peakAnon
	hwm := procStatus(m.pid(), "VmHWM:")
	if err != nil {
		return err
	}
	if err := m.unmount(); err != nil {
		return err
	}
	if err := b.verify(ctx, "rss/big.bin", size, sum); err != nil {
		return err
	}
	fmt.Printf("\nevofs writing %s (sync, until committed: %s, %.0f MB/s; of which writes %s, close %s): peak anonymous RSS %s (target ≤ 200 MiB); VmHWM %s (with file-backed pages)\n",
		human(size), d.Round(time.Millisecond), float64(size)/d.Seconds()/1e6, written.Round(time.Millisecond),
		(d - written).Round(time.Millisecond), human(anon), human(hwm))
	return nil
}

// verify checks the size and sha256 of the latest version at p through
// the API and a download link.
func (b *wbench) verify(ctx context.Context, p string, size int64, sum [32]byte) error {
	d, err := b.client.GetFileByPath(ctx, p, remote.GetOptions{})
	if err != nil {
		return fmt.Errorf("verify %s: %w", p, err)
	}
	if d.Size != size {
		return fmt.Errorf("verify %s: committed %d bytes, want %d", p, d.Size, size)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.NewSectionReader(linkReader{ctx, b.blobs, remote.DownloadLink(b.client, d)}, 0, size),
		make([]byte, 8<<20))
	if err != nil {
		return fmt.Errorf("verify %s: download: %w", p, err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), sum[:]) {
		return fmt.Errorf("verify %s: the committed bytes differ from those written (%d bytes read)", p, n)
	}
	return nil
}

// verifySmall checks that folder dir holds exactly the files of want,
// with their bytes.
func (b *wbench) verifySmall(ctx context.Context, dir string, want map[string][]byte) error {
	all, err := b.client.ListAll(ctx, remote.ListOptions{})
	if err != nil {
		return err
	}
	var ids []remote.ListFile
	for _, f := range all {
		if f.Path == "/"+dir+"/" {
			ids = append(ids, f)
		}
	}
	if len(ids) != len(want) {
		return fmt.Errorf("verify %s: %d files committed, want %d", dir, len(ids), len(want))
	}
	var g errgroup.Group
	g.SetLimit(8)
	var mu sync.Mutex
	seen := map[string]bool{}
	for _, f := range ids {
		g.Go(func() error {
			p := want[f.Name]
			if p == nil || f.Size != int64(len(p)) {
				return fmt.Errorf("verify %s: unexpected %s (%d bytes)", dir, f.Name, f.Size)
			}
			buf := make([]byte, len(p))
			if _, err := b.client.Download(ctx, b.blobs, f.FileID, bufWriter(buf)); err != nil {
				return err
			}
			if !bytes.Equal(buf, p) {
				return fmt.Errorf("verify %s: %s has other bytes than were written", dir, f.Name)
			}
			mu.Lock()
			seen[f.Name] = true
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if len(seen) != len(want) {
		return fmt.Errorf("verify %s: %d distinct files, want %d", dir, len(seen), len(want))
	}
	return nil
}

type linkReader struct {
	ctx context.Context
	b   *remote.Blobs
	l   *remote.Link
}

func (r linkReader) ReadAt(p []byte, off int64) (int, error) { return r.b.ReadAt(r.ctx, r.l, p, off) }

type bufWriter []byte

func (w bufWriter) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(w)) {
		return 0, io.ErrShortWrite
	}
	return copy(w[off:], p), nil
}

// wmount is a running `evofs mount`.
type wmount struct {
	dir  string
	cmd  *exec.Cmd
	done bool
}

func (m *wmount) pid() int { return m.cmd.Process.Pid }

// mount starts evofs over a fresh cache dir with the given write-back mode.
func (b *wbench) mount(mode, cache string) (*wmount, error) {
	dir := filepath.Join(b.work, "mnt")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command(b.bin, "mount", "--hub", b.info.HubURL, "--org", b.info.OrgID, "--workspace", b.info.WorkspaceID,
		"--token-file", b.token, "--cache-dir", filepath.Join(b.work, cache), "--cache-size", "20GiB",
		"--log-level", "warn", "--write-back", mode, dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &wmount{dir: dir, cmd: cmd}
	if err := waitMounted(dir, 30*time.Second); err != nil {
		m.unmount()
		return nil, err
	}
	return m, nil
}

// unmount stops evofs (SIGTERM: it unmounts, finishing uploads in sync
// mode) and reports how it ended.
func (m *wmount) unmount() error {
	if m.done {
		return nil
	}
	m.done = true
	m.cmd.Process.Signal(syscall.SIGTERM)
	if err := m.cmd.Wait(); err != nil {
		return fmt.Errorf("evofs mount: %w", err)
	}
	return nil
}

// status reads the mount's pending uploads (what `evofs status --json` prints).
func (m *wmount) status() ([]evofs.PendingUpload, error) {
	buf := make([]byte, 1<<16)
	n, err := unix.Getxattr(m.dir, evofs.StatusXattr, buf)
	for errors.Is(err, unix.ERANGE) {
		buf = make([]byte, 2*len(buf))
		n, err = unix.Getxattr(m.dir, evofs.StatusXattr, buf)
	}
	if err != nil {
		return nil, fmt.Errorf("evofs status: %w", err)
	}
	var st struct {
		Pending []evofs.PendingUpload `json:"pending"`
	}
	if err := json.Unmarshal(buf[:n], &st); err != nil {
		return nil, fmt.Errorf("evofs status: %w", err)
	}
	return st.Pending, nil
}

// uploadStart is when an upload started: how long after the start of the
// copy, and evofs's CPU seconds then.
type uploadStart struct {
	at  time.Duration
	cpu float64
}

// watchUpload polls the status until an upload starts (at 0 if none was
// seen within 10 minutes).
func (m *wmount) watchUpload(start time.Time) <-chan uploadStart {
	out := make(chan uploadStart, 1)
	go func() {
		for time.Since(start) < 10*time.Minute {
			st, err := m.status()
			if err != nil {
				break
			}
			for _, p := range st {
				if p.Uploading {
					out <- uploadStart{time.Since(start), cpuSeconds(m.pid())}
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		out <- uploadStart{}
	}()
	return out
}

// waitCommitted polls the mount's status (what `evofs status --json`
// prints) until no upload is pending.
func (m *wmount) waitCommitted(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		pending, err := m.status()
		n := len(pending)
		switch {
		case errors.Is(err, unix.E2BIG):
			// The status outgrew what an extended attribute can hold
			// (64 KiB, some hundreds of pending uploads): still pending.
			n = -1
		case err != nil:
			return err
		case n == 0:
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("uploads still pending after %s (%d listed; -1: too many to list)", limit, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func command(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
