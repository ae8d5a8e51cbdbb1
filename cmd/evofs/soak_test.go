package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// TestFaultSoakCopiesThreeHundredFilesEachWay (issue 6): with 10% faults on
// API and blob requests and 20 ms latency on each, 4 workers copy 300 files
// into the mount and 300 out of it at once (cp, each its own process; the
// mount is the real binary, write-back sync). None is lost or corrupt
// (sha256 through the API, through the mount and of the copies out), each
// new file has exactly one version, and the mount's Prometheus metrics
// show the retries: one for every fault the emulator answered with an
// error status, none without a fault.
func TestFaultSoakCopiesThreeHundredFilesEachWay(t *testing.T) {
	const workers, n = 4, 300
	// 3 KiB to 51 KiB, and six of just over 9 MiB each way (staged
	// blocks and a block list).
	size := func(i int) int {
		if i%50 == 7 {
			return 9<<20 + i
		}
		return (i*37%17+1)*3<<10 + i
	}
	t0 := time.Now()
	seedDir, src, dst := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(seedDir, "soak/out"), 0o755); err != nil {
		t.Fatal(err)
	}
	outSum, inSum := make([]string, n), make([]string, n)
	for i := range n {
		b := content(uint64(10000+i), size(i))
		outSum[i] = sha(b)
		if err := os.WriteFile(filepath.Join(seedDir, fmt.Sprintf("soak/out/o%03d.bin", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		b = content(uint64(20000+i), size(i+25))
		inSum[i] = sha(b)
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("i%03d.bin", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	emu := emutest.Start(t, func(c *emulator.Config) { c.Seed = seedDir })
	info := emu.Info()
	bin, tok, cacheDir := newEnv(t, info)
	r := newRemoteSide(t, info)
	m := startWriteMount(t, bin, info, tok, cacheDir, "--metrics-addr", "127.0.0.1:0")
	var metricsURL string
	waitFor(t, 30*time.Second, func() string { return "the metrics URL in the log:\n" + m.Stderr.String() }, func() bool {
		if u := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(m.Stderr.String()); u != nil {
			metricsURL = u[1]
		}
		return metricsURL != ""
	})
	if err := os.Mkdir(filepath.Join(m.Dir, "soak/in"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "soak/out/o000.bin")); err != nil { // the listing, before the faults
		t.Fatal(err)
	}
	before := scrape(t, metricsURL)

	t.Logf("set up in %s", time.Since(t0).Round(time.Millisecond))
	emu.ResetStats()
	emu.SetFaults(0.1, 0.1)
	emu.SetLatency(20*time.Millisecond, 20*time.Millisecond)
	// Each cp has a deadline, so a hang ends as failed copies (and the
	// mount's own watchdog), never as a hung test.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
	)
	cp := func(from, to string) {
		out, err := exec.CommandContext(ctx, "cp", from, to).CombinedOutput()
		if err != nil {
			mu.Lock()
			failed = append(failed, fmt.Sprintf("cp %s %s: %v: %s", from, to, err, out))
			mu.Unlock()
		}
	}
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				cp(filepath.Join(src, fmt.Sprintf("i%03d.bin", i)), filepath.Join(m.Dir, "soak/in/"))
				cp(filepath.Join(m.Dir, fmt.Sprintf("soak/out/o%03d.bin", i)), dst+"/")
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	st := emu.Stats()
	emu.SetFaults(0, 0)
	emu.SetLatency(0, 0)
	for i, f := range failed {
		if i == 10 {
			t.Errorf("... and %d more", len(failed)-10)
			break
		}
		t.Error(f)
	}
	if len(failed) > 0 {
		t.FailNow()
	}

	// The faults struck both kinds of traffic (at 10% of some 600
	// requests each, sparing either has odds below 1e-25).
	var requests, dropped int64
	for _, byStatus := range st.API {
		for status, k := range byStatus {
			requests += k
			if status == emulator.StatusDroppedByFault {
				dropped += k
			}
		}
	}
	for _, b := range st.Blob {
		requests += b.Count
		dropped += b.Status[emulator.StatusDroppedByFault]
	}
	t.Logf("%d copies in %s; %d requests, faults: %d API, %d blob (%d dropped connections)",
		2*n, took.Round(time.Millisecond), requests, st.Faults.API, st.Faults.Blob, dropped)
	if st.Faults.API == 0 || st.Faults.Blob == 0 {
		t.Errorf("faults struck %d API and %d blob requests: want both", st.Faults.API, st.Faults.Blob)
	}

	// Retries in the metrics: every fault answered with an error status
	// is retried (a dropped connection may be retried by Go's transport
	// unseen, on a reused connection of an idempotent request), and no
	// request is retried without a fault.
	after := scrape(t, metricsURL)
	retries := map[string]float64{}
	var apiRetries, blobRetries float64
	for series, v := range after {
		call, ok := strings.CutPrefix(series, `evofs_retries_total{call="`)
		if !ok {
			continue
		}
		call = strings.TrimSuffix(call, `"}`)
		d := v - before[series]
		retries[call] = d
		if blobCalls[call] {
			blobRetries += d
		} else {
			apiRetries += d
		}
	}
	t.Logf("retries in the metrics: %v", retries)
	faults := st.Faults.API + st.Faults.Blob
	if apiRetries == 0 || blobRetries == 0 {
		t.Errorf("evofs_retries_total shows %v API and %v blob retries: want both", apiRetries, blobRetries)
	}
	if total := int64(apiRetries + blobRetries); total < faults-dropped || total > faults {
		t.Errorf("%d retries in the metrics; want between %d (faults that answered) and %d (all faults)", total, faults-dropped, faults)
	}
	failures := 0.0
	for _, status := range []string{"0", "500", "502", "503"} {
		for series, v := range after {
			if strings.HasPrefix(series, "evofs_api_requests_total{") && strings.HasSuffix(series, `status="`+status+`"}`) {
				failures += v - before[series]
			}
		}
	}
	if failures == 0 {
		t.Errorf("evofs_api_requests_total shows no failed exchange")
	}

	// Nothing lost, nothing corrupt.
	if st := m.status(); len(st.Pending) != 0 {
		t.Errorf("%d uploads still pending after every cp returned (sync write-back): %+v", len(st.Pending), st.Pending)
	}
	for i := range n {
		name := fmt.Sprintf("o%03d.bin", i)
		b, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || sha(b) != outSum[i] {
			t.Errorf("%s copied out: %d bytes (%v), sha differs from the seed's", name, len(b), err)
		}
	}
	paths := r.paths()
	ins := 0
	for p, k := range paths {
		if strings.HasPrefix(p, "soak/in/") {
			ins++
			if k != 1 {
				t.Errorf("%s listed %d times", p, k)
			}
		}
	}
	if ins != n {
		t.Errorf("%d files under soak/in remotely, want %d", ins, n)
	}
	t1 := time.Now()
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("i%03d.bin", i)
		r.checkFile("soak/in/"+names[i], inSum[i]) // and exactly one version
	}
	// And through the mount, in one process.
	cmd := exec.CommandContext(ctx, "sha256sum", names...)
	cmd.Dir = filepath.Join(m.Dir, "soak/in")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sha256sum through the mount: %v\n%s", err, stderr.String())
	}
	for i, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if f := strings.Fields(l); i >= n || len(f) != 2 || f[0] != inSum[i] || f[1] != names[i] {
			t.Errorf("sha256sum through the mount, line %d: %q, want %s %s", i, l, inSum[min(i, n-1)][:12], names[min(i, n-1)])
		}
	}
	t.Logf("checked through the API and the mount in %s", time.Since(t1).Round(time.Millisecond))
	m.Stop()
}

// blobCalls are the calls of evofs_retries_total that are blob requests
// (the others are File API calls).
var blobCalls = map[string]bool{"get": true, "get_properties": true, "get_block_list": true, "put_blob": true,
	"put_block": true, "put_block_list": true, "copy": true, "abort_copy": true, "blob_other": true}
