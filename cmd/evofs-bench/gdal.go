package main

// The gdal_translate benchmark (issue 16): a GIS tool writing a ~400 MB
// GeoTIFF into the mount as its users do, until committed, against the
// same command onto the local disk plus a direct upload of its output.
// GDAL writes the strips front to back and then goes back to the header,
// so this is not the plain sequential stream `cp` writes.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/evofs/evofs/remote"
)

// gdal times `gdal_translate SRC DST` into a sync mount (close returns
// after the commit) against the same command into a local folder followed
// by a direct upload of its output; the committed bytes are checked
// against the local output (GDAL writes the same bytes for the same input).
func (b *wbench) gdal(ctx context.Context, size int64) error {
	bin, err := exec.LookPath("gdal_translate")
	if err != nil {
		return fmt.Errorf("gdal_translate is not installed (make deps installs gdal-bin): %w", err)
	}
	dir := filepath.Join(b.work, "gdal")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	side := int64(math.Sqrt(float64(size) / 4)) // one Float32 band
	src, err := makeGeoTIFF(ctx, bin, dir, side)
	if err != nil {
		return err
	}

	// Local: the command onto this machine's disk, then a direct upload of
	// what it wrote, as a user without evofs would do.
	local := filepath.Join(dir, "out.tif")
	start, use0 := time.Now(), cpuNow()
	if err := gdalTranslate(ctx, bin, src, local); err != nil {
		return err
	}
	onDisk := time.Since(start)
	out, err := os.Open(local)
	if err != nil {
		return err
	}
	defer out.Close()
	st, err := out.Stat()
	if err != nil {
		return err
	}
	outSize := st.Size()
	start = time.Now()
	up, err := b.client.UpsertFileByPath(ctx, "direct/gdal.tif", "")
	if err == nil {
		err = b.blobs.Upload(ctx, b.client.UploadLink(up), out, outSize, remote.UploadOptions{})
	}
	upload := time.Since(start)
	localUse := use0.since()
	if err != nil {
		return fmt.Errorf("direct upload: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(out, 0, outSize)); err != nil {
		return fmt.Errorf("hash %s: %w", local, err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	if err := b.verify(ctx, "direct/gdal.tif", outSize, sum); err != nil {
		return err
	}

	// The mount: the same command, writing into a sync mount.
	m, err := b.mount("sync", "cache-gdal")
	if err != nil {
		return err
	}
	defer m.unmount()
	if err := os.Mkdir(filepath.Join(m.dir, "gdal"), 0o755); err != nil {
		return err
	}
	cpu0 := cpuSeconds(m.pid())
	b.emu.ResetStats()
	start, use0 = time.Now(), cpuNow()
	err = gdalTranslate(ctx, bin, src, filepath.Join(m.dir, "gdal", "out.tif"))
	returned := time.Since(start)
	if err == nil {
		err = m.waitCommitted(10 * time.Minute) // sync: nothing should be left
	}
	viaMount, mountUse := time.Since(start), use0.since()
	cpu := cpuSeconds(m.pid()) - cpu0
	reqs := blobRequests(b.emu.Stats())
	if err != nil {
		return err
	}
	if err := m.unmount(); err != nil {
		return err
	}
	if err := b.verify(ctx, "gdal/out.tif", outSize, sum); err != nil {
		return err
	}

	reference := onDisk + upload
	fmt.Printf("\ngdal_translate of a %d × %d Float32 GeoTIFF (%s written) %-11s %10s %10s\n", side, side, human(outSize), "", "time", "MB/s")
	row := func(name string, d time.Duration) {
		fmt.Printf("%-66s %10s %10.0f\n", name, d.Round(time.Millisecond), float64(outSize)/d.Seconds()/1e6)
	}
	row("gdal_translate onto the local disk", onDisk)
	row("  then a direct upload of its output", upload)
	row("  together", reference)
	row("gdal_translate into the mount, sync write-back (committed)", viaMount)
	if d := viaMount - returned; d > time.Millisecond {
		fmt.Printf("  (gdal_translate returned after %s; the rest waited for the commit)\n", returned.Round(time.Millisecond))
	}
	fmt.Printf("mount / (local + direct upload): %.2f× the time; evofs CPU %.2f s/GiB; committed bytes checked (size, sha256)\n",
		viaMount.Seconds()/reference.Seconds(), cpu/(float64(outSize)/gib))
	per := func(c float64) float64 { return c / (float64(outSize) / gib) }
	fmt.Printf("  machine CPU: local + direct upload %.2f s/GiB (Azurite %.2f); into the mount %.2f s/GiB (Azurite %.2f)\n",
		per(localUse.machine), per(localUse.azurite), per(mountUse.machine), per(mountUse.azurite))
	fmt.Printf("  blob requests of the mount's commit: %s\n", reqs)
	return nil
}

// makeGeoTIFF writes a side × side Float32 GeoTIFF (WGS 84, one band of
// pseudo-random values) into dir with GDAL itself, from a raw file behind
// a VRT, and returns its path.
func makeGeoTIFF(ctx context.Context, bin, dir string, side int64) (string, error) {
	raw := filepath.Join(dir, "src.raw")
	f, err := os.Create(raw)
	if err != nil {
		return "", err
	}
	_, err = writeGenerated(f, 4, side*side*4)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", raw, err)
	}
	defer os.Remove(raw)
	vrt := filepath.Join(dir, "src.vrt")
	desc := fmt.Sprintf(`<VRTDataset rasterXSize="%d" rasterYSize="%d">
  <VRTRasterBand dataType="Float32" band="1" subClass="VRTRawRasterBand">
    <SourceFilename relativeToVRT="1">src.raw</SourceFilename>
    <ImageOffset>0</ImageOffset><PixelOffset>4</PixelOffset><LineOffset>%d</LineOffset><ByteOrder>LSB</ByteOrder>
  </VRTRasterBand>
</VRTDataset>
`, side, side, side*4)
	if err := os.WriteFile(vrt, []byte(desc), 0o644); err != nil {
		return "", err
	}
	defer os.Remove(vrt)
	src := filepath.Join(dir, "src.tif")
	if err := gdalTranslate(ctx, bin, vrt, src, "-a_srs", "EPSG:4326", "-a_ullr", "0", "10", "10", "0"); err != nil {
		return "", fmt.Errorf("make the source GeoTIFF: %w", err)
	}
	return src, nil
}

// gdalTranslate runs `gdal_translate -q [opts] src dst`.
func gdalTranslate(ctx context.Context, bin, src, dst string, opts ...string) error {
	args := append(append([]string{"-q"}, opts...), src, dst)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("gdal_translate %s %s: %w: %s", src, dst, err, out)
	}
	return nil
}
