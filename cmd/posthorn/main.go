// Command posthorn is posthorn's admin tool (posthorn(8)).
package main

import (
	"os"

	"github.com/posthorn/posthorn/pkg/admin"
)

func main() {
	os.Exit(admin.Main(os.Args[1:], admin.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
