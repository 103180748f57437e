// Command testtool is a tiny static test binary for the sandbox cluster's own tests (tests/sandbox).
//
//	tool serve [addr]      HTTP server: "hello from <hostname>"
//	tool sleep             sleep until signalled
//	tool alloc <MiB>       allocate and touch memory, step by step (OOM test)
//	tool kapi              GET /version of the API server via the kubernetes Service
//	tool echo args...      print args
//	tool fetch <url>       GET a URL, print the status and the start of the body
//	tool fail <code>       exit with that code (Job retries)
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tool serve|sleep|alloc|kapi|echo")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		addr := ":8080"
		if len(os.Args) > 2 {
			addr = os.Args[2]
		}
		host, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s\n", host)
		})
		fmt.Println("serving on", addr)
		if err := http.ListenAndServe(addr, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "sleep":
		fmt.Println("sleeping")
		s := make(chan os.Signal, 1)
		signal.Notify(s, syscall.SIGINT, syscall.SIGTERM)
		<-s
	case "alloc":
		mib, _ := strconv.Atoi(os.Args[2])
		var keep [][]byte
		for i := 1; i <= mib; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			keep = append(keep, b)
			if i%16 == 0 {
				fmt.Printf("allocated %d MiB\n", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
		fmt.Println("done", len(keep))
		select {}
	case "kapi":
		const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
		ca, err := os.ReadFile(sa + "ca.crt")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		tok, _ := os.ReadFile(sa + "token")
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		for _, p := range []string{"/version", "/api/v1/namespaces/default/pods"} {
			u := "https://" + net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")) + p
			req, _ := http.NewRequest("GET", u, nil)
			req.Header.Set("Authorization", "Bearer "+string(tok))
			resp, err := c.Do(req)
			if err != nil {
				fmt.Fprintln(os.Stderr, "kapi:", err)
				os.Exit(1)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 400))
			resp.Body.Close()
			fmt.Printf("GET %s -> %s\n%s\n", u, resp.Status, body)
		}
	case "echo":
		fmt.Println(os.Args[2:])
	case "fetch":
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "fetch:", err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		fmt.Printf("%s\n%s\n", resp.Status, body)
	case "fail":
		code, _ := strconv.Atoi(os.Args[2])
		fmt.Println("failing with exit code", code)
		os.Exit(code)
	default:
		fmt.Fprintln(os.Stderr, "unknown subcommand", os.Args[1])
		os.Exit(2)
	}
}
