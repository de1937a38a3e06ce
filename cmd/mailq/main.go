// Command mailq is posthorn's Postfix-compatible mailq(1).
package main

import (
	"os"

	"github.com/posthorn/posthorn/pkg/admin"
)

func main() {
	os.Exit(admin.Mailq(os.Args[1:], admin.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
