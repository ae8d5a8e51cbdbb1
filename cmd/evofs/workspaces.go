package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/evofs/evofs/remote"
)

// target is a workspace resolved to the ids the File API needs.
type target struct {
	hub, org, workspace string
	name                string // the workspace's name, when a lookup gave it
}

func sameHub(a, b string) bool {
	return strings.EqualFold(strings.TrimRight(a, "/"), strings.TrimRight(b, "/"))
}

// resolveTarget fills in what the flags leave out: the organisation (and
// hub) from discovery, the workspace id from its name. Given a hub, an
// organisation and a workspace id it makes no call.
func resolveTarget(ctx context.Context, p *remote.Platform, hub, org, ws string) (*target, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t := &target{hub: strings.TrimRight(hub, "/"), org: org, workspace: ws}
	if ws == "" {
		return nil, fmt.Errorf("--workspace is required: a workspace name or id (`evofs workspaces` lists them)")
	}
	if t.hub == "" || t.org == "" {
		orgs, err := p.Organisations(ctx)
		if err != nil {
			return nil, fmt.Errorf("find the organisation with discovery (or give --hub and --org): %w", err)
		}
		type cand struct{ hub, org, name string }
		var found []cand
		for _, o := range orgs {
			if org != "" && !strings.EqualFold(o.ID, org) && !strings.EqualFold(o.DisplayName, org) {
				continue
			}
			for _, h := range o.Hubs {
				if t.hub == "" || sameHub(h.URL, t.hub) {
					found = append(found, cand{strings.TrimRight(h.URL, "/"), o.ID, o.DisplayName})
				}
			}
		}
		switch len(found) {
		case 0:
			return nil, fmt.Errorf("discovery knows no organisation %s of yours (%d organisations): check --hub and --org",
				strings.TrimSpace(org+" on "+t.hub), len(orgs))
		case 1:
			t.hub, t.org = found[0].hub, found[0].org
		default:
			var l []string
			for _, c := range found {
				l = append(l, fmt.Sprintf("%s (%s) on %s", c.name, c.org, c.hub))
			}
			return nil, fmt.Errorf("you belong to several organisations: give --org (and --hub): %s", strings.Join(l, "; "))
		}
	}
	if _, err := uuid.Parse(ws); err == nil {
		return t, nil
	}
	w, err := p.FindWorkspace(ctx, t.hub, t.org, ws)
	if errors.Is(err, remote.ErrNotFound) {
		if all, lerr := p.Workspaces(ctx, t.hub, t.org); lerr == nil {
			return nil, fmt.Errorf("no workspace named %q in organisation %s: %s", ws, t.org, workspaceNames(all))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("find workspace %q: %w", ws, err)
	}
	t.workspace, t.name = w.ID, w.Name
	return t, nil
}

// workspaceNames says which workspaces there are, for a name that is
// none of them: at most 20 names.
func workspaceNames(all []remote.Workspace) string {
	if len(all) == 0 {
		return "it has no workspace you can see (evofs workspaces lists those of every organisation)"
	}
	const most = 20
	var names []string
	for i, w := range all {
		if i == most {
			names = append(names, fmt.Sprintf("and %d more (evofs workspaces lists them all)", len(all)-most))
			break
		}
		names = append(names, strconv.Quote(w.Name))
	}
	return "give --workspace one of " + strings.Join(names, ", ")
}

func newPlatform(a *authFlags, tokens oauth2.TokenSource, log *slog.Logger, obs remote.Observer) (*remote.Platform, error) {
	return remote.NewPlatform(remote.PlatformConfig{DiscoveryURL: a.discoveryURL, Tokens: tokens, Logger: log, Observer: obs})
}

func workspacesCommand(g *globalFlags) *cobra.Command {
	var (
		a        authFlags
		hub, org string
	)
	cmd := &cobra.Command{
		Use:   "workspaces",
		Short: "List your organisations, their hubs and their workspaces",
		Long: `List the organisations discovery knows you by, the hub each lives on, and the workspaces of
each (id and name). A workspace's name or id is what "evofs mount --workspace" takes.`,
		Example: `  evofs workspaces
  evofs workspaces --org 3fa85f64-5717-4562-b3fc-2c963f66afa6`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			tokens, _, err := a.tokenSource(cmd.Context(), log)
			if err != nil {
				return err
			}
			p, err := newPlatform(&a, tokens, log, nil)
			if err != nil {
				return err
			}
			return listWorkspaces(cmd.Context(), cmd.OutOrStdout(), p, hub, org)
		},
	}
	a.register(cmd.Flags(), true)
	cmd.Flags().StringVar(&hub, "hub", "", "only this hub")
	cmd.Flags().StringVar(&org, "org", "", "only this organisation (id or name)")
	return cmd
}

func listWorkspaces(ctx context.Context, out io.Writer, p *remote.Platform, hub, org string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	orgs, err := p.Organisations(ctx)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	n := 0
	for _, o := range orgs {
		if org != "" && !strings.EqualFold(o.ID, org) && !strings.EqualFold(o.DisplayName, org) {
			continue
		}
		for _, h := range o.Hubs {
			if hub != "" && !sameHub(h.URL, hub) {
				continue
			}
			n++
			fmt.Fprintf(tw, "organisation\t%s\t%s\n", o.ID, o.DisplayName)
			fmt.Fprintf(tw, "hub\t%s\t%s\n", strings.TrimRight(h.URL, "/"), h.DisplayName)
			ws, err := p.Workspaces(ctx, h.URL, o.ID)
			if err != nil {
				fmt.Fprintf(tw, "  (cannot list workspaces: %s)\n", remote.Redact(err.Error()))
				continue
			}
			for _, w := range ws {
				fmt.Fprintf(tw, "  workspace\t%s\t%s\n", w.ID, w.Name)
			}
			fmt.Fprintln(tw)
		}
	}
	if n == 0 {
		return fmt.Errorf("discovery lists no organisation to show (%d in all)", len(orgs))
	}
	return nil
}
