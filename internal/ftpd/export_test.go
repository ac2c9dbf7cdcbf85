package ftpd_test

import "github.com/ftpsync-mount/ftpsync-mount/internal/ftpd"

func ftpdStart(root, addr string) (*ftpd.Server, error) {
	return ftpd.Start(ftpd.Options{Root: root, Addr: addr, User: "u", Password: "p"})
}
