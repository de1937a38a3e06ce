// Command imap-login is posthorn's unprivileged IMAP login process,
// started by master (imap-login(8)).
package main

import (
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/imapd"
)

func main() {
	d := daemon.Start("imap-login")
	if err := imapd.RunLogin(d); err != nil {
		d.Log.Fatal("%v", err)
	}
}
