package local

import (
	"errors"

	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/daemon"
)

// Run is the local daemon: it serves delivery requests from qmgr on the
// "local" socket inherited from master until told to stop, finishing the
// deliveries in flight.
func Run(d *daemon.D) error {
	ls := d.Listeners["local"]
	if len(ls) == 0 {
		return errors.New("local: no listening socket inherited from master")
	}
	a := New(d.Config(), d.Log)
	defer a.Close()
	go func() {
		for cfg := range d.Reload {
			a.SetConfig(cfg)
		}
	}()
	srv := &agent.Server{Handler: a.Deliver}
	return srv.Serve(d.Ctx, ls[0])
}
