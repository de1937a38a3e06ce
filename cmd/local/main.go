// Command local is posthorn's local delivery agent, started by master
// (local(8)). Run as "local worker HOST" it is the per-owner delivery worker
// the daemon starts itself.
package main

import (
	"os"

	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/local"
	"github.com/posthorn/posthorn/pkg/maillog"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == local.WorkerArg {
		if err := local.RunWorker(os.Args[2]); err != nil {
			maillog.Fatal("%v", err)
		}
		return
	}
	d := daemon.Start("local")
	if err := local.Run(d); err != nil {
		d.Log.Fatal("%v", err)
	}
}
