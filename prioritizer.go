package tds

import "context"

// Prioritizer chooses the queue priority of a valid event: 1 is the highest,
// 10 the lowest; values outside that range are clamped.
//
// When it runs: right after the [Validator] accepted the event, once per
// [Processor.Process] or [Processor.ProcessTx] call, before the event is
// stored and outside any transaction tds opens; for redeliveries too, whose
// job keeps the priority it got first. It is not called for invalid
// events. It may be called concurrently. It must not modify ev.
type Prioritizer interface {
	Priority(ctx context.Context, ev *Event) int
}

// PrioritizerFunc adapts a function to [Prioritizer].
type PrioritizerFunc func(ctx context.Context, ev *Event) int

// Priority calls f(ctx, ev).
func (f PrioritizerFunc) Priority(ctx context.Context, ev *Event) int { return f(ctx, ev) }

var _ Prioritizer = PrioritizerFunc(nil)

// DefaultPrioritizer returns the prioritizer used unless [WithPrioritizer]
// says otherwise: the entity type's Priority from reg (invoices 2, products
// 5, price lists 8, ...), or [DefaultPriority] for a type reg lacks.
func DefaultPrioritizer(reg *Registry) Prioritizer {
	return PrioritizerFunc(func(_ context.Context, ev *Event) int {
		if t, ok := reg.typeOf(ev); ok {
			return t.Priority
		}
		return DefaultPriority
	})
}

func clampPriority(p int) int {
	return min(max(p, 1), 10)
}
