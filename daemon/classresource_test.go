package daemon

import (
	"context"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sriov-dra/sriov-dra/internal/apitest"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
)

// The extended resource name of a DeviceClass, read through the API client.
func TestClassResourceName(t *testing.T) {
	srv := apitest.New(t)
	explicit := "example.com/fast-vf"
	srv.Add(
		&resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Spec: resourceapi.DeviceClassSpec{ExtendedResourceName: &explicit}},
		&resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	)
	api, err := kubeapi.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	get := classResourceName(api)
	for _, tc := range []struct {
		class, want, wantErr string
	}{
		{class: "fast", want: explicit},
		{class: "plain", want: resourceapi.ResourceDeviceClassPrefix + "plain"},
		{class: "gone", wantErr: "get DeviceClass gone"},
	} {
		t.Run(tc.class, func(t *testing.T) {
			got, err := get(context.Background(), tc.class)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "not found") {
					t.Fatalf("error %v, want one containing %q and the cause", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("= %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
