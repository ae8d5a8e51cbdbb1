package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/evofs/evofs/remote"
)

// fileFlags are the flags of the commands that act on one file of a
// workspace through the File API (versions, restore): which workspace,
// and where the tokens come from, as for mount.
type fileFlags struct {
	hub, org, workspace string
	auth                authFlags
}

func (f *fileFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.hub, "hub", "", "hub URL of the organisation (default: from discovery)")
	fl.StringVar(&f.org, "org", "", "organisation id (default: from discovery)")
	fl.StringVar(&f.workspace, "workspace", "", "workspace name or id (required; a mounted folder does not say which workspace it shows)")
	f.auth.register(fl, true)
}

// fileCmd is what a file command works with.
type fileCmd struct {
	client *remote.Client
	blobs  *remote.Blobs
	log    *slog.Logger
	path   string // the file's path in the workspace
}

// open resolves the workspace, opens its File API client and turns arg
// into a workspace path.
func (f *fileFlags) open(ctx context.Context, g *globalFlags, stderr io.Writer, arg string) (*fileCmd, error) {
	p, err := workspacePath(arg)
	if err != nil {
		return nil, err
	}
	log, err := g.logger(stderr)
	if err != nil {
		return nil, err
	}
	tokens, _, err := f.auth.tokenSource(ctx, log)
	if err != nil {
		return nil, err
	}
	platform, err := newPlatform(&f.auth, tokens, log, nil)
	if err != nil {
		return nil, err
	}
	t, err := resolveTarget(ctx, platform, f.hub, f.org, f.workspace)
	if err != nil {
		return nil, err
	}
	client, err := remote.New(remote.Config{HubURL: t.hub, OrgID: t.org, WorkspaceID: t.workspace, Tokens: tokens, Logger: log})
	if err != nil {
		return nil, err
	}
	return &fileCmd{client: client, blobs: remote.NewBlobs(remote.BlobConfig{}), log: log, path: p}, nil
}

// interruptible is ctx cancelled by SIGINT or SIGTERM, so that a
// restore interrupted midway still removes its temporary file.
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func versionsCommand(g *globalFlags) *cobra.Command {
	var (
		f               fileFlags
		asJSON, inTrash bool
	)
	cmd := &cobra.Command{
		Use:   "versions [flags] PATH",
		Short: "List the versions of a file, oldest first",
		Long: `List every version of a file of the workspace, oldest first (the current one last):
its time, size in bytes, id and who made it. PATH is the file's path in the workspace
(A/b.tif) or a path inside a mounted evofs folder (~/evo/A/b.tif; the mount's
~/evo/.evo/trash/A/b.tif and ~/evo/.evo/versions/A/b.tif name A/b.tif too); --workspace (or
the config file) names the workspace either way.

A file that is not there but is in the trash (deleted) is shown from the trash, with a note
on stderr; --deleted shows the file in the trash even when a live file has its path. If the
path was deleted more than once, the file deleted last is shown.`,
		Example: `  evofs versions --workspace "Pit design" models/block.tif
  evofs versions ~/evo/models/block.tif --json | jq -r '.versions[].version_id'`,
		Args: needArgs("PATH, a file in the workspace or in an evofs mount"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			fc, err := f.open(ctx, g, cmd.ErrOrStderr(), args[0])
			if err != nil {
				return err
			}
			return fc.versions(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), inTrash, asJSON)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the file and its versions as JSON (times RFC 3339, sizes in bytes)")
	cmd.Flags().BoolVar(&inTrash, "deleted", false, "show the file in the trash at PATH, even if a live file is there")
	return cmd
}

func restoreCommand(g *globalFlags) *cobra.Command {
	var (
		f       fileFlags
		version string
	)
	cmd := &cobra.Command{
		Use:   "restore [flags] PATH",
		Short: "Make an old version current again, or bring a deleted file back from the trash",
		Long: `With --version ID, make a new version of the file at PATH with the bytes of its version
ID (from "evofs versions PATH"): the history keeps every version, the restored bytes become
the latest. The store copies the bytes on its side where it can; where it refuses, evofs
streams them through a temporary file and says so.

Without --version, bring back the file deleted last at PATH, with all its versions. If
another file has taken PATH meanwhile, the service may restore it under a new name (evofs
prints where), or refuse (the message says what is in the way).

PATH is the file's path in the workspace or a path inside a mounted evofs folder, as for
"evofs versions".`,
		Example: `  evofs restore --workspace "Pit design" --version 1733467200123456 models/block.tif
  evofs restore --workspace "Pit design" maps/old-pits.shp`,
		Args: needArgs("PATH, a file in the workspace or in an evofs mount"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			fc, err := f.open(ctx, g, cmd.ErrOrStderr(), args[0])
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("version") {
				if version == "" {
					return errors.New("--version wants a version id (`evofs versions PATH` lists them)")
				}
				return fc.restoreVersion(ctx, cmd.OutOrStdout(), version)
			}
			return fc.restoreDeleted(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVar(&version, "version", "", "the version id whose bytes become the file's new version (default: restore the deleted file from the trash); never taken from the environment or the config file")
	_ = cmd.Flags().SetAnnotation("version", noDefaultAnnotation, []string{"true"})
	return cmd
}

// versionEntry is one version as `evofs versions --json` prints it. No
// link: a link carries a signature.
type versionEntry struct {
	VersionID string       `json:"version_id"`
	CreatedAt time.Time    `json:"created_at"`
	Size      int64        `json:"size"`
	CreatedBy *remote.User `json:"created_by"`
	Latest    bool         `json:"latest"`
}

// versionsReport is what `evofs versions --json` prints.
type versionsReport struct {
	Path      string         `json:"path"`
	FileID    string         `json:"file_id"`
	Deleted   bool           `json:"deleted"`
	DeletedAt *time.Time     `json:"deleted_at,omitempty"`
	DeletedBy *remote.User   `json:"deleted_by,omitempty"`
	Versions  []versionEntry `json:"versions"` // oldest first
}

// byTime orders versions oldest first: by time, then by id (version ids
// grow; times may tie at the store's one-second resolution).
func byTime(a, b remote.FileVersion) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	ai, aerr := strconv.ParseInt(a.VersionID, 10, 64)
	bi, berr := strconv.ParseInt(b.VersionID, 10, 64)
	if aerr == nil && berr == nil {
		return cmp.Compare(ai, bi)
	}
	return cmp.Compare(a.VersionID, b.VersionID)
}

func (fc *fileCmd) versions(ctx context.Context, out, errOut io.Writer, inTrash, asJSON bool) error {
	var d *remote.DownloadFileResponse
	var err error
	if !inTrash {
		d, err = fc.client.GetFileByPath(ctx, fc.path, remote.GetOptions{IncludeVersions: true})
		if err != nil && !errors.Is(err, remote.ErrNotFound) && !errors.Is(err, remote.ErrGone) {
			return fc.describe("list the versions of", err)
		}
	}
	if d == nil || err != nil {
		gone, others, ferr := fc.findDeleted(ctx)
		switch {
		case ferr != nil:
			return fc.describe("look in the trash for", ferr)
		case gone == nil && inTrash:
			return fmt.Errorf("%s is not in the trash (no deleted file at this path)", fc.path)
		case gone == nil:
			return fmt.Errorf("%s: no such file in the workspace, live or in the trash (%s)", fc.path, codeOf(err))
		}
		d, err = fc.client.GetFile(ctx, gone.FileID, remote.GetOptions{Deleted: true, IncludeVersions: true})
		if err != nil {
			return fc.describe("list the versions of", err)
		}
		note := fmt.Sprintf("%s is in the trash: deleted %s by %s; `evofs restore %s` brings it back",
			fc.path, timeOf(d.DeletedAt), who(d.DeletedBy), shellQuote(fc.path))
		if others > 0 {
			note += fmt.Sprintf(" (%d file(s) deleted earlier at this path are in the trash too)", others)
		}
		fmt.Fprintln(errOut, note)
	}
	vs := slices.Clone(d.Versions)
	slices.SortStableFunc(vs, byTime)
	if asJSON {
		r := versionsReport{Path: fc.path, FileID: d.FileID, Deleted: d.DeletedAt != nil,
			DeletedAt: d.DeletedAt, DeletedBy: d.DeletedBy, Versions: []versionEntry{}}
		for _, v := range vs {
			r.Versions = append(r.Versions, versionEntry{VersionID: v.VersionID, CreatedAt: v.CreatedAt,
				Size: v.Size, CreatedBy: v.CreatedBy, Latest: v.VersionID == d.VersionID})
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSIZE\tVERSION\tBY")
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", v.CreatedAt.Local().Format(time.RFC3339), v.Size, v.VersionID, who(v.CreatedBy))
	}
	return tw.Flush()
}

// restoreVersion makes a new version of the live file with the bytes of
// its version id: a copy on the store's side (Copy Blob from the old
// version's read link into the new version's upload link), or, where the
// store refuses one, downloaded to a temporary file and uploaded.
func (fc *fileCmd) restoreVersion(ctx context.Context, out io.Writer, id string) error {
	d, err := fc.client.GetFileByPath(ctx, fc.path, remote.GetOptions{IncludeVersions: true})
	if errors.Is(err, remote.ErrNotFound) || errors.Is(err, remote.ErrGone) {
		if gone, _, ferr := fc.findDeleted(ctx); ferr == nil && gone != nil {
			return fmt.Errorf("%s is in the trash: bring it back first (`evofs restore %s`), then its version %s", fc.path, shellQuote(fc.path), id)
		}
	}
	if err != nil {
		return fc.describe("restore a version of", err)
	}
	i := slices.IndexFunc(d.Versions, func(v remote.FileVersion) bool { return v.VersionID == id })
	if i < 0 {
		return fmt.Errorf("%s has no version %s (`evofs versions %s` lists them)", fc.path, id, shellQuote(fc.path))
	}
	v := d.Versions[i]
	if id == d.VersionID {
		fmt.Fprintf(out, "%s: version %s is already the latest; nothing to do\n", fc.path, id)
		return nil
	}
	srcResp := &remote.DownloadFileResponse{FileID: d.FileID, VersionID: v.VersionID, Download: v.Link}
	if srcResp.Download == "" {
		if srcResp, err = fc.client.GetFile(ctx, d.FileID, remote.GetOptions{VersionID: id}); err != nil {
			return fc.describe("get a read link for version "+id+" of", err)
		}
	}
	up, err := fc.client.UpdateFile(ctx, d.FileID, "")
	if err != nil {
		return fc.describe("make a new version of", err)
	}
	dst, src := fc.client.UploadLink(up), remote.DownloadLink(fc.client, srcResp)
	how := "copied by the store: no bytes went through this machine"
	err = fc.blobs.Copy(ctx, dst, src)
	if errors.Is(err, remote.ErrCopyUnsupported) {
		fc.log.Debug("the store refused a server-side copy; streaming it", "path", fc.path, "version", id, "err", err)
		how = "streamed through this machine: the store refused a server-side copy"
		err = fc.stream(ctx, dst, src, v.Size)
	}
	if err != nil {
		return fmt.Errorf("restore version %s of %s: %w", id, fc.path, err)
	}
	fmt.Fprintf(out, "restored %s to version %s: its new version %s has those %d bytes (%s)\n",
		fc.path, id, up.VersionID, v.Size, how)
	return nil
}

// stream copies size bytes from src to dst through a temporary file.
func (fc *fileCmd) stream(ctx context.Context, dst, src *remote.Link, size int64) error {
	tmp, err := os.CreateTemp("", "evofs-restore-*")
	if err != nil {
		return fmt.Errorf("temporary file for the copy: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := fc.blobs.Download(ctx, src, tmp, size); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if err := fc.blobs.Upload(ctx, dst, tmp, size, remote.UploadOptions{}); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	return nil
}

// restoreDeleted brings the file deleted last at the path back from the
// trash, with its versions.
func (fc *fileCmd) restoreDeleted(ctx context.Context, out, errOut io.Writer) error {
	gone, others, err := fc.findDeleted(ctx)
	if err != nil {
		return fc.describe("look in the trash for", err)
	}
	if gone == nil {
		if _, err := fc.client.GetFileByPath(ctx, fc.path, remote.GetOptions{}); err == nil {
			return fmt.Errorf("%s is not in the trash, it is live: to make an older version current give --version (`evofs versions %s` lists them)", fc.path, shellQuote(fc.path))
		}
		return fmt.Errorf("%s is not in the trash (no deleted file at this path)", fc.path)
	}
	r, err := fc.client.RestoreFile(ctx, gone.FileID)
	switch {
	case errors.Is(err, remote.ErrAlreadyExists):
		return fmt.Errorf("cannot restore %s: the path is taken (%s%s): move or delete what is in the way, then run `evofs restore %s` again",
			fc.path, codeOf(err), detailOf(err), shellQuote(fc.path))
	case err != nil:
		return fc.describe("restore", err)
	case r.Moved && r.File != nil:
		fmt.Fprintf(out, "restored %s at %s: %s is taken by another file\n", fc.path, r.File.FullPath(), fc.path)
	default:
		fmt.Fprintf(out, "restored %s\n", fc.path)
	}
	if others > 0 {
		fmt.Fprintf(errOut, "%d file(s) deleted earlier at %s stay in the trash\n", others, fc.path)
	}
	return nil
}

// findDeleted finds the file deleted last at the path (nil if none) and
// how many others deleted earlier are in the trash at that path too.
func (fc *fileCmd) findDeleted(ctx context.Context) (*remote.ListFile, int, error) {
	folder, name := remote.SplitPath(fc.path)
	files, err := fc.client.ListAll(ctx, remote.ListOptions{Deleted: true, FileName: name})
	if err != nil {
		return nil, 0, err
	}
	var found *remote.ListFile
	n := 0
	for i := range files {
		f := &files[i]
		if f.Path != folder || f.Name != name || f.DeletedAt == nil {
			continue
		}
		n++
		if found == nil || f.DeletedAt.After(*found.DeletedAt) {
			found = f
		}
	}
	return found, max(n-1, 0), nil
}

// describe turns a failed call about the file into one line naming the
// path, what was being done and the service's error code.
func (fc *fileCmd) describe(doing string, err error) error {
	var apiErr *remote.Error
	isAPI := errors.As(err, &apiErr)
	switch {
	case errors.Is(err, remote.ErrForbidden):
		role, permitted := "", ""
		if isAPI {
			role, permitted = apiErr.YourRole, strings.Join(apiErr.PermittedRoles, " or ")
		}
		msg := fmt.Sprintf("cannot %s %s: permission denied (%s)", doing, fc.path, codeOf(err))
		if role != "" {
			msg += fmt.Sprintf(": your role in the workspace is %s", role)
		}
		if permitted != "" {
			msg += fmt.Sprintf(", this needs %s", permitted)
		}
		return errors.New(msg)
	case errors.Is(err, remote.ErrUnauthorized):
		return fmt.Errorf("cannot %s %s: the service refused the token (%s): run `evofs login` (or renew --token-file)", doing, fc.path, codeOf(err))
	case errors.Is(err, remote.ErrNotFound):
		return fmt.Errorf("cannot %s %s: no such file in the workspace (%s)", doing, fc.path, codeOf(err))
	case errors.Is(err, remote.ErrGone):
		return fmt.Errorf("cannot %s %s: it was deleted (%s)", doing, fc.path, codeOf(err))
	}
	return fmt.Errorf("cannot %s %s: %w", doing, fc.path, err)
}

// codeOf is the service's error code of err, or its HTTP status.
func codeOf(err error) string {
	if c := remote.ErrorCode(err); c != "" {
		return c
	}
	var apiErr *remote.Error
	if errors.As(err, &apiErr) {
		return fmt.Sprintf("HTTP %d", apiErr.Status)
	}
	return "no error code"
}

// detailOf is ": " and the problem document's detail, if it has one.
func detailOf(err error) string {
	var apiErr *remote.Error
	if errors.As(err, &apiErr) && apiErr.Detail != "" {
		return ": " + strings.Join(strings.Fields(apiErr.Detail), " ")
	}
	return ""
}

// who names a user as the service gives it: "Name <email>".
func who(u *remote.User) string {
	switch {
	case u == nil:
		return "-"
	case u.Name != "" && u.Email != "":
		return u.Name + " <" + u.Email + ">"
	case u.Name != "":
		return u.Name
	case u.Email != "":
		return u.Email
	}
	return cmp.Or(u.ID, "-")
}

// shellQuote quotes p for a shell when it needs it, so that a command a
// message suggests can be pasted as it is.
func shellQuote(p string) string {
	if p != "" && strings.Trim(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./+,:@%") == "" {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}

func timeOf(t *time.Time) string {
	if t == nil {
		return "at an unknown time"
	}
	return t.Local().Format(time.RFC3339)
}
