package emulator_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
)

// TestErrorCodes reaches every client-side code of the contract's table and
// checks the status and the problem type. Server-side codes: TestFaults and
// TestBackendDown.
func TestErrorCodes(t *testing.T) {
	e := newEnv(t)
	live := e.upload("f/x.txt", "x")
	del := e.upload("gone.txt", "g")
	resp, b := e.call(http.MethodDelete, "/files/"+del.FileID)
	wantStatus(t, resp, b, http.StatusNoContent)
	pending := e.upsert("pending.txt")
	info := e.s.Info()
	viewer := info.ViewerToken
	expired := e.s.IssueToken(emulator.RoleEditor, -time.Minute)
	missingID := "6d3b1a52-0000-4000-8000-000000000000"
	long := strings.Repeat("d/", 512) + "f"

	tests := []struct {
		name   string
		method string
		rel    string // below the workspace base; "!" prefix: absolute below the hub
		tok    string // "" = editor, "-" = none
		status int
		code   string
	}{
		{"restore of a live file", "PUT", "/files/" + live.FileID + "?deleted=false", "", 400, remote.CodeBadRequest},
		{"restore with version_id", "PUT", "/files/" + del.FileID + "?deleted=false&version_id=1", "", 400, remote.CodeBadRequest},
		{"update with deleted=true", "PUT", "/files/" + live.FileID + "?deleted=true", "", 400, remote.CodeBadRequest},
		{"empty segment", "PUT", "/files/path/a//b.txt", "", 400, remote.CodeInvalidPath},
		{"dot-dot segment", "GET", "/files/path/a/%2E%2E/b.txt", "", 400, remote.CodeInvalidPath},
		{"dot segment", "DELETE", "/files/path/a/./b.txt", "", 400, remote.CodeInvalidPath},
		{"NUL in name", "PUT", "/files/path/a%00b", "", 400, remote.CodeInvalidPath},
		{"control char in name", "PUT", "/files/path/a%01b", "", 400, remote.CodeInvalidPath},
		{"encoded slash", "PUT", "/files/path/a%2Fb", "", 400, remote.CodeInvalidPath},
		{"trailing slash", "GET", "/files/path/a/", "", 400, remote.CodeInvalidPath},
		{"name of 256 bytes", "PUT", "/files/path/" + strings.Repeat("n", 256), "", 400, remote.CodeInvalidPath},
		{"path over 1024 bytes", "PUT", "/files/path/" + long, "", 400, remote.CodeInvalidPath},
		{"link for a completed upload", "PUT", "/files/" + live.FileID + "?version_id=" + live.VersionID, "", 400, remote.CodeNoUploadInProgress},
		{"no token", "GET", "/files", "-", 401, remote.CodeMissingToken},
		{"garbage token", "GET", "/files", "not-a-token", 401, remote.CodeInvalidToken},
		{"forged token", "GET", "/files", info.Token[:len(info.Token)-4] + "AAAA", 401, remote.CodeInvalidToken},
		{"expired token", "GET", "/files", expired, 401, remote.CodeInvalidToken},
		{"viewer upserts", "PUT", "/files/path/v.txt", viewer, 403, remote.CodeInsufficientRole},
		{"viewer updates", "PUT", "/files/" + live.FileID, viewer, 403, remote.CodeInsufficientRole},
		{"viewer deletes", "DELETE", "/files/" + live.FileID, viewer, 403, remote.CodeInsufficientRole},
		{"viewer deletes by path", "DELETE", "/files/path/f/x.txt", viewer, 403, remote.CodeInsufficientRole},
		{"no such id", "GET", "/files/" + missingID, "", 404, remote.CodeNotFound},
		{"no such path", "GET", "/files/path/nope.txt", "", 404, remote.CodeNotFound},
		{"no such version", "GET", "/files/" + live.FileID + "?version_id=42", "", 404, remote.CodeNotFound},
		{"pending version is no version", "GET", "/files/" + pending.FileID + "?version_id=" + pending.VersionID, "", 404, remote.CodeNotFound},
		{"update of no such id", "PUT", "/files/" + missingID, "", 404, remote.CodeNotFound},
		{"link for an unknown version", "PUT", "/files/path/f/x.txt?version_id=42", "", 404, remote.CodeNotFound},
		{"link for an unknown path", "PUT", "/files/path/nope.txt?version_id=42", "", 404, remote.CodeNotFound},
		{"delete of no such id", "DELETE", "/files/" + missingID, "", 404, remote.CodeNotFound},
		{"wrong workspace", "!GET", "/file/v2/orgs/" + info.OrgID + "/workspaces/" + missingID + "/files", "", 404, remote.CodeNotFound},
		{"wrong organisation", "!GET", "/file/v2/orgs/" + missingID + "/workspaces/" + info.WorkspaceID + "/files/" + live.FileID, "", 404, remote.CodeNotFound},
		{"upsert at a folder", "PUT", "/files/path/f", "", 409, remote.CodeAlreadyExists},
		{"upsert below a file", "PUT", "/files/path/f/x.txt/y.txt", "", 409, remote.CodeAlreadyExists},
		{"get of a deleted id", "GET", "/files/" + del.FileID, "", 410, remote.CodeGone},
		{"update of a deleted id", "PUT", "/files/" + del.FileID, "", 410, remote.CodeGone},
		{"delete of a deleted id", "DELETE", "/files/" + del.FileID, "", 410, remote.CodeGone},
		{"limit not an int", "GET", "/files?limit=ten", "", 422, remote.CodeValidation},
		{"limit 0", "GET", "/files?limit=0", "", 422, remote.CodeValidation},
		{"limit 5001", "GET", "/files?limit=5001", "", 422, remote.CodeValidation},
		{"negative offset", "GET", "/files?offset=-1", "", 422, remote.CodeValidation},
		{"bad deleted", "GET", "/files?deleted=maybe", "", 422, remote.CodeValidation},
		{"bad order_by field", "GET", "/files?order_by=asc:colour", "", 422, remote.CodeValidation},
		{"bad order_by direction", "GET", "/files?order_by=up:name", "", 422, remote.CodeValidation},
		{"bad date filter", "GET", "/files?created_at=gte:yesterday", "", 422, remote.CodeValidation},
		{"bad author", "GET", "/files?author=bob", "", 422, remote.CodeValidation},
		{"non-UUID file id", "GET", "/files/not-a-uuid", "", 422, remote.CodeValidation},
		{"non-int version_id", "GET", "/files/" + live.FileID + "?version_id=v1", "", 422, remote.CodeValidation},
		{"non-int version_id on upsert", "PUT", "/files/path/f/x.txt?version_id=abc", "", 422, remote.CodeValidation},
		{"bad include_versions", "GET", "/files/path/f/x.txt?include_versions=yes please", "", 422, remote.CodeValidation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method, u := tc.method, e.base+tc.rel
			if strings.HasPrefix(method, "!") {
				method, u = method[1:], e.s.URL()+tc.rel
			}
			tok := e.tok
			switch tc.tok {
			case "-":
				tok = ""
			case "":
			default:
				tok = tc.tok
			}
			resp, b := e.do(method, strings.ReplaceAll(u, " ", "%20"), tok, nil)
			p := wantProblem(t, resp, b, tc.status, tc.code)
			if tc.status == 403 && (p.YourRole != emulator.RoleViewer || len(p.PermittedRoles) == 0) {
				t.Fatalf("403 without roles: %+v", p)
			}
		})
	}
	// A viewer reads.
	resp, b = e.do(http.MethodGet, e.base+"/files/path/f/x.txt", viewer, nil)
	wantStatus(t, resp, b, http.StatusOK)
	if st := e.s.Stats(); st.APICount(emulator.OpUpsertFileByPath, 400) == 0 || st.APICount(emulator.OpListFiles, 401) != 4 {
		t.Fatalf("error statuses not counted: %+v", st.API)
	}
}
