package alert

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// What the Dispatcher and the Pusher share: the settings of an attempt
// and its retries, the notifiers by name, and how Close waits.

// checkDelivery returns an error for each negative delivery setting of
// cfg (the config type's name).
func checkDelivery(cfg string, timeout time.Duration, maxAttempts int, backoffBase, backoffMax time.Duration) []error {
	var errs []error
	check := func(name string, bad bool) {
		if bad {
			errs = append(errs, fmt.Errorf("alert: %s.%s: must be >= 0", cfg, name))
		}
	}
	check("Timeout", timeout < 0)
	check("MaxAttempts", maxAttempts < 0)
	check("BackoffBase", backoffBase < 0)
	check("BackoffMax", backoffMax < 0)
	return errs
}

// notifierNames returns the names of notifiers, sorted, and an error for
// each nil notifier, named by the constructor ctor.
func notifierNames(ctor string, notifiers map[string]Notifier) ([]string, []error) {
	var errs []error
	names := make([]string, 0, len(notifiers))
	for name, n := range notifiers {
		if n == nil {
			errs = append(errs, fmt.Errorf("alert: %s: notifier %q is nil", ctor, name))
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, errs
}

// waitClosed waits for wg; when ctx ends first, it cancels the work in
// progress (cancel), still waits for wg and returns ctx's error.
func waitClosed(ctx context.Context, wg *sync.WaitGroup, cancel context.CancelFunc) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		cancel()
		return nil
	case <-ctx.Done():
		cancel()
		<-done
		return ctx.Err()
	}
}
