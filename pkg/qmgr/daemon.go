package qmgr

import (
	"net"

	"github.com/posthorn/posthorn/pkg/daemon"
)

// Run is the qmgr daemon: it serves the "qmgr" socket inherited from
// master and manages the queue until told to stop.
func Run(d *daemon.D) error {
	m := New(d.Config(), d.Log)
	go func() {
		for cfg := range d.Reload {
			m.SetConfig(cfg)
		}
	}()
	var l net.Listener
	if ls := d.Listeners["qmgr"]; len(ls) > 0 {
		l = ls[0]
	}
	return m.Run(d.Ctx, l)
}
