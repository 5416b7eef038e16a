package main

import "github.com/synban/synban/internal/testbin"

// synbanBin is cmd/synban built once per test run, into a directory any user
// may enter (tests run it as nobody too). TestMain removes it when m.Run
// returns.
var synbanBin = testbin.Binary{Pkg: testbin.Synban}
