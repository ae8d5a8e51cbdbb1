package emulator_test

import (
	"encoding/json"
	"testing"

	"github.com/evofs/evofs/remote"

	"github.com/evofs/evofs/remote/emulator"
)

func TestDiscoveryAndWorkspacesNeedATokenAndListTheWorkspace(t *testing.T) {
	e := newEnv(t, func(c *emulator.Config) { c.WorkspaceName = "Drill holes 2024" })
	info := e.s.Info()
	wsURL := info.HubURL + "/workspace/orgs/" + info.OrgID + "/workspaces"
	for _, u := range []string{info.DiscoveryURL, wsURL} {
		if r, _ := e.do("GET", u, "", nil); r.StatusCode != 401 {
			t.Errorf("GET %s without a token: %d, want 401", u, r.StatusCode)
		}
		if r, _ := e.do("GET", u, e.s.IssueToken("editor", -1), nil); r.StatusCode != 401 {
			t.Errorf("GET %s with an expired token: %d, want 401", u, r.StatusCode)
		}
	}

	r, body := e.do("GET", info.DiscoveryURL, e.tok, nil)
	var d remote.DiscoveryResponse
	if r.StatusCode != 200 || json.Unmarshal(body, &d) != nil {
		t.Fatalf("discovery: %d %s", r.StatusCode, body)
	}
	orgs := d.Discovery.Organizations
	if len(orgs) != 1 || orgs[0].ID != info.OrgID || orgs[0].DisplayName != emulator.DefaultOrgName ||
		len(orgs[0].Hubs) != 1 || orgs[0].Hubs[0].URL != info.HubURL {
		t.Fatalf("discovery: %s", body)
	}
	if r, _ := e.do("GET", info.HubURL+emulator.DiscoveryPath+"?service=other", e.tok, nil); r.StatusCode != 400 {
		t.Errorf("discovery of another service: %d, want 400", r.StatusCode)
	}

	r, body = e.do("GET", wsURL, e.s.IssueToken("viewer", 60e9), nil)
	var l remote.WorkspaceList
	if r.StatusCode != 200 || json.Unmarshal(body, &l) != nil {
		t.Fatalf("workspaces: %d %s", r.StatusCode, body)
	}
	if len(l.Results) != 1 || l.Results[0].ID != info.WorkspaceID || l.Results[0].Name != "Drill holes 2024" ||
		l.Results[0].UserRole != "viewer" || l.Links.Next != nil || info.WorkspaceName != "Drill holes 2024" {
		t.Fatalf("workspaces: %s", body)
	}
	if r, _ := e.do("GET", info.HubURL+"/workspace/orgs/00000000-0000-0000-0000-000000000000/workspaces", e.tok, nil); r.StatusCode != 404 {
		t.Errorf("workspaces of another organisation: %d, want 404", r.StatusCode)
	}
	st := e.s.Stats()
	if st.APICount(emulator.OpDiscovery, 200) != 1 || st.APICount(emulator.OpListWorkspaces, 200) != 1 {
		t.Errorf("stats: %+v", st.API)
	}
}
