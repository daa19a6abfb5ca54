package netattach

import (
	"context"
	"time"
)

// The steps of an attach between the caller and the kernel, as reported to
// a StepObserver. They let a benchmark show what an attach costs beyond
// the kernel's move.
const (
	// StepOpenPodHandle opens a netlink handle in the pod netns.
	StepOpenPodHandle = "open-pod-handle"
	// StepFind finds the device on the host (and checks the pod name).
	StepFind = "find"
	// StepMove is the move (and rename) into the pod netns.
	StepMove = "move"
	// StepLink sets MTU and MAC, adds the addresses and brings it up.
	StepLink = "link"
	// StepRoutes adds the routes.
	StepRoutes = "routes"
	// StepAnnounce sends the gratuitous ARPs / unsolicited NAs.
	StepAnnounce = "announce"
	// StepClose closes the pod-side handle and the netns file.
	StepClose = "close"
)

// StepObserver is told how long each step of an attach took.
type StepObserver func(step string, took time.Duration)

type stepKey struct{}

// WithStepObserver returns ctx with obs: Attach called with it reports
// each of its steps to obs (from the calling goroutine).
func WithStepObserver(ctx context.Context, obs StepObserver) context.Context {
	return context.WithValue(ctx, stepKey{}, obs)
}

// StepTimer reports the time since its last mark to the StepObserver of
// the context it was made from; with none it does nothing. Attach times
// its own steps with it, and so does a caller that adds steps of its own
// around Attach (the NRI plugin).
type StepTimer struct {
	obs  StepObserver
	last time.Time
}

// NewStepTimer returns a StepTimer for the observer in ctx
// (WithStepObserver), started now.
func NewStepTimer(ctx context.Context) *StepTimer {
	obs, _ := ctx.Value(stepKey{}).(StepObserver)
	if obs == nil {
		return &StepTimer{}
	}
	return &StepTimer{obs: obs, last: time.Now()}
}

// Mark reports step as ending now; the next step starts now.
func (t *StepTimer) Mark(step string) {
	if t.obs == nil {
		return
	}
	now := time.Now()
	t.obs(step, now.Sub(t.last))
	t.last = now
}
