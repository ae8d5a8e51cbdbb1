package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/evofs/evofs/cache"
)

// renewFailures counts failed access token renewals (see renewalWatch).
var renewFailures atomic.Int64

// Metrics are a mount's Prometheus metrics. It implements remote.Observer
// for the API calls and blob transfers; the cache and the write path are
// read when scraped.
type Metrics struct {
	reg        *prometheus.Registry
	apiCalls   *prometheus.CounterVec
	apiLatency *prometheus.HistogramVec
	blobBytes  *prometheus.CounterVec
	blobTime   *prometheus.HistogramVec
	retries    *prometheus.CounterVec

	// PendingUploads reports how many files the write path has journaled
	// and not yet uploaded. runMount sets it to the write path's count when
	// the write path is wired in; left nil, evofs_uploads_pending reads 0.
	PendingUploads func() int
}

func newMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.apiCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "evofs_api_requests_total",
		Help: "HTTP exchanges with the File API, discovery and workspace endpoints, by call and status (0: no answer).",
	}, []string{"call", "status"})
	m.apiLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "evofs_api_request_duration_seconds",
		Help:    "Duration of one HTTP exchange with the API, by call.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	}, []string{"call"})
	m.blobBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "evofs_blob_bytes_total",
		Help: "Bytes moved on pre-signed blob links, by direction (up, down).",
	}, []string{"direction"})
	m.blobTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "evofs_blob_request_duration_seconds",
		Help:    "Duration of one blob request, by operation (get, put_blob, put_block).",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	}, []string{"op"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "evofs_retries_total",
		Help: "API and blob requests sent again after a transient failure (5xx, 408, 429, a dropped connection, a broken-off download), by call.",
	}, []string{"call"})
	m.reg.MustRegister(m.apiCalls, m.apiLatency, m.blobBytes, m.blobTime, m.retries,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "evofs_token_renewal_failures_total", Help: "Failed attempts to get a new access token.",
		}, func() float64 { return float64(renewFailures.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "evofs_uploads_pending", Help: "Files written and not yet uploaded.",
		}, func() float64 {
			if m.PendingUploads == nil {
				return 0
			}
			return float64(m.PendingUploads())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "evofs_build_info", Help: "Always 1; the version is in the label.",
			ConstLabels: prometheus.Labels{"version": versionString()},
		}, func() float64 { return 1 }),
	)
	// Both directions exist from the start, so a scrape shows 0, not nothing.
	m.blobBytes.WithLabelValues("up")
	m.blobBytes.WithLabelValues("down")
	return m
}

// APICall implements remote.Observer.
func (m *Metrics) APICall(call string, status int, d time.Duration) {
	m.apiCalls.WithLabelValues(call, strconv.Itoa(status)).Inc()
	m.apiLatency.WithLabelValues(call).Observe(d.Seconds())
}

// BlobTransfer implements remote.Observer.
func (m *Metrics) BlobTransfer(op string, up bool, n int64, d time.Duration) {
	dir := "down"
	if up {
		dir = "up"
	}
	m.blobBytes.WithLabelValues(dir).Add(float64(n))
	m.blobTime.WithLabelValues(op).Observe(d.Seconds())
}

// Retry implements remote.Observer.
func (m *Metrics) Retry(call string) { m.retries.WithLabelValues(call).Inc() }

// watchCache exports the block cache's counters and size.
func (m *Metrics) watchCache(c *cache.Cache) {
	counter := func(name, help string, f func(cache.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(c.Stats())) })
	}
	m.reg.MustRegister(
		counter("evofs_cache_hits_total", "Block reads served from the cache.", func(s cache.Stats) int64 { return s.Hits }),
		counter("evofs_cache_misses_total", "Block reads that waited for a download.", func(s cache.Stats) int64 { return s.Misses }),
		counter("evofs_cache_evictions_total", "Blocks evicted from the cache.", func(s cache.Stats) int64 { return s.Evictions }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "evofs_cache_bytes", Help: "Bytes of file data in the cache."},
			func() float64 { return float64(c.Usage().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "evofs_cache_blocks", Help: "Blocks in the cache."},
			func() float64 { return float64(c.Usage().Blocks) }),
	)
}

// serve serves /metrics on addr until the returned function is called.
func (m *Metrics) serve(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() { _ = srv.Close() }, nil
}
