# syntax=docker/dockerfile:1
# The apps' image: one Dockerfile for the four commands, APP names the one
# built (publisher, subscriber, deadletters, retention). Build from the
# repository root (the build context):
#   docker build --build-arg APP=subscriber -t dapr-pub-sub-subscriber .
# internal/harness/deploy/dockerfile_test.go checks this file and runs its go
# build for each app.

# The Go of go.mod's go line (the official images set GOTOOLCHAIN=local), on
# the build machine's platform: it cross-compiles for the target's below.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG APP
RUN case "${APP}" in publisher|subscriber|deadletters|retention) ;; *) echo "APP=${APP}: build with --build-arg APP=publisher|subscriber|deadletters|retention" >&2; exit 1 ;; esac
# The target platform, set by BuildKit (e.g. docker buildx build --platform
# linux/amd64,linux/arm64).
ARG TARGETOS
ARG TARGETARCH
# A static binary: no cgo, so it runs on distroless/static (no libc).
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags="-s -w" -o /out/app ./cmd/${APP}

# distroless/static: CA certificates, tzdata and /etc/passwd, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/app /app
# The subscriber listens on every interface, so that probes from outside the
# container (the kubelet) reach it; its sidecar calls it on loopback. Every
# route but /healthz, /readyz and /metrics requires the app token
# (APP_API_TOKEN). The other apps have no such setting.
ENV APP_ADDRESS=0.0.0.0
# 65532:65532 is distroless's nonroot:nonroot, given by number so that
# Kubernetes can check runAsNonRoot against the image.
USER 65532:65532
# No EXPOSE: the ports differ by app; each Deployment in deploy/ names its
# container's ports (the subscriber's 8001 HTTP and 8002 gRPC, the
# publisher's and the keeper's metrics).
ENTRYPOINT ["/app"]
