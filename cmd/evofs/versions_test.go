package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// cliRun is one run of an evofs command: its output apart.
type cliRun struct {
	stdout, stderr string
	err            error
}

// cli runs evofs commands against one emulator with one token.
type cli struct {
	t    *testing.T
	bin  string
	env  []string
	info emulator.Info
	tok  string // token file
}

func newCLI(t *testing.T, bin string, info emulator.Info, token string) *cli {
	t.Helper()
	home := t.TempDir()
	return &cli{t: t, bin: bin, env: emuEnv(home, info, "EVOFS_LOG_LEVEL=info"), info: info, tok: writeToken(t, home, token)}
}

// run runs `evofs CMD --hub ... --workspace ... ARGS...` in dir ("": the
// test's).
func (c *cli) run(dir, cmd string, args ...string) cliRun {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	all := append([]string{cmd, "--hub", c.info.HubURL, "--org", c.info.OrgID, "--workspace", c.info.WorkspaceID,
		"--token-file", c.tok}, args...)
	var stdout, stderr bytes.Buffer
	x := exec.CommandContext(ctx, c.bin, all...)
	x.Env, x.Stdout, x.Stderr, x.Dir = c.env, &stdout, &stderr, dir
	err := x.Run()
	r := cliRun{stdout: stdout.String(), stderr: stderr.String(), err: err}
	for _, tok := range []string{c.info.Token, c.info.ViewerToken, "sig="} {
		if strings.Contains(r.stdout+r.stderr, tok) {
			c.t.Fatalf("evofs %s printed a token or a link signature:\n%s\n%s", cmd, r.stdout, r.stderr)
		}
	}
	return r
}

// ok runs a command that must succeed and returns its stdout.
func (c *cli) ok(cmd string, args ...string) string {
	c.t.Helper()
	r := c.run("", cmd, args...)
	if r.err != nil {
		c.t.Fatalf("evofs %s %v: %v\n%s", cmd, args, r.err, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must fail with one line on stderr holding
// every want, and nothing on stdout.
func (c *cli) fails(cmd string, args []string, want ...string) {
	c.t.Helper()
	r := c.run("", cmd, args...)
	var exit *exec.ExitError
	if !errors.As(r.err, &exit) || exit.ExitCode() == 0 {
		c.t.Fatalf("evofs %s %v: %v, want a non-zero exit\nstdout: %s\nstderr: %s", cmd, args, r.err, r.stdout, r.stderr)
	}
	msg := strings.TrimSpace(r.stderr)
	if strings.Count(msg, "\n") != 0 || r.stdout != "" {
		c.t.Errorf("evofs %s %v: want one line on stderr and nothing on stdout; got stdout %q, stderr:\n%s", cmd, args, r.stdout, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			c.t.Errorf("evofs %s %v: stderr %q does not say %q", cmd, args, msg, w)
		}
	}
}

// putVersions uploads each content as a new version of p through the API
// and returns the version ids, in order.
func putVersions(t *testing.T, rs *remoteSide, p string, contents ...[]byte) []string {
	t.Helper()
	var ids []string
	for _, b := range contents {
		up, err := rs.client.UploadPath(context.Background(), rs.blobs, p, bytes.NewReader(b), int64(len(b)), remote.UploadOptions{})
		if err != nil {
			t.Fatalf("upload a version of %s: %v", p, err)
		}
		ids = append(ids, up.VersionID)
	}
	return ids
}

// fiveVersions are the contents of a file's five versions: the second is
// over 8 MiB, so that a streamed restore of it goes in blocks.
func fiveVersions() [][]byte {
	return [][]byte{content(1, 1000), content(2, 9<<20+17), content(3, 3000), content(4, 0), content(5, 5555)}
}

// tableRow is one row of `evofs versions`.
type tableRow struct {
	time    time.Time
	size    int64
	version string
	by      string
}

func parseVersionsTable(t *testing.T, out string) []tableRow {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != "TIME SIZE VERSION BY" {
		t.Fatalf("evofs versions: no header line:\n%s", out)
	}
	var rows []tableRow
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 4 {
			t.Fatalf("evofs versions: row %q has %d columns, want 4", l, len(f))
		}
		tm, err := time.Parse(time.RFC3339, f[0])
		if err != nil {
			t.Fatalf("evofs versions: time %q: %v", f[0], err)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("evofs versions: size %q: %v", f[1], err)
		}
		rows = append(rows, tableRow{tm, size, f[2], strings.Join(f[3:], " ")})
	}
	return rows
}

// wantRows checks the table lists exactly the versions ids with the sizes
// of contents, in order, oldest first.
func wantRows(t *testing.T, rows []tableRow, ids []string, contents [][]byte) {
	t.Helper()
	if len(rows) != len(ids) {
		t.Fatalf("evofs versions lists %d versions, want %d: %+v", len(rows), len(ids), rows)
	}
	for i, r := range rows {
		if r.version != ids[i] || r.size != int64(len(contents[i])) {
			t.Errorf("row %d: version %s of %d bytes, want version %s of %d bytes", i, r.version, r.size, ids[i], len(contents[i]))
		}
		if r.by != "Emulator Editor <editor@evofs-emulator.invalid>" {
			t.Errorf("row %d: by %q, want the editor's name and email", i, r.by)
		}
		if i > 0 && r.time.Before(rows[i-1].time) {
			t.Errorf("row %d is older than row %d", i, i-1)
		}
	}
}

// TestVersionsListsEveryVersionInOrder: a file with five versions made
// through the API: `evofs versions` lists the five, oldest first, with
// their ids, sizes and author; --json says the same and marks the latest;
// a path inside a mounted folder (absolute, or relative to a folder in
// it) names the same file.
func TestVersionsListsEveryVersionInOrder(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t)
	info := emu.Info()
	rs := newRemoteSide(t, info)
	c := newCLI(t, bin, info, info.Token)
	contents := fiveVersions()
	ids := putVersions(t, rs, "models/pit/block.tif", contents...)

	out := c.ok("versions", "models/pit/block.tif")
	t.Logf("evofs versions models/pit/block.tif:\n%s", out)
	wantRows(t, parseVersionsTable(t, out), ids, contents)
	// A leading slash is the workspace's root too.
	wantRows(t, parseVersionsTable(t, c.ok("versions", "/models/pit/block.tif")), ids, contents)

	var rep versionsReport
	if err := json.Unmarshal([]byte(c.ok("versions", "--json", "models/pit/block.tif")), &rep); err != nil {
		t.Fatalf("evofs versions --json: %v", err)
	}
	d, _ := rs.file("models/pit/block.tif")
	if rep.Path != "models/pit/block.tif" || rep.FileID != d.FileID || rep.Deleted || len(rep.Versions) != len(ids) {
		t.Fatalf("evofs versions --json: %+v, want file %s with %d versions", rep, d.FileID, len(ids))
	}
	for i, v := range rep.Versions {
		if v.VersionID != ids[i] || v.Size != int64(len(contents[i])) || v.Latest != (i == len(ids)-1) ||
			v.CreatedBy == nil || v.CreatedBy.Email != "editor@evofs-emulator.invalid" {
			t.Errorf("--json version %d: %+v, want version %s of %d bytes (latest %v)", i, v, ids[i], len(contents[i]), i == len(ids)-1)
		}
	}

	// Through a mount: the path below its root is the workspace path.
	cache := filepath.Join(t.TempDir(), "cache")
	m := startWriteMount(t, bin, info, c.tok, cache)
	wantRows(t, parseVersionsTable(t, c.ok("versions", filepath.Join(m.Dir, "models/pit/block.tif"))), ids, contents)
	r := c.run(filepath.Join(m.Dir, "models"), "versions", "pit/block.tif")
	if r.err != nil {
		t.Fatalf("evofs versions pit/block.tif in %s/models: %v\n%s", m.Dir, r.err, r.stderr)
	}
	wantRows(t, parseVersionsTable(t, r.stdout), ids, contents)
	c.fails("versions", []string{m.Dir}, "is the root of the evofs mount")
	m.Stop()

	c.fails("versions", []string{"models/pit/none.tif"}, "models/pit/none.tif", "no such file", "files/not-found")
	newCLI(t, bin, info, "forged").fails("versions", []string{"models/pit/block.tif"},
		"cannot list the versions of models/pit/block.tif: the service refused the token (auth/invalid-token)")
}

// TestVersionsPathArgument: how PATH maps to a workspace path, with the
// mounts of a mountinfo.
func TestVersionsPathArgument(t *testing.T) {
	const mountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
98 22 0:52 / /home/geo/evo rw,nosuid,nodev,relatime shared:60 - fuse.evofs evofs rw,user_id=0,group_id=0
99 22 0:53 / /srv/pit\040design rw,nosuid,nodev,relatime - fuse.evofs evofs rw,user_id=0,group_id=0
100 22 0:54 / /home/geo/other rw,relatime - fuse.sshfs host: rw
101 98 0:55 / /home/geo/evo/nested rw,relatime - fuse.evofs evofs rw
`
	mounts := evofsMounts(mountinfo)
	if want := []string{"/home/geo/evo", "/srv/pit design", "/home/geo/evo/nested"}; !slices.Equal(mounts, want) {
		t.Fatalf("evofsMounts = %q, want %q", mounts, want)
	}
	for _, tc := range []struct {
		arg, abs string
		want     string // "" with wantErr
		wantErr  string
	}{
		{"A/b.tif", "/home/geo/A/b.tif", "A/b.tif", ""},
		{"/A/b.tif", "/A/b.tif", "A/b.tif", ""},
		{"./A//b.tif", "/tmp/A/b.tif", "A/b.tif", ""},
		{"/home/geo/evo/A/b.tif", "/home/geo/evo/A/b.tif", "A/b.tif", ""},
		{"b.tif", "/home/geo/evo/A/b.tif", "A/b.tif", ""},
		{"../b.tif", "/home/geo/evo/b.tif", "b.tif", ""},
		{"/srv/pit design/x y.shp", "/srv/pit design/x y.shp", "x y.shp", ""},
		{"x.tif", "/home/geo/evo/nested/x.tif", "x.tif", ""},
		{"/home/geo/other/a.txt", "/home/geo/other/a.txt", "home/geo/other/a.txt", ""},
		{"/home/geo/evolution/a.txt", "/home/geo/evolution/a.txt", "home/geo/evolution/a.txt", ""},
		{"/home/geo/evo/.evo/trash/A/b.tif", "/home/geo/evo/.evo/trash/A/b.tif", "A/b.tif", ""},
		{"b.tif", "/home/geo/evo/.evo/versions/A/b.tif", "A/b.tif", ""},
		{"/A/.evo/trash/b.tif", "/A/.evo/trash/b.tif", "A/.evo/trash/b.tif", ""},
		{"/home/geo/evo/.evo/trash", "/home/geo/evo/.evo/trash", "", "is a folder of the evofs mount /home/geo/evo's views"},
		{".", "/home/geo/evo", "", "is the root of the evofs mount /home/geo/evo"},
		{"/", "/", "", "names no file"},
		{"a/\x01b", "/tmp/a/\x01b", "", "is not a path the workspace can hold"},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			got, _, err := workspacePathIn(tc.arg, tc.abs, mounts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("workspacePathIn(%q, %q) = %q, %v; want an error saying %q", tc.arg, tc.abs, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("workspacePathIn(%q, %q) = %q, %v; want %q", tc.arg, tc.abs, got, err, tc.want)
			}
		})
	}
}

// refuseCopies is a proxy in front of Azurite that answers every copy
// (a request with x-ms-copy-source) 501 APINotImplemented, as a store
// without server-side copy would, and passes everything else on. It
// returns the account URL to give the emulator.
func refuseCopies(t *testing.T) string {
	t.Helper()
	az := os.Getenv("EVOFS_AZURITE_URL")
	u, err := url.Parse(az)
	if az == "" || err != nil {
		t.Fatalf("EVOFS_AZURITE_URL %q: run the tests with contrib/azurite/run go test ...", az)
	}
	target := &url.URL{Scheme: u.Scheme, Host: u.Host}
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("x-ms-copy-source") != "" {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("x-ms-error-code", "APINotImplemented")
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotImplemented)
			fmt.Fprint(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>APINotImplemented</Code><Message>no copies here</Message></Error>`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + u.Path
}

// blobStat is the count and bytes of one kind of blob request.
func blobStat(st emulator.Stats, op string) (count, bytes int64) {
	if b := st.Blob[op]; b != nil {
		return b.Count, b.Bytes
	}
	return 0, 0
}

// TestRestoreVersion: `evofs restore --version <2nd>` of a file with five
// versions makes a sixth whose bytes (downloaded through the API) are the
// second's. Where the store copies, the emulator's blob counters show one
// copy request and not a byte read or written by a client; where it
// refuses, the bytes are streamed (the second version read once, written
// once) and the output says so. Then the refusals: a version the file
// does not have, the latest one (nothing to do), a file that is not there.
func TestRestoreVersion(t *testing.T) {
	bin := buildEvofs(t)
	for _, tc := range []struct {
		name    string
		refuse  bool
		wantHow string
	}{
		{"store copies", false, "copied by the store: no bytes went through this machine"},
		{"store refuses copies", true, "streamed through this machine: the store refused a server-side copy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mod []func(*emulator.Config)
			if tc.refuse {
				ep := refuseCopies(t)
				mod = append(mod, func(c *emulator.Config) { c.BlobEndpoint = ep })
			}
			emu := emutest.Start(t, mod...)
			info := emu.Info()
			rs := newRemoteSide(t, info)
			c := newCLI(t, bin, info, info.Token)
			contents := fiveVersions()
			ids := putVersions(t, rs, "a/b.tif", contents...)
			second := contents[1]

			emu.ResetStats()
			out := c.ok("restore", "--version", ids[1], "a/b.tif")
			st := emu.Stats()
			copies, _ := blobStat(st, emulator.BlobOpCopy)
			gets, got := blobStat(st, emulator.BlobOpGet)
			_, putBlock := blobStat(st, emulator.BlobOpPutBlock)
			_, putBlob := blobStat(st, emulator.BlobOpPutBlob)
			t.Logf("blob requests: %d copies; %d GETs, %d bytes; %d bytes put", copies, gets, got, putBlock+putBlob)
			if !tc.refuse {
				if copies == 0 || st.Blob[emulator.BlobOpCopy].Status[http.StatusCreated]+st.Blob[emulator.BlobOpCopy].Status[http.StatusAccepted] == 0 {
					t.Errorf("no successful copy request: %+v", st.Blob[emulator.BlobOpCopy])
				}
				if got != 0 || putBlock+putBlob != 0 {
					t.Errorf("%d bytes read and %d written through this machine, want none", got, putBlock+putBlob)
				}
			} else if got != int64(len(second)) || putBlock+putBlob != int64(len(second)) {
				t.Errorf("streamed %d bytes down and %d up, want the second version's %d each way", got, putBlock+putBlob, len(second))
			}

			d, sum := rs.file("a/b.tif")
			if len(d.Versions) != 6 {
				t.Fatalf("%d versions after the restore, want 6", len(d.Versions))
			}
			if sum != sha(second) || d.Size != int64(len(second)) {
				t.Fatalf("the latest version has %d bytes, sha256 %s; want the second version's %d, %s", d.Size, sum[:12], len(second), sha(second)[:12])
			}
			want := fmt.Sprintf("restored a/b.tif to version %s: its new version %s has those %d bytes (%s)\n", ids[1], d.VersionID, len(second), tc.wantHow)
			if out != want {
				t.Errorf("evofs restore printed %q, want %q", out, want)
			}
			rows := parseVersionsTable(t, c.ok("versions", "a/b.tif"))
			wantRows(t, rows, append(ids, d.VersionID), append(contents, second))

			emu.ResetStats()
			before := d.VersionID
			if out := c.ok("restore", "--version", before, "a/b.tif"); !strings.Contains(out, "already the latest; nothing to do") {
				t.Errorf("restore of the latest version printed %q", out)
			}
			c.fails("restore", []string{"--version", "12345", "a/b.tif"}, "a/b.tif has no version 12345", "evofs versions a/b.tif")
			c.fails("restore", []string{"--version", ids[0], "a/none.tif"}, "a/none.tif", "no such file", "files/not-found")
			c.fails("restore", []string{"--version", "", "a/b.tif"}, "--version wants a version id")
			if n := emu.Stats().APICalls(emulator.OpUpdateFile); n != 0 {
				t.Errorf("the refused restores asked for %d upload links", n)
			}
			if d, _ := rs.file("a/b.tif"); d.VersionID != before || len(d.Versions) != 6 {
				t.Errorf("after the refused restores the latest is %s of %d versions, want %s of 6", d.VersionID, len(d.Versions), before)
			}
		})
	}
}

// TestRestoreDeletedFile: a file deleted through the API is listed by
// `evofs versions` from the trash, and `evofs restore PATH` brings it back
// live, the same file with all its versions; restoring a live file, or a
// path with nothing in the trash, is refused with a line saying why.
func TestRestoreDeletedFile(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t)
	info := emu.Info()
	rs := newRemoteSide(t, info)
	c := newCLI(t, bin, info, info.Token)
	contents := [][]byte{content(11, 100), content(12, 200), content(13, 300)}
	ids := putVersions(t, rs, "maps/old pits.shp", contents...)
	d, _ := rs.file("maps/old pits.shp")
	if err := rs.client.DeleteFileByPath(context.Background(), "maps/old pits.shp"); err != nil {
		t.Fatal(err)
	}
	rs.missing("maps/old pits.shp")

	r := c.run("", "versions", "maps/old pits.shp")
	if r.err != nil {
		t.Fatalf("evofs versions of a deleted file: %v\n%s", r.err, r.stderr)
	}
	t.Logf("evofs versions of a deleted file:\n%s%s", r.stdout, r.stderr)
	wantRows(t, parseVersionsTable(t, r.stdout), ids, contents)
	if !strings.Contains(r.stderr, "maps/old pits.shp is in the trash: deleted ") || !strings.Contains(r.stderr, "by Emulator Editor") ||
		!strings.Contains(r.stderr, "`evofs restore 'maps/old pits.shp'` brings it back") {
		t.Errorf("evofs versions of a deleted file says on stderr %q", r.stderr)
	}

	// A stray EVOFS_VERSION (a build's, say) is no --version: restore's
	// --version comes from the command line only.
	c.env = append(c.env, "EVOFS_VERSION="+ids[0])
	out := c.ok("restore", "maps/old pits.shp")
	if out != "restored maps/old pits.shp\n" {
		t.Errorf("evofs restore printed %q", out)
	}
	after, sum := rs.file("maps/old pits.shp")
	if after.FileID != d.FileID || after.VersionID != ids[2] || len(after.Versions) != 3 || sum != sha(contents[2]) {
		t.Fatalf("after the restore: file %s version %s with %d versions; want file %s version %s with 3", after.FileID, after.VersionID, len(after.Versions), d.FileID, ids[2])
	}
	wantRows(t, parseVersionsTable(t, c.ok("versions", "maps/old pits.shp")), ids, contents)

	c.fails("restore", []string{"maps/old pits.shp"}, "maps/old pits.shp is not in the trash, it is live", "--version")
	c.fails("restore", []string{"maps/never.shp"}, "maps/never.shp is not in the trash")
	c.fails("versions", []string{"--deleted", "maps/old pits.shp"}, "maps/old pits.shp is not in the trash")
}

// TestRestoreOntoTakenPath: restoring a deleted file whose path another
// file has taken. A file where its folder was: the service refuses (409),
// evofs says which path and what to do, and nothing changes. A file at
// its very path: the service restores it under a new name, and evofs says
// where.
func TestRestoreOntoTakenPath(t *testing.T) {
	bin := buildEvofs(t)
	for _, tc := range []struct {
		name    string
		deleted string // deleted through the API, then:
		taker   string // a new file here
		wantErr []string
		wantOut string
	}{
		{name: "a file where its folder was", deleted: "x/old.txt", taker: "x",
			wantErr: []string{"cannot restore x/old.txt: the path is taken (files/already-exists", "move or delete what is in the way", "evofs restore x/old.txt"}},
		{name: "a file at its path", deleted: "same.txt", taker: "same.txt",
			wantOut: "restored same.txt at same (1).txt: same.txt is taken by another file\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emu := emutest.Start(t)
			info := emu.Info()
			rs := newRemoteSide(t, info)
			c := newCLI(t, bin, info, info.Token)
			old := content(21, 2100)
			putVersions(t, rs, tc.deleted, old)
			gone, _ := rs.file(tc.deleted)
			if err := rs.client.DeleteFileByPath(context.Background(), tc.deleted); err != nil {
				t.Fatal(err)
			}
			taker := content(22, 2200)
			putVersions(t, rs, tc.taker, taker)
			live := rs.paths()
			emu.ResetStats()

			if tc.wantErr != nil {
				c.fails("restore", []string{tc.deleted}, tc.wantErr...)
				if n := emu.Stats().APICount(emulator.OpRestoreFile, http.StatusConflict); n != 1 {
					t.Errorf("%d restore calls answered 409, want 1", n)
				}
				if after := rs.paths(); fmt.Sprint(after) != fmt.Sprint(live) {
					t.Errorf("live files %v after the refused restore, before %v", after, live)
				}
				trash, err := rs.client.ListFiles(context.Background(), remote.ListOptions{Deleted: true})
				if err != nil || len(trash.Files) != 1 || trash.Files[0].FileID != gone.FileID {
					t.Errorf("the trash after the refused restore: %+v, %v; want only %s", trash, err, gone.FileID)
				}
				if d, sum := rs.file(tc.taker); sum != sha(taker) || len(d.Versions) != 1 {
					t.Errorf("%s changed: %d versions, sha256 %s", tc.taker, len(d.Versions), sum[:12])
				}
				return
			}
			if out := c.ok("restore", tc.deleted); out != tc.wantOut {
				t.Fatalf("evofs restore printed %q, want %q", out, tc.wantOut)
			}
			moved := strings.TrimSuffix(strings.SplitN(tc.wantOut, " at ", 2)[1], ": same.txt is taken by another file\n")
			if d, sum := rs.file(moved); d.FileID != gone.FileID || sum != sha(old) {
				t.Errorf("%s: file %s, sha256 %s; want the restored %s", moved, d.FileID, sum[:12], gone.FileID)
			}
			if _, sum := rs.file(tc.taker); sum != sha(taker) {
				t.Errorf("%s changed under the restore", tc.taker)
			}
		})
	}
}

// TestRestoreRefusedForViewer: a viewer can list versions, in the trash
// too, and cannot restore either way: one line naming the path, the
// service's code and the role, and nothing changes.
func TestRestoreRefusedForViewer(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t)
	info := emu.Info()
	rs := newRemoteSide(t, info)
	viewer := newCLI(t, bin, info, info.ViewerToken)
	contents := [][]byte{content(31, 310), content(32, 320)}
	ids := putVersions(t, rs, "v.txt", contents...)
	putVersions(t, rs, "gone.txt", content(33, 330))
	if err := rs.client.DeleteFileByPath(context.Background(), "gone.txt"); err != nil {
		t.Fatal(err)
	}
	emu.ResetStats()

	wantRows(t, parseVersionsTable(t, viewer.ok("versions", "v.txt")), ids, contents)
	if rows := parseVersionsTable(t, viewer.ok("versions", "gone.txt")); len(rows) != 1 {
		t.Errorf("a viewer's versions of gone.txt: %+v, want one", rows)
	}
	viewer.fails("restore", []string{"--version", ids[0], "v.txt"},
		"cannot make a new version of v.txt: permission denied (auth/insufficient-role)", "your role in the workspace is viewer")
	viewer.fails("restore", []string{"gone.txt"},
		"cannot restore gone.txt: permission denied (auth/insufficient-role)", "your role in the workspace is viewer")

	st := emu.Stats()
	if n, refused := st.APICalls(emulator.OpUpdateFile), st.APICount(emulator.OpUpdateFile, http.StatusForbidden); n != refused {
		t.Errorf("%d update calls, %d refused: want all refused", n, refused)
	}
	if n, refused := st.APICalls(emulator.OpRestoreFile), st.APICount(emulator.OpRestoreFile, http.StatusForbidden); n != 1 || refused != 1 {
		t.Errorf("%d restore calls, %d refused: want one, refused", n, refused)
	}
	if copies, _ := blobStat(st, emulator.BlobOpCopy); copies != 0 {
		t.Errorf("%d copy requests", copies)
	}
	if d, sum := rs.file("v.txt"); d.VersionID != ids[1] || len(d.Versions) != 2 || sum != sha(contents[1]) {
		t.Errorf("v.txt changed: version %s of %d", d.VersionID, len(d.Versions))
	}
	rs.missing("gone.txt")
}

// TestVersionsShellQuote: the commands messages suggest paste as they are.
func TestVersionsShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"a/b.tif":           "a/b.tif",
		"maps/old pits.shp": "'maps/old pits.shp'",
		"it's.txt":          `'it'\''s.txt'`,
		"$HOME/x":           "'$HOME/x'",
		"":                  "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
