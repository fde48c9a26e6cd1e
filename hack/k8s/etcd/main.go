// Command etcd is the upstream etcd server: the etcd packages on PyPI and Debian are
// older than the 3.5.13 that kube-apiserver requires.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
