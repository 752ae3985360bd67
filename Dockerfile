# Static pgrecycle image: build with the Go toolchain, ship only the binary.
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t pgrecycle .
#   docker run -v $PWD/pgrecycle.toml:/etc/pgrecycle/pgrecycle.toml:ro -p 6432:6432 pgrecycle
# The config must listen on 0.0.0.0:6432 (and metrics on 0.0.0.0:9930): a
# loopback address is unreachable from outside the container.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# A cached image may predate the Go patch release go.mod asks for.
ENV GOTOOLCHAIN=auto
# Modules first, so source edits reuse the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# CGO off: the distroless static image has no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/pgrecycle ./cmd/pgrecycle

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pgrecycle /pgrecycle
# 65532 is distroless's nonroot; stated so runtimes can verify runAsNonRoot.
USER 65532:65532
# 6432: client connections; 9930: metrics and health.
EXPOSE 6432 9930
ENTRYPOINT ["/pgrecycle"]
CMD ["-config", "/etc/pgrecycle/pgrecycle.toml"]
