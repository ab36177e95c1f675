# The tds reference server. Two stages: the Go toolchain builds a static
# binary, and the final image, FROM scratch, holds that binary, CA
# certificates (for the Zoho API over HTTPS), a passwd entry for the
# non-root user 65532 and a data directory it owns: no shell, no package
# manager.
#
#   docker build -t tds-server --build-arg VERSION=v0.1.0 .
#
# scripts/image builds the same image without pulling a builder (the binary
# is built on the host), with docker or buildah.

# The builder is named by tag, which moves. For a reproducible build pin it
# by digest (docs/deploy.md, "The image"):
#   FROM golang:1.26-bookworm@sha256:<digest> AS build
# .dockerignore keeps .git, local databases, .env files and test output out
# of the context that COPY . . takes.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/server ./examples/server
RUN mkdir -p /out/etc/ssl/certs /out/data \
	&& cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
	&& printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/data:/sbin/nologin\n' >/out/etc/passwd \
	&& printf 'root:x:0:\nnonroot:x:65532:\n' >/out/etc/group \
	&& chown 65532:65532 /out/data

FROM scratch
COPY --from=build /out/etc /etc
COPY --from=build /out/server /server
# The default SQLite file lives in /data: mount a volume there.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
VOLUME /data
ENV TDS_DATABASE_URL=sqlite:/data/tds.db
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/server", "healthcheck"]
ENTRYPOINT ["/server"]
