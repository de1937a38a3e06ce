// Command sendmail is posthorn's Postfix-compatible sendmail(1); installed
// also as mailq and newaliases, it acts as those by the name it runs under.
package main

import (
	"os"

	"github.com/posthorn/posthorn/pkg/admin"
	"github.com/posthorn/posthorn/pkg/sendmail"
)

func main() {
	os.Exit(sendmail.Main(os.Args[0], os.Args[1:], admin.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
