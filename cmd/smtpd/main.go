// Command smtpd is posthorn's SMTP server, started by master (smtpd(8)).
package main

import (
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/smtpd"
)

func main() {
	d := daemon.Start("smtpd")
	if err := smtpd.Run(d); err != nil {
		d.Log.Fatal("%v", err)
	}
}
