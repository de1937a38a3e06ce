// Command auth is posthorn's authentication daemon, started by master: it
// checks the passwords smtpd and the login processes ask about on
// <spool>/private/auth (see package auth).
//
// With -pam-config it prints the content of /etc/pam.d/posthorn and
// exits, for the installer.
package main

import (
	"flag"
	"fmt"

	"github.com/posthorn/posthorn/pkg/auth"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
)

func main() {
	// daemon.Start takes -c from here, as it is defined and parsed.
	flag.String("c", config.PathFromEnv(), "configuration `file`")
	pamConfig := flag.Bool("pam-config", false, "print /etc/pam.d/"+auth.PAMService+" and exit")
	flag.Parse()
	if *pamConfig {
		fmt.Print(auth.PAMConfig)
		return
	}
	d := daemon.Start("auth")
	if err := auth.Run(d); err != nil {
		d.Log.Fatal("%v", err)
	}
}
