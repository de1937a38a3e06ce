// Command pop3-login is posthorn's unprivileged POP3 login process,
// started by master (pop3-login(8)).
package main

import (
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/pop3d"
)

func main() {
	d := daemon.Start("pop3-login")
	if err := pop3d.RunLogin(d); err != nil {
		d.Log.Fatal("%v", err)
	}
}
