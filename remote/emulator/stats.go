package emulator

import (
	"sync"
)

// Stats are the emulator's counters since start or the last reset.
type Stats struct {
	API    map[string]map[int]int64 `json:"api"`  // op -> HTTP status -> count
	Blob   map[string]*BlobOpStats  `json:"blob"` // blob op -> stats
	Faults struct {
		API  int64 `json:"api"`
		Blob int64 `json:"blob"`
	} `json:"faults"`
	Links struct {
		Download       int64 `json:"download"`
		Upload         int64 `json:"upload"`
		UploadReissued int64 `json:"upload_reissued"`
	} `json:"links"` // links handed out
	// BlocksRestaged counts Put Block calls that staged, successfully, a
	// block id already staged successfully on the same blob.
	BlocksRestaged int64 `json:"blocks_restaged"`
	TokensIssued   int64 `json:"tokens_issued"`
	// StorageReads counts the emulator's own reads of a blob's
	// properties in storage, to settle versions.
	StorageReads int64 `json:"storage_reads"`
}

// BlobOpStats counts one kind of blob request. Bytes are the response body
// bytes of a GET and the request body bytes of a PUT.
type BlobOpStats struct {
	Count  int64         `json:"count"`
	Bytes  int64         `json:"bytes"`
	Status map[int]int64 `json:"status"`
}

// APICalls is the number of calls of op, whatever their status.
func (s Stats) APICalls(op string) int64 {
	var n int64
	for _, c := range s.API[op] {
		n += c
	}
	return n
}

// APICount is the number of calls of op answered with status.
func (s Stats) APICount(op string, status int) int64 { return s.API[op][status] }

func newStats() Stats {
	return Stats{API: map[string]map[int]int64{}, Blob: map[string]*BlobOpStats{}}
}

func (s Stats) clone() Stats {
	out := s
	out.API = make(map[string]map[int]int64, len(s.API))
	for op, m := range s.API {
		c := make(map[int]int64, len(m))
		for k, v := range m {
			c[k] = v
		}
		out.API[op] = c
	}
	out.Blob = make(map[string]*BlobOpStats, len(s.Blob))
	for op, b := range s.Blob {
		c := &BlobOpStats{Count: b.Count, Bytes: b.Bytes, Status: make(map[int]int64, len(b.Status))}
		for k, v := range b.Status {
			c.Status[k] = v
		}
		out.Blob[op] = c
	}
	return out
}

// statsCollector is the concurrency-safe holder of Stats. mu guards s.
type statsCollector struct {
	mu sync.Mutex
	s  Stats // GUARDED_BY(mu)
}

func newStatsCollector() *statsCollector { return &statsCollector{s: newStats()} }

func (c *statsCollector) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.clone()
}

func (c *statsCollector) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s = newStats()
}

// update runs f with the stats locked.
func (c *statsCollector) update(f func(s *Stats)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.s)
}

func (c *statsCollector) api(op string, status int) {
	c.update(func(s *Stats) {
		m := s.API[op]
		if m == nil {
			m = map[int]int64{}
			s.API[op] = m
		}
		m[status]++
	})
}

func (c *statsCollector) blob(op string, status int, bytes int64) {
	c.update(func(s *Stats) {
		b := s.Blob[op]
		if b == nil {
			b = &BlobOpStats{Status: map[int]int64{}}
			s.Blob[op] = b
		}
		b.Count++
		b.Bytes += bytes
		b.Status[status]++
	})
}
