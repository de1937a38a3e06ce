// Command pickup queues mail submitted by local users through sendmail,
// started by master (pickup(8)).
package main

import (
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/pickup"
)

func main() {
	d := daemon.Start("pickup")
	if err := pickup.Run(d); err != nil {
		d.Log.Fatal("%v", err)
	}
}
