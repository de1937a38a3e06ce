// Command pop3d is posthorn's POP3 mail process: under master it is the
// root dispatcher of handed-over sessions; run as "pop3d worker -c FILE"
// it is the per-owner worker that serves them (pop3d(8)).
package main

import (
	"context"
	"os"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/login"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/pop3d"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == login.WorkerArg && os.Args[2] == "-c" {
		cfg, err := config.Load(os.Args[3])
		if err != nil {
			maillog.Fatal("%v", err)
		}
		log := maillog.Setup(cfg.Log.SyslogName, "pop3", cfg.Log.Target)
		if err := pop3d.RunWorker(context.Background(), cfg, log); err != nil {
			log.Fatal("%v", err)
		}
		return
	}
	d := daemon.Start("pop3d")
	if err := pop3d.RunDispatcher(d); err != nil {
		d.Log.Fatal("%v", err)
	}
}
