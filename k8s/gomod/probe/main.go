// Command probe is the cluster smoke test's only workload: a tiny HTTP server
// and the client checks run in it with kubectl exec (the images have no shell).
//
//	probe serve ADDR   answer "ok" on every path
//	probe get URL      exit 0 if URL answers 200 within 2 s
//	probe lookup NAME  exit 0 if NAME resolves
//	probe touch PATH   create PATH (a volume is writable)
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 {
		fail(fmt.Errorf("usage: probe serve ADDR | get URL | lookup NAME | touch PATH"))
	}
	arg := os.Args[2]
	switch os.Args[1] {
	case "serve":
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		fail(http.ListenAndServe(arg, nil))
	case "get":
		client := http.Client{Timeout: 2 * time.Second}
		resp, err := client.Get(arg)
		if err != nil {
			fail(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			fail(fmt.Errorf("%s: %s", arg, resp.Status))
		}
		fmt.Println(resp.Status)
	case "lookup":
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, arg)
		if err != nil {
			fail(err)
		}
		fmt.Println(addrs)
	case "touch":
		if err := os.WriteFile(arg, []byte("ok\n"), 0o600); err != nil {
			fail(err)
		}
	default:
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}
