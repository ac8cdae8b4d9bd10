# sesrelay container image.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t sesrelay .
#
# The build stage runs deploy/build.sh, the same script CI runs, so the
# image's binary cannot drift from the tested one. The final image is
# distroless static: no shell, no package manager, uid 65532.

FROM golang:1.26 AS build
WORKDIR /src
# Module downloads get their own layer so that source edits do not refetch them.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN VERSION="${VERSION}" sh deploy/build.sh

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/sesrelay /usr/local/bin/sesrelay
# The nonroot user of distroless; it cannot bind ports below 1024, so SMTP
# listens on 2587 (STARTTLS) and 2465 (implicit TLS) and the load balancer
# or Service maps 587 and 465 onto them.
USER 65532:65532
EXPOSE 2587 2465 9090
# GETs /healthz on the admin listener (127.0.0.1:9090 unless --address says
# otherwise); exit 0 healthy, 1 not.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
	CMD ["/usr/local/bin/sesrelay", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/sesrelay"]
CMD ["serve", "--config", "/etc/sesrelay/config.yaml"]
