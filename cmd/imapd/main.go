// Command imapd is posthorn's IMAP mail process: under master it is the
// root dispatcher of sessions imap-login hands over; run as
// "imapd worker -c FILE" it is the per-owner worker that serves them
// (imapd(8)).
package main

import (
	"context"
	"os"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/imapd"
	"github.com/posthorn/posthorn/pkg/login"
	"github.com/posthorn/posthorn/pkg/maillog"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == login.WorkerArg && os.Args[2] == "-c" {
		cfg, err := config.Load(os.Args[3])
		if err != nil {
			maillog.Fatal("%v", err)
		}
		log := maillog.Setup(cfg.Log.SyslogName, "imap", cfg.Log.Target)
		if err := imapd.RunWorker(context.Background(), cfg, log); err != nil {
			log.Fatal("%v", err)
		}
		return
	}
	d := daemon.Start("imapd")
	if err := imapd.RunDispatcher(d); err != nil {
		d.Log.Fatal("%v", err)
	}
}
