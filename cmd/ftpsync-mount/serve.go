package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd"
)

func newServeCmd(g *globalOptions) *cobra.Command {
	var addr, user string
	cmd := &cobra.Command{
		Use:   "serve DIR",
		Short: "Serve a local folder over FTP (the embedded server for the demo and tests)",
		Long: `serve runs a small FTP server over DIR until interrupted. It offers MLSD,
MFMT, REST and APPE like a careful real server. The password comes from
FTPSYNC_PASSWORD; without it a random one is generated and printed once.`,
		Example: `  FTPSYNC_PASSWORD=secret ftpsync-mount serve ./site --addr 127.0.0.1:2121 --user alice
  ftpsync-mount mount ftp://alice@127.0.0.1:2121/ ~/site`,
		Args: exactArgs(1, "serve needs the folder to serve: ftpsync-mount serve DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw := os.Getenv("FTPSYNC_PASSWORD")
			generated := pw == ""
			if generated {
				var b [12]byte
				if _, err := rand.Read(b[:]); err != nil {
					return err
				}
				pw = hex.EncodeToString(b[:])
			}
			srv, err := ftpd.Start(ftpd.Options{Root: args[0], Addr: addr, User: user, Password: pw, Log: g.log})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "serving %s at ftp://%s@%s/\n", args[0], user, srv.Addr())
			if generated {
				fmt.Fprintf(out, "password (generated, shown once): %s\n", pw)
			}
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sig)
			select {
			case <-sig:
				g.log.Info("stopping the server")
				return srv.Close()
			case <-waitChan(srv.Wait):
				return fmt.Errorf("server stopped: %w", srv.Wait())
			}
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:2121", "address to listen on")
	cmd.Flags().StringVar(&user, "user", "ftp", "the user name clients log in with")
	return cmd
}

// waitChan runs a blocking wait in the background and signals when it ends.
func waitChan(wait func() error) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		wait()
		close(c)
	}()
	return c
}
