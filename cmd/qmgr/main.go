// Command qmgr is posthorn's queue manager, started by master (qmgr(8)).
package main

import (
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/qmgr"
)

func main() {
	d := daemon.Start("qmgr")
	if err := qmgr.Run(d); err != nil {
		d.Log.Fatal("%v", err)
	}
}
