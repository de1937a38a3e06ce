package remote

import (
	"errors"

	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/daemon"
)

// Run is the smtp daemon: it serves delivery requests from qmgr on the
// "smtp" socket inherited from master until told to stop, finishing the
// deliveries in flight.
func Run(d *daemon.D) error {
	ls := d.Listeners["smtp"]
	if len(ls) == 0 {
		return errors.New("smtp: no listening socket inherited from master")
	}
	a, err := New(d.Config(), d.Log, DefaultOptions())
	if err != nil {
		return err
	}
	defer a.Close()
	go func() {
		for cfg := range d.Reload {
			if err := a.SetConfig(cfg); err != nil {
				d.Log.Warning("%v; keeping the old configuration", err)
			}
		}
	}()
	srv := &agent.Server{Handler: a.Deliver}
	return srv.Serve(d.Ctx, ls[0])
}
