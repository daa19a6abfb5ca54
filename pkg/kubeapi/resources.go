package kubeapi

// This file holds the requests: ResourceClaims (get, list, status apply),
// ResourceSlices (list, watch, create, update, delete), DeviceClasses
// (get), Events (create, patch) and the Node's UID.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

const (
	resClaims   = "resourceclaims"
	resSlices   = "resourceslices"
	resClasses  = "deviceclasses"
	resEvents   = "events"
	resNodes    = "nodes"
	subresource = "status"
)

// metadataOnly asks the API server for an object's metadata only (a
// PartialObjectMetadata), with the whole object as the fallback of a
// server that cannot.
const metadataOnly = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"

// GetClaim reads a ResourceClaim.
func (c *Client) GetClaim(ctx context.Context, namespace, name string) (*resourceapi.ResourceClaim, error) {
	out := &resourceapi.ResourceClaim{}
	if err := c.resource.Get().Namespace(namespace).Resource(resClaims).Name(name).Do(ctx).Into(out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListClaims lists the ResourceClaims of a namespace (metav1.NamespaceAll:
// of all namespaces).
func (c *Client) ListClaims(ctx context.Context, namespace string, opts metav1.ListOptions) (*resourceapi.ResourceClaimList, error) {
	out := &resourceapi.ResourceClaimList{}
	err := c.resource.Get().Namespace(namespace).Resource(resClaims).VersionedParams(&opts, c.params).
		Timeout(timeoutOf(opts)).Do(ctx).Into(out)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ApplyClaimStatus server-side applies body (the JSON of a partial
// ResourceClaim: apiVersion, kind, metadata with name, namespace and
// optionally uid as a precondition, and the status fields the field
// manager owns) to the claim's status subresource.
func (c *Client) ApplyClaimStatus(ctx context.Context, namespace, name string, body []byte, opts metav1.PatchOptions) (*resourceapi.ResourceClaim, error) {
	out := &resourceapi.ResourceClaim{}
	err := c.resource.Patch(types.ApplyPatchType).Namespace(namespace).Resource(resClaims).Name(name).SubResource(subresource).
		VersionedParams(&opts, c.params).Body(body).Do(ctx).Into(out)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListSlices lists ResourceSlices (they are cluster-scoped); the field
// selectors spec.nodeName and spec.driver narrow it on the server.
func (c *Client) ListSlices(ctx context.Context, opts metav1.ListOptions) (*resourceapi.ResourceSliceList, error) {
	out := &resourceapi.ResourceSliceList{}
	err := c.resource.Get().Resource(resSlices).VersionedParams(&opts, c.params).Timeout(timeoutOf(opts)).Do(ctx).Into(out)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// WatchSlices watches ResourceSlices from opts.ResourceVersion.
func (c *Client) WatchSlices(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.resource.Get().Resource(resSlices).VersionedParams(&opts, c.params).Timeout(timeoutOf(opts)).Watch(ctx)
}

// CreateSlice creates a ResourceSlice (metadata.generateName works).
func (c *Client) CreateSlice(ctx context.Context, s *resourceapi.ResourceSlice) (*resourceapi.ResourceSlice, error) {
	out := &resourceapi.ResourceSlice{}
	if err := c.resource.Post().Resource(resSlices).Body(s).Do(ctx).Into(out); err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateSlice replaces a ResourceSlice; its metadata.resourceVersion, when
// set, must be the stored one (else a Conflict).
func (c *Client) UpdateSlice(ctx context.Context, s *resourceapi.ResourceSlice) (*resourceapi.ResourceSlice, error) {
	out := &resourceapi.ResourceSlice{}
	if err := c.resource.Put().Resource(resSlices).Name(s.Name).Body(s).Do(ctx).Into(out); err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteSlice deletes a ResourceSlice. A uid other than "" is a
// precondition: a slice of that name with another UID (deleted and
// created again meanwhile) is left alone and the answer is a Conflict.
func (c *Client) DeleteSlice(ctx context.Context, name string, uid types.UID) error {
	opts := &metav1.DeleteOptions{}
	if uid != "" {
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	return c.resource.Delete().Resource(resSlices).Name(name).Body(opts).Do(ctx).Error()
}

// GetDeviceClass reads a DeviceClass.
func (c *Client) GetDeviceClass(ctx context.Context, name string) (*resourceapi.DeviceClass, error) {
	out := &resourceapi.DeviceClass{}
	if err := c.resource.Get().Resource(resClasses).Name(name).Do(ctx).Into(out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetNodeUID reads the UID of a Node, asking for its metadata only.
func (c *Client) GetNodeUID(ctx context.Context, name string) (types.UID, error) {
	res := c.core.Get().Resource(resNodes).Name(name).SetHeader("Accept", metadataOnly).Do(ctx)
	if err := res.Error(); err != nil {
		return "", err
	}
	raw, err := res.Raw()
	if err != nil {
		return "", err
	}
	var obj struct {
		Metadata struct {
			UID types.UID `json:"uid"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", fmt.Errorf("decode node %s: %w", name, err)
	}
	if obj.Metadata.UID == "" {
		return "", fmt.Errorf("node %s: the API server's answer has no metadata.uid", name)
	}
	return obj.Metadata.UID, nil
}

// CreateEvent creates an events.k8s.io/v1 Event in its namespace.
func (c *Client) CreateEvent(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	out := &eventsv1.Event{}
	if err := c.events.Post().Namespace(ev.Namespace).Resource(resEvents).Body(ev).Do(ctx).Into(out); err != nil {
		return nil, err
	}
	return out, nil
}

// PatchEvent patches an Event (the recorder's series updates are JSON
// merge patches).
func (c *Client) PatchEvent(ctx context.Context, namespace, name string, pt types.PatchType, data []byte) (*eventsv1.Event, error) {
	out := &eventsv1.Event{}
	if err := c.events.Patch(pt).Namespace(namespace).Resource(resEvents).Name(name).Body(data).Do(ctx).Into(out); err != nil {
		return nil, err
	}
	return out, nil
}

// timeoutOf is the request timeout a list or watch asks for.
func timeoutOf(opts metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*opts.TimeoutSeconds) * time.Second
}
