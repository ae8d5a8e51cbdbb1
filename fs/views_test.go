package fs

import (
	"slices"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
)

func TestVersionNamesSortAsMade(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 22, 3, 0, time.UTC)
	tests := []struct {
		name string
		d    remote.DownloadFileResponse
		want []string
	}{
		{"newest first, times tied", remote.DownloadFileResponse{VersionID: "30", Versions: []remote.FileVersion{
			{VersionID: "30", CreatedAt: at}, {VersionID: "9", CreatedAt: at}, {VersionID: "100", CreatedAt: at}}},
			[]string{"2026-12-01T10-22-03Z_v0001_100.tif", "2026-12-01T10-22-03Z_v0002_9.tif", "2026-12-01T10-22-03Z_v0003_30.tif"}},
		{"oldest first", remote.DownloadFileResponse{VersionID: "2", Versions: []remote.FileVersion{
			{VersionID: "1", CreatedAt: at}, {VersionID: "2", CreatedAt: at.Add(time.Second)}}},
			[]string{"2026-12-01T10-22-03Z_v0001_1.tif", "2026-12-01T10-22-04Z_v0002_2.tif"}},
		{"times decide", remote.DownloadFileResponse{VersionID: "b", Versions: []remote.FileVersion{
			{VersionID: "a", CreatedAt: at.Add(time.Hour)}, {VersionID: "b", CreatedAt: at.Add(2 * time.Hour)}, {VersionID: "c", CreatedAt: at}}},
			[]string{"2026-12-01T10-22-03Z_v0001_c.tif", "2026-12-01T11-22-03Z_v0002_a.tif", "2026-12-01T12-22-03Z_v0003_b.tif"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for i, v := range oldestFirst(&tc.d) {
				got = append(got, VersionName("b.tif", i+1, v.VersionID, v.CreatedAt))
			}
			if !slices.Equal(got, tc.want) || !slices.IsSorted(got) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTrashNames(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	del := func(d time.Duration) *time.Time { t := at.Add(d); return &t }
	files := []remote.ListFile{
		{FileID: "11111111-a", Path: "/a/", Name: "b.tif", DeletedAt: del(time.Minute)},
		{FileID: "22222222-b", Path: "/a/", Name: "b.tif", DeletedAt: del(time.Hour)},
		{FileID: "33333333-c", Path: "/a/", Name: "b.tif", DeletedAt: del(0)},
		{FileID: "44444444-d", Path: "/", Name: ".profile", DeletedAt: del(0)},
		{FileID: "55555555-e", Path: "/", Name: ".profile", DeletedAt: del(time.Second)},
		{FileID: "66666666-f", Path: "/", Name: "alone", DeletedAt: del(0)},
	}
	from := trashNames(files)
	var got []string
	for _, f := range files {
		got = append(got, f.FullPath())
	}
	want := []string{
		"a/b (deleted 2026-12-01T10-01-00Z 11111111).tif",
		"a/b.tif",
		"a/b (deleted 2026-12-01T10-00-00Z 33333333).tif",
		".profile (deleted 2026-12-01T10-00-00Z 44444444)",
		".profile",
		"alone",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("trash paths\n%q\nwant\n%q", got, want)
	}
	if len(from) != 3 || from["11111111-a"] != "a/b.tif" || from["44444444-d"] != ".profile" {
		t.Fatalf("old paths %v", from)
	}
}
