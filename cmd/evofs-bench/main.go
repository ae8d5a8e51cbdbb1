// Command evofs-bench measures evofs's read path against a direct azblob
// download in the same run (make bench runs it under contrib/azurite/run):
//
//   - cold sequential read of a file through the mount, as a ratio to a
//     parallel azblob download of the same blob through the same kind of link;
//   - warm read (remounted over the block cache, page cache dropped), as a
//     ratio to a go-fuse loopback mount reading the same bytes from a local file;
//   - evofs's CPU seconds per GiB, and its peak RSS while reading a larger file.
//
// evofs and the loopback server run as processes of their own, so their CPU
// and memory are theirs alone. The write benchmarks are in write.go.
//
// --profile picks the network between the clients and the blob store: local
// (the emulator's proxy as fast as it goes) or shaped (the proxy held to
// 1 Gbit/s shared by all transfers, and 20 ms before each blob request),
// the same for evofs and for the direct azblob client.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/evofs/evofs/cache"
	evofs "github.com/evofs/evofs/fs"
	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
)

const gib = 1 << 30

func main() {
	size := flag.Int64("size", gib, "bytes of the file read cold and warm")
	rssSize := flag.Int64("rss-size", 4*gib, "bytes of the file read while watching evofs's peak RSS")
	evofsBin := flag.String("evofs", "bin/evofs", "the evofs binary")
	only := flag.String("only", "", "run only the no-FUSE cache+fetch read and the direct download (\"nofuse\"), for quick iterations")
	traceFile := flag.String("trace", "", "write the cache's per-block trace of the no-FUSE read to this file")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process (client and emulator) during the no-FUSE read")
	serveLoopback := flag.String("serve-loopback", "", "internal: serve a go-fuse loopback of DIR at the mountpoint given as argument")
	profileName := flag.String("profile", "local", "network of the blob proxy: local (unshaped) or shaped (1 Gbit/s shared, 20 ms a request)")
	flag.Parse()
	if *serveLoopback != "" {
		if err := loopback(*serveLoopback, flag.Arg(0)); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *only != "" && *only != "nofuse" {
		log.Fatalf("--only %q: the only value is nofuse", *only)
	}
	prof, ok := profiles[*profileName]
	if !ok {
		log.Fatalf("--profile %q: local or shaped", *profileName)
	}
	if *benchReads {
		if err := run(prof, *size, *rssSize, *evofsBin, *only == "nofuse", *traceFile, *cpuProfile); err != nil {
			log.Fatal(err)
		}
	}
	if *benchWrites && *only == "" {
		if err := runWrites(prof, *evofsBin); err != nil { // write.go
			log.Fatal(err)
		}
	}
}

// profile is the network between every client (evofs and the direct
// azblob client alike) and the blob store: the emulator's blob proxy
// shaping (emulator.Server.SetShaping).
type profile struct {
	name      string
	bandwidth int64         // bytes/s shared by all blob transfers, 0 = unlimited
	latency   time.Duration // before each blob request
}

func (p profile) String() string {
	if p.bandwidth == 0 && p.latency == 0 {
		return p.name + " (blob proxy unshaped)"
	}
	return fmt.Sprintf("%s (blob proxy at %.0f MB/s = %.1f Gbit/s shared by all transfers, %s before each blob request)",
		p.name, float64(p.bandwidth)/1e6, float64(p.bandwidth)*8/1e9, p.latency)
}

var profiles = map[string]profile{
	"local":  {name: "local"},
	"shaped": {name: "shaped", bandwidth: 125_000_000, latency: 20 * time.Millisecond},
}

// content is size bytes of reproducible pseudo-random data, generated on the
// fly so that gigabytes need no memory.
type content struct{ size int64 }

func (c content) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), c.size-off)
	for i := int64(0); i < n; i++ {
		x := uint64(off+i) * 0x9E3779B97F4A7C15
		p[i] = byte(x >> 56)
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// benchRig is an emulator on the Azurite of EVOFS_AZURITE_URL, its blob
// proxy shaped as the profile says, a client of it, and a scratch folder.
type benchRig struct {
	work   string
	emu    *emulator.Server
	info   emulator.Info
	client *remote.Client
}

func newRig(ctx context.Context, prof profile, container, prefix string) (*benchRig, error) {
	endpoint := os.Getenv("EVOFS_AZURITE_URL")
	if endpoint == "" {
		return nil, errors.New("EVOFS_AZURITE_URL is not set: run under contrib/azurite/run (make bench does)")
	}
	work, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	emu, err := emulator.Start(ctx, emulator.Config{BlobEndpoint: endpoint, Container: container,
		BlobBandwidth: prof.bandwidth, BlobLatency: prof.latency})
	if err != nil {
		os.RemoveAll(work)
		return nil, fmt.Errorf("start emulator: %w", err)
	}
	info := emu.Info()
	client, err := remote.New(remote.Config{HubURL: info.HubURL, OrgID: info.OrgID, WorkspaceID: info.WorkspaceID,
		Tokens: remote.StaticToken(info.Token)})
	if err != nil {
		emu.Close()
		os.RemoveAll(work)
		return nil, err
	}
	return &benchRig{work: work, emu: emu, info: info, client: client}, nil
}

func (r *benchRig) close() {
	r.emu.Close()
	os.RemoveAll(r.work)
}

type discard struct{}

func (discard) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

func run(prof profile, size, rssSize int64, evofsBin string, onlyNoFUSE bool, traceFile, cpuProfile string) error {
	ctx := context.Background()
	rig, err := newRig(ctx, prof, "bench", "evofs-bench-")
	if err != nil {
		return err
	}
	defer rig.close()
	work, info, client := rig.work, rig.info, rig.client
	endpoint := os.Getenv("EVOFS_AZURITE_URL")
	blobs := remote.NewBlobs(remote.BlobConfig{})
	tokenFile := filepath.Join(work, "token")
	if err := os.WriteFile(tokenFile, []byte(info.Token), 0o600); err != nil {
		return err
	}

	fmt.Printf("evofs read benchmark: %s file, emulator + Azurite on this machine (%d cores), profile %s\n\n",
		human(size), runtime.NumCPU(), prof)
	up, err := client.UploadPath(ctx, blobs, "bench/seq.bin", content{size}, size, remote.UploadOptions{})
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}

	// Direct: a parallel azblob download of the same blob through a link.
	start, cpu0, self0, az0 := time.Now(), machineCPU(), selfCPU(), azuriteCPU(endpoint)
	if _, err := client.Download(ctx, blobs, up.FileID, discard{}); err != nil {
		return err
	}
	direct, directCPU, directSelf, directAz := time.Since(start), machineCPU()-cpu0, selfCPU()-self0, azuriteCPU(endpoint)-az0
	directUse := cpuUse{directCPU, directAz}

	// The cache and fetch path alone, without FUSE: what the mount could do.
	cpu0, self0, az0 = machineCPU(), selfCPU(), azuriteCPU(endpoint)
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	nofuse, err := readNoFUSE(ctx, client, blobs, up.FileID, size, filepath.Join(work, "cache-nofuse"), traceFile)
	if err != nil {
		return err
	}
	pprof.StopCPUProfile()
	nofuseCPU, nofuseSelf, nofuseAz := machineCPU()-cpu0, selfCPU()-self0, azuriteCPU(endpoint)-az0
	// The same path fed from memory: how fast blocks can be stored here.
	self0 = selfCPU()
	ceiling, err := readFromMemory(ctx, size, filepath.Join(work, "cache-memory"))
	if err != nil {
		return err
	}
	ceilingSelf := selfCPU() - self0
	perGiB := func(cpu float64) float64 { return cpu / (float64(size) / gib) }
	ceilingLine := func() {
		fmt.Printf("cache path fed from memory (no network; its ceiling here): %.0f MB/s = %.2f× direct, %.2f s CPU/GiB\n",
			float64(size)/ceiling.Seconds()/1e6, direct.Seconds()/ceiling.Seconds(), perGiB(ceilingSelf))
	}
	if onlyNoFUSE {
		fmt.Printf("direct %.0f MB/s, cache+fetch path alone %.0f MB/s: %.2f×\n",
			float64(size)/direct.Seconds()/1e6, float64(size)/nofuse.Seconds()/1e6, direct.Seconds()/nofuse.Seconds())
		fmt.Printf("machine CPU (all processes): direct %.2f s/GiB, cache+fetch path %.2f s/GiB\n", perGiB(directCPU), perGiB(nofuseCPU))
		fmt.Printf("  direct: bench process (client + emulator) %.2f s/GiB, Azurite %.2f s/GiB\n", perGiB(directSelf), perGiB(directAz))
		fmt.Printf("  cache+fetch path: bench process (client + emulator) %.2f s/GiB, Azurite %.2f s/GiB\n", perGiB(nofuseSelf), perGiB(nofuseAz))
		ceilingLine()
		return nil
	}

	m := mounter{bin: evofsBin, work: work, info: info, token: tokenFile, cache: filepath.Join(work, "cache")}
	use0 := cpuNow()
	cold, coldCPU, _, err := m.readThrough("bench/seq.bin", size)
	coldUse := use0.since()
	if err != nil {
		return err
	}
	warm, warmCPU, _, err := m.readThrough("bench/seq.bin", size)
	if err != nil {
		return err
	}

	// The same bytes from a local file through a go-fuse loopback mount.
	local := filepath.Join(work, "local")
	if err := writeLocal(filepath.Join(local, "seq.bin"), size); err != nil {
		return err
	}
	loop, err := readLoopback(local, filepath.Join(work, "loopmnt"), "seq.bin", size)
	if err != nil {
		return err
	}

	fmt.Printf("%-44s %10s %10s\n", "", "time", "MB/s")
	row := func(name string, d time.Duration) {
		fmt.Printf("%-44s %10s %10.0f\n", name, d.Round(time.Millisecond), float64(size)/d.Seconds()/1e6)
	}
	row("direct azblob download (parallel ranges)", direct)
	row("evofs cold sequential read", cold)
	row("  its cache+fetch path alone, no FUSE", nofuse)
	row("evofs warm read (remounted, page cache dropped)", warm)
	row("go-fuse loopback read of a local copy", loop)
	fmt.Printf("\ncold / direct:   %.2f× (target ≥ 0.95)\n", direct.Seconds()/cold.Seconds())
	fmt.Printf("warm / loopback: %.2f× (target ≥ 0.5)\n", loop.Seconds()/warm.Seconds())
	fmt.Printf("CPU per GiB, cold: direct client %.2f s (the bench process: azblob client + emulator), evofs %.2f s (its process alone)\n",
		perGiB(directSelf), perGiB(coldCPU))
	fmt.Printf("evofs CPU, warm: %.2f s/GiB (its process alone)\n", perGiB(warmCPU))
	fmt.Printf("machine CPU (all processes): direct %.2f s/GiB, cache+fetch path alone %.2f s/GiB\n", perGiB(directCPU), perGiB(nofuseCPU))
	cpuBudget("evofs cold read", size, direct, cold, directUse, coldUse, time.Duration(float64(direct)/0.95))
	ceilingLine()

	if rssSize > 0 {
		if _, err := client.UploadPath(ctx, blobs, "bench/rss.bin", content{rssSize}, rssSize, remote.UploadOptions{}); err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		m.cache = filepath.Join(work, "cache-rss")
		d, _, peak, err := m.readThrough("bench/rss.bin", rssSize)
		if err != nil {
			return err
		}
		fmt.Printf("evofs peak anonymous RSS reading %s: %s (target ≤ 200 MiB), %.0f MB/s\n", human(rssSize), human(peak),
			float64(rssSize)/d.Seconds()/1e6)
	}
	return nil
}

// readNoFUSE reads a version sequentially through cache.File in 128 KiB
// pieces, as the kernel would, with the fetcher evofs uses.
func readNoFUSE(ctx context.Context, c *remote.Client, b *remote.Blobs, fileID string, size int64, dir, traceFile string) (time.Duration, error) {
	d, err := c.GetFile(ctx, fileID, remote.GetOptions{})
	if err != nil {
		return 0, err
	}
	link := remote.DownloadLink(c, d)
	return readCache(ctx, cache.Version{FileID: d.FileID, VersionID: d.VersionID, Size: d.Size}, size, dir, traceFile,
		fetcher(func(ctx context.Context, p []byte, off int64) (int, error) {
			return b.ReadAt(evofs.TraceHTTP(ctx), link, p, off)
		}))
}

// readFromMemory reads size bytes through a fresh cache whose source
// answers at once from memory: the cache path's own ceiling on this
// machine (storing every block), with no network and no service.
func readFromMemory(ctx context.Context, size int64, dir string) (time.Duration, error) {
	pattern := make([]byte, 16<<20)
	content{int64(len(pattern))}.ReadAt(pattern, 0)
	v := cache.Version{FileID: "memory", VersionID: "1", Size: size}
	return readCache(ctx, v, size, dir, "", fetcher(func(_ context.Context, p []byte, off int64) (int, error) {
		n := 0
		for n < len(p) && off+int64(n) < size {
			k := copy(p[n:min(len(p), n+int(size-off-int64(n)))], pattern[(off+int64(n))%int64(len(pattern)):])
			n += k
		}
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}))
}

// readCache reads v sequentially through cache.File in 128 KiB pieces, as
// the kernel would, with the cache options evofs uses.
func readCache(ctx context.Context, v cache.Version, size int64, dir, traceFile string, src fetcher) (time.Duration, error) {
	var trace io.Writer
	if traceFile != "" {
		f, err := os.Create(traceFile)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		trace = f
	}
	bc, err := cache.Open(cache.Options{Dir: dir, MaxBytes: 20 * gib, BlockSize: 4 << 20, Trace: trace})
	if err != nil {
		return 0, err
	}
	defer bc.Close()
	f := bc.File(v, src, cache.FileOptions{Readahead: 32, Parallelism: 8})
	defer f.Close()
	buf := make([]byte, 128<<10)
	start := time.Now()
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.ReadAt(ctx, buf, off); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
	}
	return time.Since(start), nil
}

type fetcher func(ctx context.Context, p []byte, off int64) (int, error)

func (f fetcher) FetchAt(ctx context.Context, p []byte, off int64) (int, error) {
	return f(ctx, p, off)
}

type mounter struct {
	bin, work, token, cache string
	info                    emulator.Info
}

// readThrough mounts evofs, drops the page cache, reads path sequentially
// and unmounts; it returns the read's duration, evofs's CPU seconds during
// it, and evofs's peak RSS.
func (m mounter) readThrough(path string, size int64) (time.Duration, float64, int64, error) {
	mnt := filepath.Join(m.work, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return 0, 0, 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, 0, err
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(m.bin, "mount", "--hub", m.info.HubURL, "--org", m.info.OrgID, "--workspace", m.info.WorkspaceID,
		"--token-file", m.token, "--cache-dir", m.cache, "--cache-size", "20GiB", "--log-level", "warn",
		"--metrics-addr", metricsAddr, mnt)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	if err := waitMounted(mnt, 30*time.Second); err != nil {
		return 0, 0, 0, err
	}
	dropCaches()
	cpu0 := cpuSeconds(cmd.Process.Pid)
	stop := make(chan struct{})
	peakAnon := make(chan int64)
	go func() { // sample anonymous memory (heap, buffers) while reading
		var peak int64
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, procStatus(cmd.Process.Pid, "RssAnon:"))
			select {
			case <-stop:
				peakAnon <- peak
				return
			case <-t.C:
			}
		}
	}()
	d, err := readAll(filepath.Join(mnt, path), size)
	cpu := cpuSeconds(cmd.Process.Pid) - cpu0
	close(stop)
	anon := <-peakAnon
	fmt.Printf("  (evofs reading %s: peak RSS %s, of which anonymous %s; the rest is file-backed pages (Badger's index tables, the program), which the kernel reclaims at will;"+
		" block reads: %s)\n", human(size), human(procStatus(cmd.Process.Pid, "VmHWM:")), human(anon), blockReads(metricsAddr))
	return d, cpu, anon, err
}

func readAll(path string, size int64) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	start := time.Now()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	if n != size {
		return 0, fmt.Errorf("read %s: %d bytes, want %d", path, n, size)
	}
	return d, nil
}

func writeLocal(path string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.NewSectionReader(content{size}, 0, size)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readLoopback(dir, mnt, name string, size int64) (time.Duration, error) {
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return 0, err
	}
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(self, "--serve-loopback", dir, mnt)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		syscall.Unmount(mnt, 0)
		cmd.Wait()
	}()
	if err := waitMounted(mnt, 30*time.Second); err != nil {
		return 0, err
	}
	dropCaches()
	return readAll(filepath.Join(mnt, name), size)
}

func loopback(dir, mnt string) error {
	root, err := gofs.NewLoopbackRoot(dir)
	if err != nil {
		return err
	}
	// The kernel settings of an evofs mount: reads of up to 1 MiB, and
	// 1 MiB of readahead (evofs mount --kernel-read-ahead's default).
	opts := &gofs.Options{}
	opts.DirectMount = true
	opts.MaxReadAhead = 1 << 20
	opts.MaxWrite = 1 << 20
	// As evofs: a 1 MiB read and its header outgrow the largest pipe
	// (1 MiB), so splicing would fail and fall back to copying anyway.
	opts.DisableSplice = true
	srv, err := gofs.Mount(mnt, root, opts)
	if err != nil {
		return err
	}
	if err := evofs.SetKernelReadahead(mnt, 1<<20); err != nil {
		return err
	}
	srv.Wait()
	return nil
}

func waitMounted(dir string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile("/proc/self/mountinfo")
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s was not mounted within %s", dir, limit)
}

// dropCaches empties the kernel's page cache (root only; else a no-op).
func dropCaches() {
	syscall.Sync()
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}

// cpuSeconds is a process's user + system CPU time so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// machineCPU is the CPU seconds all processes of the machine have used so
// far (user, nice, system, irq, softirq from /proc/stat): the emulator,
// Azurite and the kernel share the two cores with evofs.
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var ticks float64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		if i < len(f) {
			v, _ := strconv.ParseFloat(f[i], 64)
			ticks += v
		}
	}
	return ticks / 100 // USER_HZ
}

// blockReads reads a mount's block cache counters off its metrics.
func blockReads(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, name := range []string{"evofs_cache_hits_total", "evofs_cache_misses_total"} {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				parts = append(parts, strings.TrimSuffix(strings.TrimPrefix(name, "evofs_cache_"), "_total")+" "+v)
			}
		}
	}
	return strings.Join(parts, ", ")
}

// cpuUse is CPU seconds used so far: by the whole machine (the emulator,
// Azurite and the kernel share the cores with evofs) and by Azurite.
type cpuUse struct{ machine, azurite float64 }

func cpuNow() cpuUse {
	return cpuUse{machineCPU(), azuriteCPU(os.Getenv("EVOFS_AZURITE_URL"))}
}

// since is the CPU used from u until now.
func (u cpuUse) since() cpuUse {
	n := cpuNow()
	return cpuUse{n.machine - u.machine, n.azurite - u.azurite}
}

// cpuBudget prints what a ratio target leaves evofs of the machine's CPU.
// The direct transfer and evofs's move the same bytes through the same
// emulator and Azurite; evofs adds its own work (FUSE, the cache). When the
// direct transfer already keeps the cores busy, that extra CPU comes
// straight off evofs's speed, and the target is met only if it fits in
// what the target's time leaves: target time × cores − the direct CPU.
func cpuBudget(what string, size int64, direct, evofs time.Duration, directCPU, evofsCPU cpuUse, targetTime time.Duration) {
	cores := float64(runtime.NumCPU())
	per := func(cpu float64) float64 { return cpu / (float64(size) / gib) }
	busy := func(cpu float64, d time.Duration) float64 { return 100 * cpu / (cores * d.Seconds()) }
	fmt.Printf("machine CPU: direct %.2f s/GiB (Azurite %.2f; %.0f%% of %d cores busy); %s %.2f s/GiB (Azurite %.2f; %.0f%% busy)\n",
		per(directCPU.machine), per(directCPU.azurite), busy(directCPU.machine, direct), int(cores),
		what, per(evofsCPU.machine), per(evofsCPU.azurite), busy(evofsCPU.machine, evofs))
	left := targetTime.Seconds()*cores - directCPU.machine
	fmt.Printf("  the target's %s on %d cores leaves evofs %.2f s/GiB of CPU beyond the direct transfer's; it used %.2f\n",
		targetTime.Round(10*time.Millisecond), int(cores), per(left), per(evofsCPU.machine-directCPU.machine))
}

// selfCPU is this process's CPU seconds so far (the client side of the
// direct download and the no-FUSE read, and the emulator).
func selfCPU() float64 { return cpuSeconds(os.Getpid()) }

// azuriteCPU is the CPU seconds so far of the Azurite serving endpoint (the
// process whose command line names its port), or 0 if it is not found.
func azuriteCPU(endpoint string) float64 {
	u, err := url.Parse(endpoint)
	if err != nil || u.Port() == "" {
		return 0
	}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(cmd), "\x00")
		for i, a := range args {
			if a == "--blobPort" && i+1 < len(args) && args[i+1] == u.Port() && strings.Contains(string(cmd), "node") {
				return cpuSeconds(pid)
			}
		}
	}
	return 0
}

// procStatus reads a memory figure (VmHWM:, RssAnon:, ...) of a process's
// status, in bytes.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field) {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func human(n int64) string {
	switch {
	case n >= gib:
		return fmt.Sprintf("%.1f GiB", float64(n)/gib)
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}
