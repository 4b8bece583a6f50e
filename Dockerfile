# The engine as a static binary on a minimal image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/loyalty ./cmd/loyalty

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/loyalty /usr/local/bin/loyalty
ENV LOYALTY_ADDR=:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/loyalty", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/loyalty"]
CMD ["serve"]
