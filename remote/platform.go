package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// The rest of the platform a mount needs to find a workspace: discovery
// (the caller's organisations and the hub each lives on) and an
// organisation's workspace list. The wire shapes follow the vendor's
// public Python SDK; the contract names only the URLs.

// DefaultDiscoveryURL is the real service's discovery endpoint.
const DefaultDiscoveryURL = "https://discover.api.seequent.com/evo/identity/v2/discovery?service=evo"

// DiscoveryResponse is the answer of the discovery call.
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

// WorkspaceList is one page of GET {hub}/workspace/orgs/{org}/workspaces.
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

// PlatformConfig says how to reach discovery and the workspace lists.
type PlatformConfig struct {
	DiscoveryURL string             // "" = DefaultDiscoveryURL
	Tokens       oauth2.TokenSource // required
	HTTPClient   *http.Client       // nil: a default with sensible timeouts
	Retry        RetryPolicy
	Logger       *slog.Logger // nil: discard
	Observer     Observer     // nil: none
}

// Platform calls discovery and the workspace list, with the retries and
// the token refresh of a Client. It is safe for concurrent use.
type Platform struct {
	c         *Client
	discovery string
}

// NewPlatform checks cfg and returns a Platform. It makes no call.
func NewPlatform(cfg PlatformConfig) (*Platform, error) {
	if cfg.Tokens == nil {
		return nil, errors.New("new platform client: a token source is required")
	}
	d := cfg.DiscoveryURL
	if d == "" {
		d = DefaultDiscoveryURL
	}
	if u, err := url.Parse(d); err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("new platform client: discovery URL %q is not an absolute URL", Redact(d))
	}
	// Any valid ids: the file client's base is never used here.
	c, err := New(Config{HubURL: "http://unused.invalid", OrgID: "-", WorkspaceID: "-", Tokens: cfg.Tokens,
		HTTPClient: cfg.HTTPClient, Retry: cfg.Retry, Logger: cfg.Logger, Observer: cfg.Observer})
	if err != nil {
		return nil, err
	}
	return &Platform{c: c, discovery: d}, nil
}

// Organisations lists the caller's organisations and their hubs.
func (p *Platform) Organisations(ctx context.Context) ([]DiscoveryOrg, error) {
	var out DiscoveryResponse
	if _, err := p.c.call(ctx, request{name: "discovery", op: "discover organisations", method: http.MethodGet,
		url: p.discovery, ok: []int{200}, out: &out}); err != nil {
		return nil, err
	}
	return out.Discovery.Organizations, nil
}

// maxWorkspacePages bounds the pages Workspaces follows.
const maxWorkspacePages = 1000

// Workspaces lists the workspaces of organisation orgID on hubURL,
// following the list's next links.
func (p *Platform) Workspaces(ctx context.Context, hubURL, orgID string) ([]Workspace, error) {
	hub, err := url.Parse(strings.TrimRight(hubURL, "/"))
	if err != nil || hub.Scheme == "" || hub.Host == "" {
		return nil, fmt.Errorf("list workspaces: hub URL %q is not an absolute URL", Redact(hubURL))
	}
	next := hub.String() + "/workspace/orgs/" + url.PathEscape(orgID) + "/workspaces"
	var all []Workspace
	seen := map[string]bool{}
	for page := 0; next != "" && page < maxWorkspacePages; page++ {
		var out WorkspaceList
		if _, err := p.c.call(ctx, request{name: "list_workspaces", op: "list workspaces of " + orgID,
			method: http.MethodGet, url: next, ok: []int{200}, out: &out}); err != nil {
			return nil, err
		}
		for _, w := range out.Results {
			if !seen[w.ID] {
				seen[w.ID] = true
				all = append(all, w)
			}
		}
		next = ""
		if out.Links.Next != nil && len(out.Results) > 0 {
			next = *out.Links.Next
		}
	}
	return all, nil
}

// FindWorkspace returns the workspace of orgID on hubURL whose id is ref,
// or else whose name is ref (exactly; then case-insensitively). Two
// workspaces of that name are an error that lists their ids.
func (p *Platform) FindWorkspace(ctx context.Context, hubURL, orgID, ref string) (*Workspace, error) {
	all, err := p.Workspaces(ctx, hubURL, orgID)
	if err != nil {
		return nil, err
	}
	for _, match := range []func(w Workspace) bool{
		func(w Workspace) bool { return strings.EqualFold(w.ID, ref) },
		func(w Workspace) bool { return w.Name == ref },
		func(w Workspace) bool { return strings.EqualFold(w.Name, ref) },
	} {
		var found []Workspace
		for _, w := range all {
			if match(w) {
				found = append(found, w)
			}
		}
		switch len(found) {
		case 0:
			continue
		case 1:
			return &found[0], nil
		}
		ids := make([]string, len(found))
		for i, w := range found {
			ids[i] = w.ID
		}
		return nil, fmt.Errorf("%d workspaces are named %q (%s): give the id", len(found), ref, strings.Join(ids, ", "))
	}
	return nil, fmt.Errorf("no workspace named %q in organisation %s (%d workspaces): %w", ref, orgID, len(all), ErrNotFound)
}
