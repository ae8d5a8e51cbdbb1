package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Control endpoints for out-of-process tests: /_emulator/stats (GET),
// /_emulator/reset (POST), /_emulator/config (POST). No auth, no faults.

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) handleReset(w http.ResponseWriter, r *http.Request) {
	s.ResetStats()
	w.WriteHeader(http.StatusNoContent)
}

// configRequest is the body of POST /_emulator/config; absent fields are
// left as they are. Durations are Go duration strings ("1.5s").
type configRequest struct {
	APIFaultRate  *float64 `json:"api_fault_rate"`
	BlobFaultRate *float64 `json:"blob_fault_rate"`
	APILatency    *string  `json:"api_latency"`
	BlobLatency   *string  `json:"blob_latency"`
	LinkTTL       *string  `json:"link_ttl"`
	TokenTTL      *string  `json:"token_ttl"`
	Stalled       *bool    `json:"stalled"` // stop answering (true) or answer again
	// BlobBandwidth is bytes/s as a number, or a string with a unit
	// ("1Gbit/s", "125MB/s"; see ParseBandwidth); 0 = unlimited.
	BlobBandwidth json.RawMessage `json:"blob_bandwidth"`
}

type configResponse struct {
	APIFaultRate  float64 `json:"api_fault_rate"`
	BlobFaultRate float64 `json:"blob_fault_rate"`
	APILatency    string  `json:"api_latency"`
	BlobLatency   string  `json:"blob_latency"`
	LinkTTL       string  `json:"link_ttl"`
	TokenTTL      string  `json:"token_ttl"`
	Stalled       bool    `json:"stalled"`
	BlobBandwidth int64   `json:"blob_bandwidth"` // bytes/s, 0 = unlimited
}

func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) {
	var req configRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad config: " + err.Error()})
		return
	}
	durs := map[string]*string{"api_latency": req.APILatency, "blob_latency": req.BlobLatency, "link_ttl": req.LinkTTL, "token_ttl": req.TokenTTL}
	parsed := map[string]time.Duration{}
	for name, v := range durs {
		if v == nil {
			continue
		}
		d, err := time.ParseDuration(*v)
		if err != nil || d < 0 || (d == 0 && (name == "link_ttl" || name == "token_ttl")) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad config: " + name + " must be a positive Go duration"})
			return
		}
		parsed[name] = d
	}
	bandwidth, setBW, err := parseBandwidthJSON(req.BlobBandwidth)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad config: blob_bandwidth: " + err.Error()})
		return
	}
	s.setKnobs(func(k *knobSet) {
		if setBW {
			k.blobBandwidth = bandwidth
			setBandwidth(s.shaper, bandwidth)
		}
		if req.APIFaultRate != nil {
			k.apiFault = clamp01(*req.APIFaultRate)
		}
		if req.BlobFaultRate != nil {
			k.blobFault = clamp01(*req.BlobFaultRate)
		}
		if d, ok := parsed["api_latency"]; ok {
			k.apiLatency = d
		}
		if d, ok := parsed["blob_latency"]; ok {
			k.blobLatency = d
		}
		if d, ok := parsed["link_ttl"]; ok {
			k.linkTTL = d
		}
		if d, ok := parsed["token_ttl"]; ok {
			k.tokenTTL = d
		}
	})
	if req.Stalled != nil {
		s.SetStalled(*req.Stalled)
	}
	k := s.knobs()
	writeJSON(w, http.StatusOK, configResponse{
		Stalled:      k.stall != nil,
		APIFaultRate: k.apiFault, BlobFaultRate: k.blobFault,
		APILatency: k.apiLatency.String(), BlobLatency: k.blobLatency.String(),
		LinkTTL: k.linkTTL.String(), TokenTTL: k.tokenTTL.String(),
		BlobBandwidth: k.blobBandwidth,
	})
}

// parseBandwidthJSON reads blob_bandwidth: absent or null (set false), a
// number of bytes/s, or a string for ParseBandwidth.
func parseBandwidthJSON(raw json.RawMessage) (bps int64, set bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		bps, err = ParseBandwidth(text)
		return bps, err == nil, err
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, false, errors.New("want bytes per second, or a string such as \"1Gbit/s\"")
	}
	if n < 0 || n > 1<<62 {
		return 0, false, fmt.Errorf("%v bytes per second is out of range", n)
	}
	return int64(n), true, nil
}
