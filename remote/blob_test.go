package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
)

const (
	kib = 1 << 10
	// azuriteKey is Azurite's well-known development account key.
	azuriteKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

var (
	permRead  = sas.BlobPermissions{Read: true}
	permWrite = sas.BlobPermissions{Read: true, Create: true, Write: true}
)

// testStore is a fresh container in Azurite and the means to sign links to
// its blobs.
type testStore struct {
	t         *testing.T
	account   string // http://127.0.0.1:PORT/devstoreaccount1
	container string
	cred      *azblob.SharedKeyCredential
}

func newTestStore(t *testing.T) *testStore {
	t.Helper()
	account := os.Getenv("EVOFS_AZURITE_URL")
	if account == "" {
		t.Fatal("EVOFS_AZURITE_URL is not set: these tests need Azurite; run them with " +
			"`contrib/azurite/run go test ./remote/` (it starts Azurite and sets the variable)")
	}
	cred, err := azblob.NewSharedKeyCredential("devstoreaccount1", azuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("t%x", rand.Uint64())
	cc, err := container.NewClientWithSharedKeyCredential(account+"/"+name, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Create(t.Context(), nil); err != nil {
		t.Fatalf("create container in Azurite at %s: %v", account, err)
	}
	return &testStore{t: t, account: account, container: name, cred: cred}
}

// sign returns a SAS link to blob name with perm, valid for ttl.
func (s *testStore) sign(name string, perm sas.BlobPermissions, ttl time.Duration) string {
	s.t.Helper()
	qp, err := sas.BlobSignatureValues{
		Protocol:      sas.ProtocolHTTPSandHTTP,
		ExpiryTime:    time.Now().Add(ttl).UTC(),
		Permissions:   perm.String(),
		ContainerName: s.container,
		BlobName:      name,
	}.SignWithSharedKey(s.cred)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.account + "/" + s.container + "/" + name + "?" + qp.Encode()
}

// link is a renewable link whose source signs a fresh one for ttl.
func (s *testStore) link(name string, perm sas.BlobPermissions, ttl time.Duration) *Link {
	return NewLink(s.sign(name, perm, ttl), func(context.Context) (string, error) {
		return s.sign(name, perm, ttl), nil
	})
}

// forged is a well-formed link to name that the store refuses.
func (s *testStore) forged(name string) string {
	u, err := url.Parse(s.sign(name, permWrite, time.Hour))
	if err != nil {
		s.t.Fatal(err)
	}
	q := u.Query()
	q.Set("sig", base64.StdEncoding.EncodeToString(make([]byte, 32)))
	u.RawQuery = q.Encode()
	return u.String()
}

// blob reads the whole blob with the account key, independently of Blobs.
func (s *testStore) blob(name string) []byte {
	s.t.Helper()
	c, err := blockblob.NewClientWithSharedKeyCredential(s.account+"/"+s.container+"/"+name, s.cred, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := c.DownloadStream(s.t.Context(), nil)
	if err != nil {
		s.t.Fatalf("read back %s: %v", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

// put stores data as blob name through Blobs (a long-lived link).
func (s *testStore) put(name string, data []byte) {
	s.t.Helper()
	b := NewBlobs(BlobConfig{BlockSize: 256 * kib, SingleShotMax: 256 * kib})
	if err := b.Upload(s.t.Context(), s.link(name, permWrite, time.Hour), bytes.NewReader(data), int64(len(data)), UploadOptions{}); err != nil {
		s.t.Fatalf("put %s: %v", name, err)
	}
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// memFile is an io.WriterAt over a byte slice.
type memFile struct{ b []byte }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("write %d at %d out of %d bytes", len(p), off, len(m.b))
	}
	return copy(m.b[off:], p), nil
}

// call is one request as the test transport saw it.
type call struct {
	method, comp, blockID, rng string
	copy, syncCopy             bool
	bytes                      int64
	status                     int // 0: transport error
}

// transport forwards to a real transport, recording every request. delay
// (if it matches the request) waits before sending; before may answer in
// the store's stead (a fault); after may spoil the store's answer.
type transport struct {
	next   http.RoundTripper
	delay  func(*http.Request) time.Duration
	before func(*http.Request) (*http.Response, error)
	after  func(*http.Request, *http.Response) (*http.Response, error)

	mu    sync.Mutex
	calls []call
}

func newTransport() *transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 32
	return &transport{next: t}
}

func (t *transport) client() *http.Client { return &http.Client{Transport: t} }

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	q := req.URL.Query()
	c := call{
		method:   req.Method,
		comp:     q.Get("comp"),
		blockID:  q.Get("blockid"),
		rng:      header(req, "x-ms-range"),
		copy:     header(req, "x-ms-copy-source") != "",
		syncCopy: header(req, "x-ms-requires-sync") == "true",
		bytes:    req.ContentLength,
	}
	if t.delay != nil {
		if d := t.delay(req); d > 0 {
			if err := sleepCtx(req.Context(), d); err != nil {
				closeBody(req)
				return nil, err
			}
		}
	}
	var resp *http.Response
	var err error
	if t.before != nil {
		resp, err = t.before(req)
	}
	if resp == nil && err == nil {
		resp, err = t.next.RoundTrip(req)
		if err == nil && t.after != nil {
			resp, err = t.after(req, resp)
		}
	}
	if resp != nil {
		c.status = resp.StatusCode
	}
	t.mu.Lock()
	t.calls = append(t.calls, c)
	t.mu.Unlock()
	return resp, err
}

// header reads a request header whatever the case of its key (the SDK sets
// x-ms-* headers with lower-case keys, bypassing canonicalization).
func header(req *http.Request, key string) string {
	for k, v := range req.Header {
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// count returns the recorded calls that match.
func (t *transport) count(match func(call) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.calls {
		if match(c) {
			n++
		}
	}
	return n
}

func (t *transport) reset() {
	t.mu.Lock()
	t.calls = nil
	t.mu.Unlock()
}

// perKey counts the matching calls by key.
func (t *transport) perKey(match func(call) bool, key func(call) string) map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := map[string]int{}
	for _, c := range t.calls {
		if match(c) {
			m[key(c)]++
		}
	}
	return m
}

func isPutBlock(c call) bool     { return c.method == http.MethodPut && c.comp == "block" }
func isPutBlockList(c call) bool { return c.method == http.MethodPut && c.comp == "blocklist" }
func isPutBlob(c call) bool      { return c.method == http.MethodPut && c.comp == "" && !c.copy }
func isGet(c call) bool          { return c.method == http.MethodGet && c.comp == "" }
func succeeded(c call) bool      { return c.status >= 200 && c.status < 300 }
func refused(c call) bool        { return c.status == http.StatusForbidden }

// delayIf delays the requests that match by d.
func delayIf(match func(call) bool, d time.Duration) func(*http.Request) time.Duration {
	return func(r *http.Request) time.Duration {
		c := call{method: r.Method, comp: r.URL.Query().Get("comp")}
		if match(c) {
			return d
		}
		return 0
	}
}

// checkNoSecrets fails if err's text holds a signature or query string.
func checkNoSecrets(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range []string{"sig=", "se=", "sv=", "sp=", "?"} {
		if strings.Contains(msg, s) {
			t.Errorf("error leaks %q: %s", s, msg)
		}
	}
}

func TestPlanBlocks(t *testing.T) {
	const tib = 1 << 40
	for _, tc := range []struct {
		name      string
		size, bs  int64
		wantBS    int64
		wantN     int
		tooBigErr bool
	}{
		{"empty", 0, 8 * mib, 8 * mib, 0, false},
		{"one byte", 1, 8 * mib, 8 * mib, 1, false},
		{"default block size", 1, 0, 8 * mib, 1, false},
		{"one block exactly", 8 * mib, 8 * mib, 8 * mib, 1, false},
		{"two blocks exactly", 16 * mib, 8 * mib, 8 * mib, 2, false},
		{"two blocks and a byte", 16*mib + 1, 8 * mib, 8 * mib, 3, false},
		{"small blocks", 3*mib + 1, mib, mib, 4, false},
		{"max blocks exactly", MaxBlocks * 8 * mib, 8 * mib, 8 * mib, MaxBlocks, false},
		{"max blocks and a byte", MaxBlocks*8*mib + 1, 8 * mib, 9 * mib, 44445, false},
		{"5 TiB", 5 * tib, 8 * mib, 105 * mib, 49933, false},
		{"block size capped", 4 * mib, 8000 * mib, MaxBlockSize, 1, false},
		{"beyond Azure", 200 * tib, 8 * mib, MaxBlockSize, 52429, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs, n := PlanBlocks(tc.size, tc.bs)
			if bs != tc.wantBS || n != tc.wantN {
				t.Fatalf("PlanBlocks(%d, %d) = %d, %d; want %d, %d", tc.size, tc.bs, bs, n, tc.wantBS, tc.wantN)
			}
			if tc.size > 0 && (bs*int64(n) < tc.size || bs*int64(n-1) >= tc.size) {
				t.Fatalf("%d blocks of %d do not cover %d bytes exactly", n, bs, tc.size)
			}
			if (n > MaxBlocks) != tc.tooBigErr {
				t.Fatalf("n = %d vs MaxBlocks %d", n, MaxBlocks)
			}
			if bs != tc.bs && tc.bs > 0 && bs%mib != 0 {
				t.Fatalf("grown block size %d is not a multiple of 1 MiB", bs)
			}
		})
	}
}

func TestBlobBlockID(t *testing.T) {
	for _, tc := range []struct {
		off  int64
		want string
	}{
		{0, "00000000000000000000000000000000"},
		{8 * mib, "00000000000000000000000008388608"},
		{5 << 40, "00000000000000000005497558138880"},
	} {
		id := BlockID(tc.off)
		raw, err := base64.StdEncoding.DecodeString(id)
		if err != nil || string(raw) != tc.want {
			t.Errorf("BlockID(%d) = %q (%q, %v); want base64 of %q", tc.off, id, raw, err, tc.want)
		}
		if len(id) != 44 {
			t.Errorf("BlockID(%d) has %d characters, want 44 (all ids the same length)", tc.off, len(id))
		}
	}
}

func TestBlobRoundTrip(t *testing.T) {
	s := newTestStore(t)
	const bs, single = mib, mib
	for _, tc := range []struct {
		name                  string
		size                  int
		putBlob, blocks, list int
	}{
		{"empty", 0, 1, 0, 0},
		{"one byte", 1, 1, 0, 0},
		{"single shot max", single, 1, 0, 0},
		{"single shot max + 1", single + 1, 0, 2, 1},
		{"three blocks + 1", 3*bs + 1, 0, 4, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTransport()
			b := NewBlobs(BlobConfig{HTTPClient: tr.client(), BlockSize: bs, SingleShotMax: single, Concurrency: 3})
			data := randomBytes(tc.size, uint64(tc.size))
			name := fmt.Sprintf("rt/%d.bin", tc.size)
			l := s.link(name, permWrite, time.Hour)
			if err := b.Upload(t.Context(), l, bytes.NewReader(data), int64(len(data)), UploadOptions{}); err != nil {
				t.Fatalf("Upload: %v", err)
			}
			if got := [3]int{tr.count(isPutBlob), tr.count(isPutBlock), tr.count(isPutBlockList)}; got != [3]int{tc.putBlob, tc.blocks, tc.list} {
				t.Errorf("put blob, put block, put block list = %v; want %v", got, [3]int{tc.putBlob, tc.blocks, tc.list})
			}
			if n := len(tr.calls); n != tc.putBlob+tc.blocks+tc.list {
				t.Errorf("%d requests, want only the puts: %+v", n, tr.calls)
			}
			if got := s.blob(name); sum(got) != sum(data) {
				t.Fatalf("stored blob: %d bytes, sha256 differs from the %d bytes sent", len(got), len(data))
			}
			out := &memFile{b: make([]byte, len(data))}
			if err := b.Download(t.Context(), l, out, int64(len(data))); err != nil {
				t.Fatalf("Download: %v", err)
			}
			if sum(out.b) != sum(data) {
				t.Fatal("downloaded sha256 differs")
			}
		})
	}
}

func TestBlobReadAt(t *testing.T) {
	s := newTestStore(t)
	data := randomBytes(3*mib+1, 7)
	size := int64(len(data))
	s.put("r.bin", data)
	b := NewBlobs(BlobConfig{BlockSize: mib})
	l := s.link("r.bin", permRead, time.Hour)
	rng := rand.New(rand.NewPCG(1, 2))

	type rangeCase struct{ off, n int64 }
	cases := []rangeCase{{0, 1}, {0, size}, {size - 1, 1}, {size - 10, 10}, {size - 10, 100}, {size, 1}, {size + 5, 10}, {0, size + 1}, {123, 0}}
	for range 30 {
		off := rng.Int64N(size)
		cases = append(cases, rangeCase{off, 1 + rng.Int64N(min(size-off+mib, 2*mib))})
	}
	for _, tc := range cases {
		p := make([]byte, tc.n)
		n, err := b.ReadAt(t.Context(), l, p, tc.off)
		wantN := max(0, min(tc.n, size-tc.off))
		var wantErr error
		if wantN < tc.n {
			wantErr = io.EOF
		}
		if int64(n) != wantN || err != wantErr {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d, %v", tc.n, tc.off, n, err, wantN, wantErr)
		}
		if wantN > 0 && !bytes.Equal(p[:n], data[tc.off:tc.off+wantN]) {
			t.Fatalf("ReadAt(%d bytes at %d): wrong bytes", tc.n, tc.off)
		}
	}
	if _, err := b.ReadAt(t.Context(), l, make([]byte, 1), -1); err == nil {
		t.Fatal("ReadAt at a negative offset succeeded")
	}

	// An empty blob: every read is at its end.
	s.put("empty.bin", nil)
	if n, err := b.ReadAt(t.Context(), s.link("empty.bin", permRead, time.Hour), make([]byte, 10), 0); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt of an empty blob = %d, %v; want 0, EOF", n, err)
	}
}

// Links live 2 s (1-2 s once `se` is rounded to the second) and each Put
// Block waits 600 ms before it is sent, so a 32-block upload outlives
// several links and some requests reach the store with an expired one.
func TestBlobUploadLinkExpires(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	tr := newTransport()
	tr.delay = delayIf(isPutBlock, 600*time.Millisecond)
	b := NewBlobs(BlobConfig{HTTPClient: tr.client(), BlockSize: 64 * kib, SingleShotMax: 64 * kib, Concurrency: 4})
	data := randomBytes(2*mib, 3)
	l := s.link("expiring.bin", permWrite, 2*time.Second)
	start := time.Now()
	if err := b.Upload(t.Context(), l, bytes.NewReader(data), int64(len(data)), UploadOptions{}); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	t.Logf("upload took %v, %d renewals, %d requests refused", time.Since(start), l.Renewals(), tr.count(refused))
	if l.Renewals() < 1 {
		t.Fatalf("Renewals = %d, want >= 1", l.Renewals())
	}
	for id, n := range tr.perKey(func(c call) bool { return isPutBlock(c) && succeeded(c) }, func(c call) string { return c.blockID }) {
		if n != 1 {
			t.Errorf("block %s staged %d times", id, n)
		}
	}
	if n := tr.count(func(c call) bool { return isPutBlock(c) && succeeded(c) }); n != 32 {
		t.Errorf("%d blocks staged, want 32", n)
	}
	if sum(s.blob("expiring.bin")) != sum(data) {
		t.Fatal("stored blob differs")
	}
}

func TestBlobDownloadLinkExpires(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	data := randomBytes(2*mib, 4)
	s.put("d.bin", data)
	tr := newTransport()
	tr.delay = delayIf(isGet, 600*time.Millisecond)
	b := NewBlobs(BlobConfig{HTTPClient: tr.client(), BlockSize: 64 * kib, Concurrency: 4})
	l := s.link("d.bin", permRead, 2*time.Second)
	out := &memFile{b: make([]byte, len(data))}
	start := time.Now()
	if err := b.Download(t.Context(), l, out, int64(len(data))); err != nil {
		t.Fatalf("Download: %v", err)
	}
	t.Logf("download took %v, %d renewals, %d requests refused", time.Since(start), l.Renewals(), tr.count(refused))
	if l.Renewals() < 1 {
		t.Fatalf("Renewals = %d, want >= 1", l.Renewals())
	}
	ranges := tr.perKey(func(c call) bool { return isGet(c) && succeeded(c) }, func(c call) string { return c.rng })
	if len(ranges) != 32 {
		t.Errorf("%d distinct ranges read, want 32", len(ranges))
	}
	for r, n := range ranges {
		if n != 1 {
			t.Errorf("range %s read %d times", r, n)
		}
	}
	if sum(out.b) != sum(data) {
		t.Fatal("downloaded sha256 differs")
	}
}

// A link the store refuses is renewed on demand and the request repeated.
func TestBlobRefusedLinkRenewed(t *testing.T) {
	s := newTestStore(t)
	data := randomBytes(300*kib, 5)
	for _, tc := range []struct {
		name string
		run  func(b *Blobs, l *Link) error
	}{
		{"single shot", func(b *Blobs, l *Link) error {
			return b.Upload(t.Context(), l, bytes.NewReader(data), int64(len(data)), UploadOptions{})
		}},
		{"blocks", func(b *Blobs, l *Link) error {
			return NewBlobs(BlobConfig{HTTPClient: b.cfg.HTTPClient, BlockSize: 64 * kib, SingleShotMax: 64 * kib}).
				Upload(t.Context(), l, bytes.NewReader(data), int64(len(data)), UploadOptions{})
		}},
		{"read", func(b *Blobs, l *Link) error {
			p := make([]byte, len(data))
			_, err := b.ReadAt(t.Context(), l, p, 0)
			if err == nil && !bytes.Equal(p, data) {
				err = errors.New("wrong bytes")
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTransport()
			b := NewBlobs(BlobConfig{HTTPClient: tr.client()})
			name := "refused.bin"
			var calls atomic.Int64
			l := NewLink(s.forged(name), func(context.Context) (string, error) {
				calls.Add(1)
				return s.sign(name, permWrite, time.Hour), nil
			})
			if err := tc.run(b, l); err != nil {
				t.Fatal(err)
			}
			// Parallel blocks may all meet the refused link; they share one renewal.
			if calls.Load() != 1 || l.Renewals() != 1 || tr.count(refused) < 1 || tr.count(refused) > defaultConcurrency {
				t.Fatalf("source calls %d, renewals %d, refused %d; want 1, 1, 1..%d", calls.Load(), l.Renewals(), tr.count(refused), defaultConcurrency)
			}
		})
	}
}

// An upload cancelled midway resumes: blocks journaled by OnStaged are not
// sent again, and a journaled block the store does not have is restaged.
func TestBlobResume(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	tr := newTransport()
	tr.delay = delayIf(isPutBlock, 100*time.Millisecond)
	b := NewBlobs(BlobConfig{HTTPClient: tr.client(), BlockSize: 128 * kib, SingleShotMax: 128 * kib, Concurrency: 2})
	data := randomBytes(2*mib+1, 6)
	size := int64(len(data))
	_, nblocks := PlanBlocks(size, 128*kib) // 17
	l := s.link("resume.bin", permWrite, time.Hour)

	var mu sync.Mutex
	journal := map[int64]int64{}
	ctx, cancel := context.WithCancel(t.Context())
	var cancelled time.Time
	opt := UploadOptions{OnStaged: func(off, n int64) {
		mu.Lock()
		defer mu.Unlock()
		journal[off] = n
		if len(journal) == 5 {
			cancelled = time.Now()
			cancel()
		}
	}}
	err := b.Upload(ctx, l, bytes.NewReader(data), size, opt)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Upload: %v, want context.Canceled", err)
	}
	if d := time.Since(cancelled); d > time.Second {
		t.Errorf("Upload returned %v after the cancel", d)
	}
	checkNoSecrets(t, err)
	mu.Lock()
	staged := len(journal)
	// A journal entry the store does not have (say, it expired): the last
	// block was never sent.
	lastOff := int64(nblocks-1) * 128 * kib
	if _, ok := journal[lastOff]; ok {
		t.Fatal("the last block was staged before the cancel")
	}
	journal[lastOff] = size - lastOff
	earlier := maps.Clone(journal)
	mu.Unlock()
	t.Logf("interrupted after %d journaled blocks of %d", staged, nblocks)

	tr.reset()
	opt.Staged = func(off int64) bool {
		mu.Lock()
		defer mu.Unlock()
		_, ok := journal[off]
		return ok
	}
	if err := b.Upload(t.Context(), l, bytes.NewReader(data), size, opt); err != nil {
		t.Fatalf("resumed Upload: %v", err)
	}
	sent := tr.perKey(isPutBlock, func(c call) string { return c.blockID })
	if len(sent) != nblocks-staged || tr.count(isPutBlock) != nblocks-staged {
		t.Errorf("resume sent %d blocks (%d distinct), want the %d missing ones", tr.count(isPutBlock), len(sent), nblocks-staged)
	}
	for off := range earlier {
		if off != lastOff && sent[BlockID(off)] > 0 {
			t.Errorf("journaled block at %d sent again", off)
		}
	}
	if sent[BlockID(lastOff)] != 1 {
		t.Errorf("the falsely journaled last block was sent %d times, want 1", sent[BlockID(lastOff)])
	}
	if n := tr.count(isPutBlockList); n != 1 {
		t.Errorf("%d Put Block List, want 1", n)
	}
	if sum(s.blob("resume.bin")) != sum(data) {
		t.Fatal("stored blob differs")
	}
}

// faults answers 503 or drops the connection for rate of the requests,
// before or after the store handled them; a dropped download breaks off
// midway through its body.
func faults(tr *transport, rate float64, seed uint64) *atomic.Int64 {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed))
	roll := func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return rng.Float64()
	}
	var injected atomic.Int64
	tr.before = func(req *http.Request) (*http.Response, error) {
		switch r := roll(); {
		case r < rate/4:
			injected.Add(1)
			closeBody(req)
			return &http.Response{
				StatusCode: http.StatusServiceUnavailable, Status: "503 Server Busy",
				Header:  http.Header{"X-Ms-Error-Code": {"ServerBusy"}},
				Body:    io.NopCloser(strings.NewReader("")),
				Request: req,
			}, nil
		case r < rate/2:
			injected.Add(1)
			closeBody(req)
			return nil, errors.New("connection reset by peer (injected)")
		}
		return nil, nil
	}
	tr.after = func(req *http.Request, resp *http.Response) (*http.Response, error) {
		if roll() >= rate/2 {
			return resp, nil
		}
		injected.Add(1)
		if req.Method == http.MethodGet && resp.StatusCode == http.StatusPartialContent && resp.ContentLength > 1 {
			resp.Body = &brokenBody{rc: resp.Body, left: resp.ContentLength / 2}
			return resp, nil
		}
		resp.Body.Close()
		return nil, errors.New("connection reset by peer after the store answered (injected)")
	}
	return &injected
}

// brokenBody breaks off after left bytes.
type brokenBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n, err := b.rc.Read(p[:min(int64(len(p)), b.left)])
	b.left -= int64(n)
	return n, err
}

func (b *brokenBody) Close() error { return b.rc.Close() }

func TestBlobFaults(t *testing.T) {
	t.Parallel()
	s := newTestStore(t)
	tr := newTransport()
	injected := faults(tr, 0.10, 42)
	obs := &retryCounter{}
	b := NewBlobs(BlobConfig{HTTPClient: tr.client(), BlockSize: 128 * kib, SingleShotMax: 256 * kib, Concurrency: 4, Observer: obs})
	for _, size := range []int{200 * kib, 3*mib + 1} {
		data := randomBytes(size, uint64(size))
		name := fmt.Sprintf("faults/%d", size)
		l := s.link(name, permWrite, time.Hour)
		if err := b.Upload(t.Context(), l, bytes.NewReader(data), int64(size), UploadOptions{}); err != nil {
			t.Fatalf("Upload %d bytes: %v", size, err)
		}
		if sum(s.blob(name)) != sum(data) {
			t.Fatalf("stored blob of %d bytes differs", size)
		}
		out := &memFile{b: make([]byte, size)}
		if err := b.Download(t.Context(), l, out, int64(size)); err != nil {
			t.Fatalf("Download %d bytes: %v", size, err)
		}
		if sum(out.b) != sum(data) {
			t.Fatalf("downloaded %d bytes differ", size)
		}
		for i := range 10 {
			off := int64(i * size / 10)
			p := make([]byte, min(64*kib, size-int(off)))
			if n, err := b.ReadAt(t.Context(), l, p, off); err != nil || !bytes.Equal(p[:n], data[off:off+int64(n)]) || n != len(p) {
				t.Fatalf("ReadAt %d: %d, %v", off, n, err)
			}
		}
	}
	t.Logf("%d faults injected in %d requests; retries %v", injected.Load(), len(tr.calls), obs.calls())
	if injected.Load() == 0 {
		t.Fatal("no fault injected")
	}
	// Each fault costs exactly one more request, and the Observer is told
	// of each: those azcore retries (reads), those write() retries
	// (bodies) and the resumes of a download that broke off.
	if n := obs.total(); n != injected.Load() {
		t.Errorf("observer saw %d retries (%v), want one per injected fault: %d", n, obs.calls(), injected.Load())
	}
}

// retryCounter is an Observer that counts retries.
type retryCounter struct {
	mu sync.Mutex
	by map[string]int64
}

func (*retryCounter) APICall(string, int, time.Duration)              {}
func (*retryCounter) BlobTransfer(string, bool, int64, time.Duration) {}
func (r *retryCounter) Retry(call string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		r.by = map[string]int64{}
	}
	r.by[call]++
}

func (r *retryCounter) calls() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.by)
}

func (r *retryCounter) total() (n int64) {
	for _, k := range r.calls() {
		n += k
	}
	return n
}

func TestBlobErrors(t *testing.T) {
	s := newTestStore(t)
	s.put("exists.bin", randomBytes(1000, 9))
	b := NewBlobs(BlobConfig{BlockSize: 64 * kib, SingleShotMax: 64 * kib})
	noRetry := NewBlobs(BlobConfig{MaxRetries: -1})
	small := randomBytes(100, 10)
	forgedSource := func(name string) LinkSource {
		return func(context.Context) (string, error) { return s.forged(name), nil }
	}
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context) error
		is   []error
		not  []error
		code string
	}{
		{"read missing blob", func(ctx context.Context) error {
			_, err := b.ReadAt(ctx, s.link("missing.bin", permRead, time.Hour), make([]byte, 10), 0)
			return err
		}, []error{ErrNotFound}, []error{ErrLinkExpired}, "BlobNotFound"},
		{"download missing blob", func(ctx context.Context) error {
			return b.Download(ctx, s.link("missing.bin", permRead, time.Hour), &memFile{b: make([]byte, 10)}, 10)
		}, []error{ErrNotFound}, nil, "BlobNotFound"},
		{"download past the end", func(ctx context.Context) error {
			return b.Download(ctx, s.link("exists.bin", permRead, time.Hour), &memFile{b: make([]byte, 2000)}, 2000)
		}, []error{io.ErrUnexpectedEOF}, nil, ""},
		{"write with a read link", func(ctx context.Context) error {
			return b.Upload(ctx, s.link("ro.bin", permRead, time.Hour), bytes.NewReader(small), 100, UploadOptions{})
		}, []error{ErrForbidden}, []error{ErrLinkExpired}, "AuthorizationPermissionMismatch"},
		{"link never accepted", func(ctx context.Context) error {
			return b.Upload(ctx, NewLink(s.forged("f.bin"), forgedSource("f.bin")), bytes.NewReader(small), 100, UploadOptions{})
		}, []error{ErrLinkExpired, ErrForbidden}, nil, "AuthorizationFailure"},
		{"renewal fails", func(ctx context.Context) error {
			l := NewLink(s.forged("g.bin"), func(context.Context) (string, error) {
				return "", fmt.Errorf("PUT %s: %w", s.sign("g.bin", permWrite, time.Hour), ErrNoUploadInProgress)
			})
			return b.Upload(ctx, l, bytes.NewReader(small), 100, UploadOptions{})
		}, []error{ErrNoUploadInProgress}, nil, ""},
		{"connection refused", func(ctx context.Context) error {
			l := NewLink("http://127.0.0.1:1/devstoreaccount1/c/b?sv=x&se=2099-01-01T00%3A00%3A00Z&sp=r&sig=SECRET", nil)
			_, err := noRetry.ReadAt(ctx, l, make([]byte, 1), 0)
			return err
		}, nil, []error{ErrLinkExpired}, ""},
		{"cancelled", func(ctx context.Context) error {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return b.Upload(ctx, s.link("c.bin", permWrite, time.Hour), bytes.NewReader(small), 100, UploadOptions{})
		}, []error{context.Canceled}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(t.Context())
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			checkNoSecrets(t, err)
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = false", target)
				}
			}
			for _, target := range tc.not {
				if errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = true", target)
				}
			}
			if got := ErrorCode(err); got != tc.code {
				t.Errorf("ErrorCode = %q, want %q", got, tc.code)
			}
		})
	}
}

func TestBlobCopy(t *testing.T) {
	s := newTestStore(t)
	data := randomBytes(mib+1, 11)
	s.put("src.bin", data)
	refuse := func(match func(*http.Request) bool) func(*http.Request) (*http.Response, error) {
		return func(req *http.Request) (*http.Response, error) {
			if !match(req) {
				return nil, nil
			}
			closeBody(req)
			return &http.Response{
				StatusCode: http.StatusNotImplemented, Status: "501 Not Implemented",
				Header:  http.Header{"X-Ms-Error-Code": {"APINotImplemented"}},
				Body:    io.NopCloser(strings.NewReader("<Error><Code>APINotImplemented</Code><Message>nope</Message></Error>")),
				Request: req,
			}, nil
		}
	}
	isCopy := func(r *http.Request) bool { return header(r, "x-ms-copy-source") != "" }
	isSync := func(r *http.Request) bool { return isCopy(r) && header(r, "x-ms-requires-sync") == "true" }
	for _, tc := range []struct {
		name        string
		before      func(*http.Request) (*http.Response, error)
		unsupported bool
		sync, async int
	}{
		{"sync", nil, false, 1, 0},
		{"async fallback", refuse(isSync), false, 1, 1},
		{"unsupported", refuse(isCopy), true, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTransport()
			tr.before = tc.before
			b := NewBlobs(BlobConfig{HTTPClient: tr.client()})
			dstName := "copy/" + strings.ReplaceAll(tc.name, " ", "-")
			err := b.Copy(t.Context(), s.link(dstName, permWrite, time.Hour), s.link("src.bin", permRead, time.Hour))
			if got := [2]int{tr.count(func(c call) bool { return c.copy && c.syncCopy }), tr.count(func(c call) bool { return c.copy && !c.syncCopy })}; got != [2]int{tc.sync, tc.async} {
				t.Errorf("sync, async copy requests = %v, want %v", got, [2]int{tc.sync, tc.async})
			}
			if tc.unsupported {
				if !errors.Is(err, ErrCopyUnsupported) {
					t.Fatalf("Copy: %v, want ErrCopyUnsupported", err)
				}
				checkNoSecrets(t, err)
				return
			}
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			if sum(s.blob(dstName)) != sum(data) {
				t.Fatal("copy differs from its source")
			}
		})
	}
}

// A cancelled download returns promptly even while requests are slow.
func TestBlobDownloadCancel(t *testing.T) {
	s := newTestStore(t)
	data := randomBytes(mib, 12)
	s.put("slow.bin", data)
	tr := newTransport()
	tr.delay = delayIf(isGet, 10*time.Second)
	b := NewBlobs(BlobConfig{HTTPClient: tr.client(), BlockSize: 64 * kib})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Download(ctx, s.link("slow.bin", permRead, time.Hour), &memFile{b: make([]byte, len(data))}, int64(len(data)))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Download: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Download returned after %v", d)
	}
	checkNoSecrets(t, err)
}

// stalledBody sends left bytes, then nothing until the request is
// abandoned.
type stalledBody struct {
	brokenBody
	ctx context.Context
}

func (b *stalledBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	}
	return b.brokenBody.Read(p)
}

// A response that breaks off or stalls midway is resumed where it stopped:
// the bytes already read are not asked for again.
func TestBlobReadResumesBody(t *testing.T) {
	s := newTestStore(t)
	data := randomBytes(mib, 13)
	s.put("resume-read.bin", data)
	for _, tc := range []struct {
		name  string
		spoil func(*http.Request, *http.Response) io.ReadCloser
	}{
		{"broken", func(_ *http.Request, r *http.Response) io.ReadCloser {
			return &brokenBody{rc: r.Body, left: r.ContentLength / 2}
		}},
		{"stalled", func(req *http.Request, r *http.Response) io.ReadCloser {
			return &stalledBody{brokenBody{rc: r.Body, left: r.ContentLength / 2}, req.Context()}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTransport()
			var spoiled atomic.Bool
			tr.after = func(req *http.Request, resp *http.Response) (*http.Response, error) {
				if req.Method == http.MethodGet && spoiled.CompareAndSwap(false, true) {
					resp.Body = tc.spoil(req, resp)
				}
				return resp, nil
			}
			b := NewBlobs(BlobConfig{HTTPClient: tr.client()})
			b.stallTimeout = 200 * time.Millisecond
			p := make([]byte, len(data))
			start := time.Now()
			if n, err := b.ReadAt(t.Context(), s.link("resume-read.bin", permRead, time.Hour), p, 0); err != nil || n != len(p) {
				t.Fatalf("ReadAt = %d, %v", n, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("ReadAt took %v", d)
			}
			if !bytes.Equal(p, data) {
				t.Fatal("wrong bytes")
			}
			want := []string{"bytes=0-1048575", "bytes=524288-1048575"}
			var got []string
			for _, c := range tr.calls {
				got = append(got, c.rng)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("ranges asked = %q, want %q", got, want)
			}
		})
	}
}

// ReadAtProgress reports the filled prefix as it grows, across a response
// that breaks off halfway and is resumed, and never reports bytes that are
// not yet in place.
func TestBlobReadAtProgress(t *testing.T) {
	s := newTestStore(t)
	data := randomBytes(2*mib+100, 17)
	s.put("progress.bin", data)
	tr := newTransport()
	var spoiled atomic.Bool
	tr.after = func(req *http.Request, resp *http.Response) (*http.Response, error) {
		if req.Method == http.MethodGet && spoiled.CompareAndSwap(false, true) {
			resp.Body = &brokenBody{rc: resp.Body, left: resp.ContentLength / 2}
		}
		return resp, nil
	}
	b := NewBlobs(BlobConfig{HTTPClient: tr.client()})
	l := s.link("progress.bin", permRead, time.Hour)

	p := make([]byte, len(data)+50) // passes the end: io.EOF with all the bytes
	var reports []int
	n, err := b.ReadAtProgress(t.Context(), l, p, 0, func(n int) {
		if !bytes.Equal(p[:n], data[:n]) {
			t.Errorf("progress(%d) before those bytes were in place", n)
		}
		reports = append(reports, n)
	})
	if n != len(data) || err != io.EOF {
		t.Fatalf("ReadAtProgress = %d, %v; want %d, EOF", n, err, len(data))
	}
	if !bytes.Equal(p[:n], data) {
		t.Fatal("wrong bytes")
	}
	if len(reports) < 2 || reports[len(reports)-1] != len(data) {
		t.Fatalf("progress reports %v: want several, ending at %d", reports, len(data))
	}
	for i := 1; i < len(reports); i++ {
		if reports[i] <= reports[i-1] {
			t.Fatalf("progress went from %d to %d", reports[i-1], reports[i])
		}
	}
	if len(tr.calls) != 2 {
		t.Errorf("%d requests, want 2 (one broken, one resumed)", len(tr.calls))
	}
}
