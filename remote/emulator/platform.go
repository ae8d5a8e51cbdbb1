package emulator

import "net/http"

// The rest of the platform a mount needs besides the File API: discovery
// (which organisations the caller belongs to and the hub each lives on) and
// the workspace list of an organisation. Both answer for the one
// organisation and workspace the emulator serves.
//
// The shapes follow the vendor's public Python SDK (evo-sdk-common's
// discovery and workspace clients); the contract names only the URLs. See
// docs/emulator.md, "Assumptions".

// DiscoveryResponse is the answer of GET /evo/identity/v2/discovery.
type DiscoveryResponse struct {
	Discovery struct {
		Organizations []DiscoveryOrg `json:"organizations"`
	} `json:"discovery"`
}

// DiscoveryOrg is one organisation of the caller.
type DiscoveryOrg struct {
	ID          string         `json:"id"`
	DisplayName string         `json:"display_name"`
	Hubs        []DiscoveryHub `json:"hubs"`
}

// DiscoveryHub is a hub an organisation lives on.
type DiscoveryHub struct {
	Code        string   `json:"code"`
	DisplayName string   `json:"display_name"`
	URL         string   `json:"url"`
	Services    []string `json:"services"`
}

// WorkspaceList is the answer of GET {hub}/workspace/orgs/{org}/workspaces.
type WorkspaceList struct {
	Results []Workspace `json:"results"`
	Links   struct {
		Next     *string `json:"next"`
		Previous *string `json:"previous"`
		Count    int     `json:"count"`
		Total    int     `json:"total"`
	} `json:"links"`
}

// Workspace is one entry of a WorkspaceList.
type Workspace struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	UserRole    string `json:"user_role"`
}

// platform wraps a discovery or workspace call: stats, latency and the
// bearer token, as for the file calls (no injected faults).
func (s *Server) platform(op string, h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() { s.stats.api(op, sw.code()) }()
		sleepCtx(r.Context(), s.knobs().apiLatency)
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
	var out DiscoveryResponse
	out.Discovery.Organizations = []DiscoveryOrg{{
		ID:          s.org,
		DisplayName: s.cfg.OrgName,
		Hubs: []DiscoveryHub{{Code: "emulator", DisplayName: "Emulator", URL: s.hub,
			Services: []string{"evo.file", "evo.workspace"}}},
	}}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listWorkspaces(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
	if r.PathValue("org") != s.org {
		return errNotFound("no organisation %s", r.PathValue("org"))
	}
	var out WorkspaceList
	ws := Workspace{ID: s.ws, Name: s.cfg.WorkspaceName, UserRole: c.role}
	out.Results = append(out.Results, ws)
	out.Links.Count, out.Links.Total = len(out.Results), len(out.Results)
	writeJSON(w, http.StatusOK, out)
	return nil
}
