// Command smtp is posthorn's delivery agent for recipients in other
// domains, started by master (smtp(8)): it takes requests from qmgr on
// private/smtp and delivers them to the domains' mail exchangers or to the
// relay host over SMTP.
package main

import (
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/remote"
)

func main() {
	d := daemon.Start("smtp")
	if err := remote.Run(d); err != nil {
		d.Log.Fatal("%v", err)
	}
}
