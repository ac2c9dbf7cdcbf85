// Command ftpsync-mount mounts a remote FTP folder as a local filesystem and
// runs pyftpsync-style one-shot sync, upload and download.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	os.Exit(run(helperArgs(os.Args)))
}

// run executes the command line and returns the process exit status.
func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(os.Stderr, "ftpsync-mount: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if isUsageError(err) {
		fmt.Fprintln(os.Stderr, "Run 'ftpsync-mount --help' for usage.")
		return exitUsage
	}
	return exitFailure
}
