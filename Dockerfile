# The tds reference server. Two stages: the Go toolchain builds a static
# binary, and the final image holds that binary, CA certificates (for the
# Zoho API over HTTPS) and a non-root user, with no shell or package manager.
#
#   docker build -t tds-server --build-arg VERSION=v0.1.0 .
#
# scripts/image builds the same image without pulling a builder (the binary
# is built on the host), with docker or buildah.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/server ./examples/server
# The data directory, owned by the user the server runs as: the default
# SQLite file lives there.
RUN mkdir -p /out/data && chown 65532:65532 /out/data

# distroless/static: CA certificates, /etc/passwd with nonroot (65532),
# tzdata, and nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/server /server
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
VOLUME /data
ENV TDS_DATABASE_URL=sqlite:/data/tds.db
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/server", "healthcheck"]
ENTRYPOINT ["/server"]
