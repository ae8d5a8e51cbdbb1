// Package emulator is a local stand-in for the Evo File API v2 (see
// /work/shared/EVO-FILE-API.md): the seven file calls with their query
// parameters and problem documents, versions that become the latest only once
// their blob is committed, real Azure SAS links signed with the storage
// account's shared key, a counting, delaying and faulting reverse proxy in
// front of Azurite (which stores the bytes), OAuth 2.0 endpoints, and
// /_emulator/* control endpoints. Metadata lives in Badger (in memory, or on
// disk so that it survives a restart) and in an in-memory index rebuilt from
// it at start.
//
// One listener serves everything: the API, the OAuth endpoints, the control
// endpoints and the blob proxy, so a pre-signed link points at the emulator
// itself ({hub}/{account}/{container}/{blob}?{sas}).
package emulator

import (
	"log/slog"
	"time"

	"github.com/evofs/evofs/remote"
)

// Well-known credentials of Azurite's development account.
const (
	DefaultAccountName   = "devstoreaccount1"
	DefaultAccountKey    = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	DefaultContainer     = "evofs"
	DefaultListen        = "127.0.0.1:0"
	DefaultLinkTTL       = 30 * time.Minute
	DefaultTokenTTL      = time.Hour
	DefaultOrgName       = "Emulated organisation"
	DefaultWorkspaceName = "Emulated workspace"
	// DiscoveryPath is where the emulator serves discovery, as the real
	// discovery host does.
	DiscoveryPath = "/evo/identity/v2/discovery"
	// infoTokenTTL is the lifetime of Info.Token and Info.ViewerToken when
	// Config.TokenTTL is not set: the whole run, in practice.
	infoTokenTTL = 10 * 365 * 24 * time.Hour
	// DefaultListLimit is the page size of a listing without `limit`.
	DefaultListLimit = 5000
)

// API operation names: the keys of Stats.API.
const (
	OpListFiles          = "list_files"
	OpGetFile            = "get_file"
	OpGetFileByPath      = "get_file_by_path"
	OpUpsertFileByPath   = "upsert_file_by_path"
	OpUpdateFile         = "update_file"
	OpRestoreFile        = "restore_file"
	OpDeleteFile         = "delete_file"
	OpDeleteFileByPath   = "delete_file_by_path"
	OpToken              = "token"
	OpAuthorize          = "authorize"
	OpDiscovery          = "discovery"
	OpListWorkspaces     = "list_workspaces"
	OpOther              = "other" // a request under the API prefix that matches no call
	BlobOpGet            = "get"
	BlobOpHead           = "head"
	BlobOpPutBlob        = "put_blob"
	BlobOpPutBlock       = "put_block"
	BlobOpPutBlockList   = "put_block_list"
	BlobOpCopy           = "copy"
	BlobOpOther          = "other"
	RoleEditor           = "editor"
	RoleViewer           = "viewer"
	StatusDroppedByFault = 0 // the status recorded for a connection dropped by a fault, or given up by its client while the service stalled
)

// Config says how to run the emulator. Zero values take the defaults noted.
type Config struct {
	Listen        string        // "127.0.0.1:0" by default
	BlobEndpoint  string        // Azurite account URL, e.g. http://127.0.0.1:10000/devstoreaccount1; required
	AccountName   string        // default devstoreaccount1
	AccountKey    string        // default Azurite's well-known key
	Container     string        // default "evofs"; created if missing
	DataDir       string        // "" = Badger in memory; else metadata survives restarts
	OrgID         string        // "" = generated once and persisted in the store
	WorkspaceID   string        // "" = generated once and persisted in the store
	OrgName       string        // the organisation's display name in discovery; default DefaultOrgName
	WorkspaceName string        // the workspace's name in the workspace list; default DefaultWorkspaceName
	LinkTTL       time.Duration // SAS lifetime, default 30m
	// TokenTTL is the access token lifetime, default 1h. When it is zero the
	// tokens of Info (Token, ViewerToken) last for the whole run; when it is
	// set they use it too.
	TokenTTL    time.Duration
	APILatency  time.Duration // added before handling each API request
	BlobLatency time.Duration // added before forwarding each blob request
	// BlobBandwidth caps the blob proxy's traffic, bytes per second over
	// every request and response body of every client together (both
	// directions share it); 0 = unlimited. See SetShaping.
	BlobBandwidth int64
	APIFaultRate  float64 // 0..1
	BlobFaultRate float64 // 0..1
	Seed          string  // folder to seed the workspace from (only when the workspace is empty)
	Synthetic     int     // N synthetic small files across nested folders (only when empty)
	// SyntheticDeleted seeds N more synthetic files already deleted (by
	// the editor, at start), under "deleted/": a trash to list.
	SyntheticDeleted int
	// MaxListLimit caps a listing's page size below the contract's 5000
	// (a larger `limit` is answered with this many, and says so in the
	// response's `limit`), so that tests page through a few files; 0 or
	// more than 5000 = 5000.
	MaxListLimit int
	Logger       *slog.Logger // nil = discard
}

func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.AccountName == "" {
		c.AccountName = DefaultAccountName
	}
	if c.AccountKey == "" {
		c.AccountKey = DefaultAccountKey
	}
	if c.Container == "" {
		c.Container = DefaultContainer
	}
	if c.OrgName == "" {
		c.OrgName = DefaultOrgName
	}
	if c.WorkspaceName == "" {
		c.WorkspaceName = DefaultWorkspaceName
	}
	if c.LinkTTL <= 0 {
		c.LinkTTL = DefaultLinkTTL
	}
	if c.MaxListLimit <= 0 || c.MaxListLimit > remote.MaxListLimit {
		c.MaxListLimit = remote.MaxListLimit
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Info is what a client needs to use the emulator; the command writes it as
// the --info-file JSON.
type Info struct {
	HubURL              string `json:"hub_url"`
	OrgID               string `json:"org_id"`
	WorkspaceID         string `json:"workspace_id"`
	WorkspaceName       string `json:"workspace_name"`
	DiscoveryURL        string `json:"discovery_url"` // {hub}/evo/identity/v2/discovery?service=evo
	Token               string `json:"token"`         // editor access token
	ViewerToken         string `json:"viewer_token"`  // viewer access token
	StatsURL            string `json:"stats_url"`
	TokenURL            string `json:"token_url"`
	AuthorizeURL        string `json:"authorize_url"`
	ClientID            string `json:"client_id"` // public client: auth code + PKCE, no secret
	ServiceClientID     string `json:"service_client_id"`
	ServiceClientSecret string `json:"service_client_secret"`
	ViewerClientID      string `json:"viewer_client_id"`
	ViewerClientSecret  string `json:"viewer_client_secret"`
}
