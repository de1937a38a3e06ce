// Command newaliases is posthorn's Postfix-compatible newaliases(1).
package main

import (
	"os"

	"github.com/posthorn/posthorn/pkg/admin"
)

func main() {
	os.Exit(admin.Newaliases(os.Args[1:], admin.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
