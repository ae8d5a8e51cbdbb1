// Command evofs-emulator serves a local stand-in for the Evo File API v2,
// bytes stored in Azurite. See docs/emulator.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/evofs/evofs/remote/emulator"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "evofs-emulator:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("evofs-emulator", flag.ContinueOnError)
	var (
		cfg       emulator.Config
		infoFile  string
		latency   time.Duration
		blobLat   time.Duration
		bandwidth string
		faultRate float64
		logLevel  string
	)
	fl.StringVar(&cfg.Listen, "listen", emulator.DefaultListen, "address to listen on (port 0 picks a free one)")
	fl.StringVar(&cfg.BlobEndpoint, "blob-endpoint", os.Getenv("EVOFS_AZURITE_URL"), "Azurite account URL (default $EVOFS_AZURITE_URL)")
	fl.StringVar(&cfg.Container, "container", emulator.DefaultContainer, "blob container (created if missing)")
	fl.StringVar(&cfg.DataDir, "data-dir", "", "keep metadata in this folder (default: in memory)")
	fl.StringVar(&cfg.Seed, "seed", "", "seed an empty workspace from this folder")
	fl.IntVar(&cfg.Synthetic, "synthetic", 0, "seed an empty workspace with N small synthetic files")
	fl.IntVar(&cfg.SyntheticDeleted, "synthetic-deleted", 0, "seed an empty workspace with N small synthetic files already deleted (a trash)")
	fl.IntVar(&cfg.MaxListLimit, "max-list-limit", 0, "largest listing page served (default and most 5000)")
	fl.StringVar(&infoFile, "info-file", "", "write the connection info (JSON) to this file once ready")
	fl.DurationVar(&cfg.LinkTTL, "link-ttl", emulator.DefaultLinkTTL, "lifetime of pre-signed links")
	fl.DurationVar(&cfg.TokenTTL, "token-ttl", 0, "lifetime of access tokens (default 1h; the info file's tokens then last the whole run)")
	fl.DurationVar(&latency, "latency", 0, "delay added to every API and blob request")
	fl.DurationVar(&blobLat, "blob-latency", 0, "delay added to every blob request (overrides --latency for blobs)")
	fl.StringVar(&bandwidth, "blob-bandwidth", "", "bandwidth of the blob proxy, shared by all clients and both directions: bytes/s, or with a unit (125MB/s, 1Gbit/s); default unlimited")
	fl.Float64Var(&faultRate, "fault-rate", 0, "probability (0..1) of an injected fault on every API and blob request")
	fl.Float64Var(&cfg.APIFaultRate, "api-fault-rate", 0, "probability of an injected fault on API requests (overrides --fault-rate)")
	fl.Float64Var(&cfg.BlobFaultRate, "blob-fault-rate", 0, "probability of an injected fault on blob requests (overrides --fault-rate)")
	fl.StringVar(&cfg.OrgID, "org-id", "", "organisation id (default: generated once per data dir)")
	fl.StringVar(&cfg.WorkspaceID, "workspace-id", "", "workspace id (default: generated once per data dir)")
	fl.StringVar(&cfg.OrgName, "org-name", emulator.DefaultOrgName, "organisation name in discovery")
	fl.StringVar(&cfg.WorkspaceName, "workspace-name", emulator.DefaultWorkspaceName, "workspace name in the workspace list")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fl.Args())
	}
	set := map[string]bool{}
	fl.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg.APILatency, cfg.BlobLatency = latency, latency
	if set["blob-latency"] {
		cfg.BlobLatency = blobLat
	}
	bps, err := emulator.ParseBandwidth(bandwidth)
	if err != nil {
		return fmt.Errorf("--blob-bandwidth: %w", err)
	}
	cfg.BlobBandwidth = bps
	if !set["api-fault-rate"] {
		cfg.APIFaultRate = faultRate
	}
	if !set["blob-fault-rate"] {
		cfg.BlobFaultRate = faultRate
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if cfg.BlobEndpoint == "" {
		return errors.New("--blob-endpoint is required (or set EVOFS_AZURITE_URL)")
	}

	if infoFile != "" {
		// A stale file from an earlier run would tell a waiting script the
		// wrong address: the file appears only once this run is ready.
		if err := os.Remove(infoFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale info file: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := emulator.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	if infoFile != "" {
		if err := writeInfo(infoFile, srv.Info()); err != nil {
			return err
		}
	}
	fmt.Println(srv.URL())
	<-ctx.Done()
	cfg.Logger.Info("stopping")
	if err := srv.Close(); err != nil {
		return err
	}
	return nil
}

// writeInfo writes the info file atomically (temp file + rename), readable
// by the owner only: it holds tokens and client secrets.
func writeInfo(path string, info emulator.Info) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("encode info: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".evofs-emulator-info-*")
	if err != nil {
		return fmt.Errorf("write info file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write info file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write info file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write info file: %w", err)
	}
	return nil
}
