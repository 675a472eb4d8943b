// SPDX-License-Identifier: Apache-2.0

// Command modset keeps the module set of this repository in order: one
// dependency table (modules.txt) and one version (VERSION), read by every
// tool that needs them.
//
//	modset gomod [-check]        write each go.mod's replace block and sibling requires
//	modset check-deps            compare every import with the table
//	modset docs [-check]         write the table into docs/architecture.md
//	modset closure MODULE        print what MODULE may import, one a line
//	modset modules               print every module of the set present in the repository
//	modset version               print the version of the set
//	modset set-version vX.Y.Z    write VERSION and every go.mod's sibling requires
//	modset tags [-create]        print (or create) the git tags <module>/vX.Y.Z
//	modset proxy DIR             write a file-based module proxy of the set at its version
//
// It runs from the repository root (the Makefile's targets call it) and never
// needs the network.
package main

import (
	"flag"
	"fmt"
	"os"
)

const usage = `usage: modset gomod [-check] | check-deps | docs [-check] | closure MODULE | modules |
       version | set-version vX.Y.Z | tags [-create] | proxy DIR`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet("modset "+cmd, flag.ExitOnError)
	check := fs.Bool("check", false, "report drift instead of writing")
	create := fs.Bool("create", false, "create the tags in the local repository")
	_ = fs.Parse(args)
	args = fs.Args()

	set, err := loadSet(".")
	if err != nil {
		fail(err)
	}
	switch {
	case cmd == "gomod":
		err = set.writeGoMods(*check)
	case cmd == "check-deps":
		err = set.checkDeps()
	case cmd == "docs":
		err = set.writeDocs(*check)
	case cmd == "closure" && len(args) == 1:
		var mods []string
		if mods, err = set.closure(args[0]); err == nil {
			for _, m := range mods {
				fmt.Println(m)
			}
		}
	case cmd == "modules":
		for _, m := range set.Present() {
			fmt.Println(m.Dir)
		}
	case cmd == "version":
		fmt.Println(set.Version)
	case cmd == "set-version" && len(args) == 1:
		err = set.setVersion(args[0])
	case cmd == "tags":
		err = set.tags(*create)
	case cmd == "proxy" && len(args) == 1:
		err = set.writeProxy(args[0])
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "modset:", err)
	os.Exit(1)
}
