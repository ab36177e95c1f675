package tdstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

const defaultImage = "postgres:15-alpine"

// dockerEngine reports whether a Docker engine answers, and why not when it does not.
//
// It only asks testcontainers-go for a client: that looks for the engine
// (DOCKER_HOST, ~/.testcontainers.properties, the default and rootless sockets)
// and calls the engine's info endpoint on each candidate, within ctx. It starts
// no container, so the reaper (Ryuk) starts only in startContainer.
func dockerEngine() (ok bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer func() {
		// Some discovery paths of testcontainers-go panic instead of returning an error.
		if r := recover(); r != nil {
			ok, err = false, fmt.Errorf("panic: %v", r)
		}
	}()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return false, err
	}
	_ = cli.Close()
	return true, nil
}

// startContainer runs PostgreSQL in a container; the returned server's stop terminates it.
func startContainer() (*server, error) {
	image := os.Getenv("TDS_TEST_POSTGRES_IMAGE")
	if image == "" {
		image = defaultImage
	}
	// Long enough to pull the image on a cold machine.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ctr, err := tcpostgres.Run(ctx, image,
		tcpostgres.BasicWaitStrategies(),
		testcontainers.WithCmd(append([]string{"postgres"}, settingsArgs()...)...),
	)
	if err != nil {
		return nil, errors.Join(err, testcontainers.TerminateContainer(ctr))
	}
	stop := func() error { return testcontainers.TerminateContainer(ctr) }
	u, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	s, err := newServer(u, "PostgreSQL container "+image+" at "+redact(u), stop)
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	return s, nil
}

// settings make a throwaway server fast: durability is worth nothing in tests.
var settings = []string{
	"fsync=off",
	"synchronous_commit=off",
	"full_page_writes=off",
	"max_connections=300",
}

// settingsArgs returns settings as postgres command-line arguments.
func settingsArgs() []string {
	args := make([]string, 0, 2*len(settings))
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	return args
}
