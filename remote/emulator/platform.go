package emulator

import (
	"net/http"

	"github.com/evofs/evofs/remote"
)

// The rest of the platform a mount needs besides the File API: discovery
// (which organisations the caller belongs to and the hub each lives on) and
// the workspace list of an organisation. Both answer for the one
// organisation and workspace the emulator serves.
//
// The wire types are remote's (remote/platform.go); see docs/emulator.md.

// platform wraps a discovery or workspace call: stats, latency and the
// bearer token, as for the file calls (no injected faults).
func (s *Server) platform(op string, h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		k := s.knobs()
		if !waitStall(r, k) {
			s.stats.api(op, StatusDroppedByFault)
			return
		}
		defer func() { s.stats.api(op, sw.code()) }()
		sleepCtx(r.Context(), k.apiLatency)
		c, e := s.authenticate(r)
		if e == nil {
			e = h(sw, r, c)
		}
		if e != nil {
			writeProblem(sw, e)
		}
	})
}

func (s *Server) discovery(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
	if svc := r.URL.Query().Get("service"); svc != "evo" {
		return problemf(http.StatusBadRequest, "bad-request", "service=%q: only service=evo is known", svc)
	}
	var out remote.DiscoveryResponse
	out.Discovery.Organizations = []remote.DiscoveryOrg{{
		ID:          s.org,
		DisplayName: s.cfg.OrgName,
		Hubs: []remote.DiscoveryHub{{Code: "emulator", DisplayName: "Emulator", URL: s.hub,
			Services: []string{"evo.file", "evo.workspace"}}},
	}}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listWorkspaces(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
	if r.PathValue("org") != s.org {
		return errNotFound("no organisation %s", r.PathValue("org"))
	}
	var out remote.WorkspaceList
	ws := remote.Workspace{ID: s.ws, Name: s.cfg.WorkspaceName, UserRole: c.role}
	out.Results = append(out.Results, ws)
	out.Links.Count, out.Links.Total = len(out.Results), len(out.Results)
	writeJSON(w, http.StatusOK, out)
	return nil
}
