package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/evofs/evofs/remote"
)

// globalFlags apply to every command.
type globalFlags struct {
	config    string
	logLevel  string
	logFormat string
}

func (g *globalFlags) register(root *cobra.Command) {
	fl := root.PersistentFlags()
	fl.StringVar(&g.config, "config", "", "config file of flag = value lines (default $XDG_CONFIG_HOME/evofs/config when it exists)")
	fl.StringVar(&g.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&g.logFormat, "log-format", "text", "text or json")
}

// logger writes structured logs to w. Every string and error it logs
// passes through remote.Redact first: no token or link signature reaches a
// log line, whatever a caller hands it.
func (g *globalFlags) logger(w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	o := &slog.HandlerOptions{Level: l, ReplaceAttr: redactAttr}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", g.logFormat)
}

func redactAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(remote.Redact(a.Value.String()))
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
			a.Value = slog.StringValue(remote.Redact(v.Error()))
		case fmt.Stringer:
			a.Value = slog.StringValue(remote.Redact(v.String()))
		}
	}
	return a
}
