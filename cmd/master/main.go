// Command master supervises posthorn's daemons (see pkg/master).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/master"
)

func main() {
	cfgPath := flag.String("c", config.PathFromEnv(), "configuration `file`")
	verbose := flag.Bool("v", false, "log each process start and stop")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: master [-v] [-c file]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := master.Run(*cfgPath, *verbose); err != nil {
		maillog.Fatal("%v", err)
	}
}
