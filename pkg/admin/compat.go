package admin

import (
	"flag"
	"fmt"

	"github.com/posthorn/posthorn/pkg/config"
)

// compatConfig parses the -C FILE option that Postfix's sendmail, mailq and
// newaliases take, and loads the configuration.
func compatConfig(prog string, args []string, env Env) (*config.Config, int) {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	path := fs.String("C", config.PathFromEnv(), "configuration file")
	fs.Bool("v", false, "verbose (accepted for compatibility)")
	if err := fs.Parse(args); err != nil {
		return nil, exitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", prog, err)
		return nil, exitConfig
	}
	return cfg, exitOK
}

// Mailq lists the queue as Postfix's mailq does.
func Mailq(args []string, env Env) int {
	cfg, st := compatConfig("mailq", args, env)
	if cfg == nil {
		return st
	}
	return listQueue(cfg, env)
}

// Newaliases validates the aliases file as Postfix's newaliases does.
func Newaliases(args []string, env Env) int {
	cfg, st := compatConfig("newaliases", args, env)
	if cfg == nil {
		return st
	}
	return checkAliases(cfg, env, "newaliases")
}
