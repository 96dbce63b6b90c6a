// Echo server on gorilla/websocket (Debian's golang-github-gorilla-websocket-dev), GOMAXPROCS=1.
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o go-echo echo.go
//	./go-echo PORT
//
// Listens on 127.0.0.1:PORT and echoes every text message as text and every binary message as binary, on
// any path, with one goroutine per connection (gorilla's usual shape). GOMAXPROCS defaults to 1 here
// unless the environment sets it. gorilla answers pings and close frames itself; the read limit is left
// at its default (none). gorilla does not check UTF-8 in text messages.
package main

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"

	"github.com/gorilla/websocket"
)

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	CheckOrigin:     func(*http.Request) bool { return true },
}

func echo(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	for {
		kind, msg, err := conn.ReadMessage()
		if err != nil {
			return
		}
		if err := conn.WriteMessage(kind, msg); err != nil {
			return
		}
	}
}

func main() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-echo PORT")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[1])
	if err != nil || port <= 0 || port > 65535 {
		fmt.Fprintln(os.Stderr, "usage: go-echo PORT")
		os.Exit(2)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	fmt.Printf("go-echo listening on ws://%s (GOMAXPROCS=%d)\n", addr, runtime.GOMAXPROCS(0))
	if err := http.ListenAndServe(addr, http.HandlerFunc(echo)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
