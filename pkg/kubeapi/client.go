// Package kubeapi is the daemon's and the CLI's narrow client of the
// Kubernetes API: the few resources they read and write, over
// k8s.io/client-go/rest with a runtime.Scheme of its own that holds only
// those types (resource.k8s.io/v1, events.k8s.io/v1 and the meta types
// every group needs). It replaces k8s.io/client-go/kubernetes, whose
// scheme registers every API group at start, a cost the node daemon pays
// in resident memory for types it never uses.
//
// Errors of the API server come back as *apierrors.StatusError (decoded
// from the server's Status), so apierrors.IsNotFound, IsConflict and
// IsAlreadyExists work on them as with the generated clients. Consumers
// declare the subset of methods they use as a small interface of their
// own; *Client satisfies them.
package kubeapi

// This file builds the Client: the scheme, one REST client per API group
// version, and the client configuration from a kubeconfig or the pod's
// service account.

import (
	"errors"
	"fmt"

	eventsv1 "k8s.io/api/events/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	// DefaultUserAgent is the user agent of a config that sets none.
	DefaultUserAgent = "sriov-dra"
	// DefaultQPS and DefaultBurst pace each API group's requests when
	// the config sets no limits: client-go's own defaults, which the
	// generated clientset applied per group before.
	DefaultQPS   = 5
	DefaultBurst = 10
)

// Client reads and writes the resources the driver uses. It is safe for
// concurrent use.
type Client struct {
	scheme *runtime.Scheme
	params runtime.ParameterCodec
	// resource is resource.k8s.io/v1, events events.k8s.io/v1, core the
	// legacy core group (nodes, read as metadata only).
	resource, events, core *rest.RESTClient
}

// NewScheme returns a scheme of only the types the Client sends and
// receives: resource.k8s.io/v1, events.k8s.io/v1 and, for the core group,
// the meta types (Status, options, WatchEvent). Nothing of core/v1 itself
// is registered: the Node is read as metadata.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{resourceapi.AddToScheme, eventsv1.AddToScheme} {
		if err := add(s); err != nil {
			// Only a programming error (a type registered twice under
			// two names) gets here.
			panic(fmt.Sprintf("kubeapi scheme: %v", err))
		}
	}
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return s
}

// NewForConfig returns a Client for cfg. A config without a user agent
// gets DefaultUserAgent; one without QPS and Burst gets DefaultQPS and
// DefaultBurst for each API group. Requests and answers are JSON.
func NewForConfig(cfg *rest.Config) (*Client, error) {
	if cfg == nil {
		return nil, errors.New("kubeapi: no client config")
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.QPS == 0 {
		cfg.QPS = DefaultQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeapi: HTTP client for %s: %w", cfg.Host, err)
	}
	c := &Client{scheme: NewScheme()}
	c.params = runtime.NewParameterCodec(c.scheme)
	codecs := serializer.NewCodecFactory(c.scheme)
	for _, g := range []struct {
		gv      schema.GroupVersion
		apiPath string
		into    **rest.RESTClient
	}{
		{resourceapi.SchemeGroupVersion, "/apis", &c.resource},
		{eventsv1.SchemeGroupVersion, "/apis", &c.events},
		{schema.GroupVersion{Version: "v1"}, "/api", &c.core},
	} {
		gc := rest.CopyConfig(cfg)
		gv := g.gv
		gc.GroupVersion, gc.APIPath = &gv, g.apiPath
		gc.NegotiatedSerializer = codecs.WithoutConversion()
		gc.ContentType, gc.AcceptContentTypes = runtime.ContentTypeJSON, runtime.ContentTypeJSON
		rc, err := rest.RESTClientForConfigAndClient(gc, hc)
		if err != nil {
			return nil, fmt.Errorf("kubeapi: REST client for %s: %w", gv, err)
		}
		*g.into = rc
	}
	return c, nil
}

// Scheme is the client's scheme (the recorder derives object kinds from
// it). Callers must not add to it.
func (c *Client) Scheme() *runtime.Scheme { return c.scheme }

// LoadConfig loads the client config from the kubeconfig file at path,
// with context ("" for its current context), or, when path and context
// are both "", the pod's in-cluster config (service account token and
// the KUBERNETES_SERVICE_HOST/PORT environment).
func LoadConfig(path, context string) (*rest.Config, error) {
	if path == "" && context == "" {
		return rest.InClusterConfig()
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
}
