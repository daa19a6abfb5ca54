# sriov-dra image: one static binary on an empty base.
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t sriov-dra:dev .
# Without a container engine, `make image-tar` writes the same image as an OCI
# layout tar (test/ocitar) for `ctr images import`.

FROM golang:1.26 AS build
WORKDIR /src
# Module downloads are cached apart from the sources.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETARCH
# As `make build`: grpcnotrace leaves gRPC's x/net/trace out (a smaller
# binary, see the Makefile).
RUN CGO_ENABLED=0 GOOS=linux GOARCH=${TARGETARCH:-amd64} \
    go build -trimpath -tags grpcnotrace -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/sriov-dra ./cmd/sriov-dra

# The driver needs no shell, libc or certificates of its own: the API server
# CA comes from the service account mount, CNI IPAM plugins from the host's
# /opt/cni/bin (static builds), everything else from the host root mount.
FROM scratch
COPY --from=build /out/sriov-dra /usr/local/bin/sriov-dra
ENTRYPOINT ["/usr/local/bin/sriov-dra"]
