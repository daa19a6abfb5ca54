package kubeletserver

import (
	"context"
	"fmt"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
)

// draService is the DRA v1 gRPC service kubelet prepares claims through.
// Kubelet treats a gRPC error as the failure of every claim in the call
// and a claim's Error as the failure of that claim: anything about one
// claim (not found, replaced, not allocated, its preparation failed) is
// the latter, so the other claims of the pod still get prepared.
type draService struct {
	drapb.UnsafeDRAPluginServer
	s *Server
}

// fetchClaim reads the claim kubelet named and checks it is the one kubelet
// means (same UID) and allocated.
func (d *draService) fetchClaim(ctx context.Context, c *drapb.Claim) (*resourceapi.ResourceClaim, error) {
	claim, err := d.s.cfg.Claims.GetClaim(ctx, c.Namespace, c.Name)
	if err != nil {
		return nil, fmt.Errorf("get ResourceClaim %s/%s: %w", c.Namespace, c.Name, err)
	}
	if string(claim.UID) != c.Uid {
		return nil, fmt.Errorf("ResourceClaim %s/%s has UID %s, kubelet asked for UID %s: the claim was deleted and created again", c.Namespace, c.Name, claim.UID, c.Uid)
	}
	if claim.Status.Allocation == nil {
		return nil, fmt.Errorf("ResourceClaim %s/%s (UID %s) is not allocated", c.Namespace, c.Name, c.Uid)
	}
	return claim, nil
}

func (d *draService) NodePrepareResources(ctx context.Context, req *drapb.NodePrepareResourcesRequest) (*drapb.NodePrepareResourcesResponse, error) {
	logger := klog.FromContext(ctx)
	resp := &drapb.NodePrepareResourcesResponse{Claims: make(map[string]*drapb.NodePrepareResourceResponse, len(req.Claims))}
	// The API server is asked before taking the turn: a slow GET must not
	// hold up the other daemon of a rolling update.
	claims := make([]*resourceapi.ResourceClaim, 0, len(req.Claims))
	for _, c := range req.Claims {
		claim, err := d.fetchClaim(ctx, c)
		if err != nil {
			logger.Error(err, "Cannot prepare the claim", "claim", klog.KRef(c.Namespace, c.Name), "claimUID", c.Uid)
			resp.Claims[c.Uid] = &drapb.NodePrepareResourceResponse{Error: err.Error()}
			continue
		}
		claims = append(claims, claim)
	}
	if len(claims) == 0 {
		return resp, nil
	}

	unlock, err := d.s.serial.lock()
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	defer unlock()
	results, err := d.s.plugin.PrepareResourceClaims(ctx, claims)
	if err != nil {
		return nil, fmt.Errorf("prepare %d ResourceClaims: %w", len(claims), err)
	}
	for _, claim := range claims {
		r, ok := results[claim.UID]
		switch {
		case !ok:
			r.Err = fmt.Errorf("the driver returned no result for ResourceClaim %s/%s (UID %s)", claim.Namespace, claim.Name, claim.UID)
		case r.Err == nil:
			// The metadata's CDI device goes with the first device of
			// each request, which makes the runtime mount the file.
			metaIDs := map[string]string{}
			if d.s.meta != nil {
				ids, err := d.s.meta.writeClaim(claim, r.Devices)
				if err != nil {
					// The pod still starts, only without the file.
					logger.Error(err, "Cannot write the device metadata; the containers start without it", "claim", klog.KObj(claim))
				} else {
					metaIDs = ids
				}
			}
			resp.Claims[string(claim.UID)] = &drapb.NodePrepareResourceResponse{Devices: toWireDevices(r.Devices, metaIDs)}
			continue
		}
		resp.Claims[string(claim.UID)] = &drapb.NodePrepareResourceResponse{Error: r.Err.Error()}
	}
	return resp, nil
}

// toWireDevices turns the plugin's devices into kubelet's, adding each
// request's metadata CDI device (metaIDs, by request name) to the first
// device of that request.
func toWireDevices(devs []Device, metaIDs map[string]string) []*drapb.Device {
	out := make([]*drapb.Device, 0, len(devs))
	for _, dev := range devs {
		w := &drapb.Device{
			PoolName:     dev.PoolName,
			DeviceName:   dev.DeviceName,
			CdiDeviceIds: dev.CDIDeviceIDs,
			ShareId:      (*string)(dev.ShareID),
		}
		for _, r := range dev.Requests {
			// Kubelet matches containers by request, not subrequest.
			base := baseRequest(r)
			w.RequestNames = append(w.RequestNames, base)
			if id, ok := metaIDs[base]; ok {
				w.CdiDeviceIds = append(append([]string(nil), w.CdiDeviceIds...), id)
				delete(metaIDs, base)
			}
		}
		out = append(out, w)
	}
	return out
}

// baseRequest is the request of "request/subrequest".
func baseRequest(ref string) string {
	base, _, _ := strings.Cut(ref, "/")
	return base
}

func (d *draService) NodeUnprepareResources(ctx context.Context, req *drapb.NodeUnprepareResourcesRequest) (*drapb.NodeUnprepareResourcesResponse, error) {
	claims := make([]NamespacedObject, 0, len(req.Claims))
	for _, c := range req.Claims {
		claims = append(claims, NamespacedObject{NamespacedName: types.NamespacedName{Namespace: c.Namespace, Name: c.Name}, UID: types.UID(c.Uid)})
	}
	unlock, err := d.s.serial.lock()
	if err != nil {
		return nil, fmt.Errorf("unprepare: %w", err)
	}
	defer unlock()
	results, err := d.s.plugin.UnprepareResourceClaims(ctx, claims)
	if err != nil {
		return nil, fmt.Errorf("unprepare %d ResourceClaims: %w", len(claims), err)
	}
	resp := &drapb.NodeUnprepareResourcesResponse{Claims: make(map[string]*drapb.NodeUnprepareResourceResponse, len(claims))}
	for _, c := range claims {
		err, ok := results[c.UID]
		switch {
		case !ok:
			err = fmt.Errorf("the driver returned no result for ResourceClaim %s", c)
		case err == nil && d.s.meta != nil:
			err = d.s.meta.removeClaim(c)
		}
		r := &drapb.NodeUnprepareResourceResponse{}
		if err != nil {
			r.Error = err.Error()
		}
		resp.Claims[string(c.UID)] = r
	}
	return resp, nil
}
