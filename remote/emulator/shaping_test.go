package emulator_test

import (
	"bytes"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
)

// Timing assertions here are lower bounds only: a loaded machine makes a
// transfer slower, never faster than the link allows.

// TestShapingBandwidth: at 20 MB/s, 10 MB uploaded through the proxy takes
// at least ~0.45 s, and so does downloading it; the bytes arrive whole.
func TestShapingBandwidth(t *testing.T) {
	const size, bps = 10_000_000, 20_000_000
	e := newEnv(t)
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	up := e.upsert("shaped.bin")
	e.s.SetShaping(bps, 0)

	start := time.Now()
	resp, b := e.do(http.MethodPut, up.Upload, "", payload, "x-ms-blob-type", "BlockBlob")
	took := time.Since(start)
	wantStatus(t, resp, b, http.StatusCreated)
	t.Logf("10 MB uploaded at 20 MB/s in %s", took)
	if min := 450 * time.Millisecond; took < min {
		t.Errorf("10 MB uploaded at 20 MB/s in %s, want ≥ %s", took, min)
	}

	link := e.getByPath("shaped.bin", "").Download
	start = time.Now()
	got := e.download(link)
	took = time.Since(start)
	if got != string(payload) {
		t.Fatalf("shaped download: %d bytes, not the %d uploaded", len(got), len(payload))
	}
	t.Logf("10 MB downloaded at 20 MB/s in %s", took)
	if min := 450 * time.Millisecond; took < min {
		t.Errorf("10 MB downloaded at 20 MB/s in %s, want ≥ %s", took, min)
	}

	// Unshaped again: the same download still works (no bound asserted).
	e.s.SetShaping(0, 0)
	if got := e.download(link); len(got) != size {
		t.Fatalf("unshaped download: %d bytes", len(got))
	}
}

// TestShapingIsShared: the bandwidth is one link for every client and
// both directions: an upload and two downloads of 5 MB each, at the same
// time at 20 MB/s, take at least ~0.7 s in all (15 MB less the bucket's
// burst), where each alone would take 0.25 s.
func TestShapingIsShared(t *testing.T) {
	const part = 5_000_000
	e := newEnv(t)
	payload := bytes.Repeat([]byte{7}, part)
	e.upload("a.bin", string(payload))
	link := e.getByPath("a.bin", "").Download
	up := e.upsert("b.bin")
	e.s.SetShaping(20_000_000, 0)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan string, 3)
	for range 2 {
		wg.Go(func() {
			resp, err := e.hc.Get(link)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(resp.Body); err != nil || buf.Len() != part {
				errs <- "download: short or failed"
			}
		})
	}
	wg.Go(func() {
		req, _ := http.NewRequest(http.MethodPut, up.Upload, bytes.NewReader(payload))
		req.Header.Set("x-ms-blob-type", "BlockBlob")
		resp, err := e.hc.Do(req)
		if err != nil {
			errs <- err.Error()
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			errs <- "upload: " + resp.Status
		}
	})
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for msg := range errs {
		t.Fatal(msg)
	}
	t.Logf("15 MB in both directions at 20 MB/s in %s", took)
	if min := 700 * time.Millisecond; took < min {
		t.Errorf("15 MB in both directions at 20 MB/s in %s, want ≥ %s", took, min)
	}
}

// TestShapingLatency: every blob request waits the delay first.
func TestShapingLatency(t *testing.T) {
	const delay, n = 80 * time.Millisecond, 4
	e := newEnv(t)
	e.upload("small.txt", "hello")
	link := e.getByPath("small.txt", "").Download
	e.s.SetShaping(0, delay)
	for range n {
		start := time.Now()
		if got := e.download(link); got != "hello" {
			t.Fatalf("download: %q", got)
		}
		if took := time.Since(start); took < delay {
			t.Errorf("blob request answered after %s, want ≥ %s", took, delay)
		}
	}
}

// TestShapingConfig: /_emulator/config sets and reports the bandwidth,
// by number or with units, and refuses nonsense.
func TestShapingConfig(t *testing.T) {
	e := newEnv(t)
	cfgURL := e.s.URL() + "/_emulator/config"
	for _, c := range []struct {
		body string
		want int64
	}{
		{`{"blob_bandwidth": "1Gbit/s", "blob_latency": "20ms"}`, 125_000_000},
		{`{"blob_bandwidth": 20000000}`, 20_000_000},
		{`{"api_latency": "0s"}`, 20_000_000}, // absent: unchanged
		{`{"blob_bandwidth": "100MiB/s"}`, 100 << 20},
		{`{"blob_bandwidth": 0}`, 0},
	} {
		resp, b := e.do(http.MethodPost, cfgURL, "", []byte(c.body))
		wantStatus(t, resp, b, http.StatusOK)
		got := decode[struct {
			BlobBandwidth int64  `json:"blob_bandwidth"`
			BlobLatency   string `json:"blob_latency"`
		}](t, b)
		if got.BlobBandwidth != c.want || got.BlobLatency != "20ms" {
			t.Errorf("%s: got %+v, want bandwidth %d, latency 20ms", c.body, got, c.want)
		}
	}
	for _, bad := range []string{`{"blob_bandwidth": "fast"}`, `{"blob_bandwidth": -5}`, `{"blob_bandwidth": true}`} {
		resp, b := e.do(http.MethodPost, cfgURL, "", []byte(bad))
		wantStatus(t, resp, b, http.StatusBadRequest)
	}
}

func TestParseBandwidth(t *testing.T) {
	for in, want := range map[string]int64{
		"": 0, "0": 0, "off": 0, "unlimited": 0,
		"125000000": 125_000_000, "125MB/s": 125_000_000, "125 MB": 125_000_000,
		"100MiB/s": 100 << 20, "1Gbit/s": 125_000_000, "1gbit": 125_000_000,
		"800Mbps": 100_000_000, "8kbit/s": 1000,
	} {
		got, err := emulator.ParseBandwidth(in)
		if err != nil || got != want {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"fast", "-1", "12 parsecs"} {
		if got, err := emulator.ParseBandwidth(bad); err == nil {
			t.Errorf("ParseBandwidth(%q) = %d, want an error", bad, got)
		}
	}
}
