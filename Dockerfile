# inferd's container image, for deploy/ (KServe runtime and standalone):
#   docker build -t inferd .
# Build stage: the toolchain and what llama.cpp and the gRPC protos need.
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang libclang-dev protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p inferd \
    && strip target/release/inferd

# Run stage: the binary, the committed small models and the catalog; no shell
# tools beyond Debian slim's, a fixed non-root user, nothing written but
# --data-dir (mount a volume there; the root filesystem may be read-only).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 inferd \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin inferd \
    && mkdir -p /var/lib/inferd \
    && chown 10001:10001 /var/lib/inferd
COPY --from=build /src/target/release/inferd /usr/local/bin/inferd
COPY models /opt/inferd/models
COPY catalog /opt/inferd/catalog
USER 10001:10001
# 8000/8001: inferd's own ports; 8080/8081: KServe's, when run with --model_dir.
EXPOSE 8000 8001 8080 8081
ENTRYPOINT ["/usr/local/bin/inferd"]
CMD ["serve", "--models=/opt/inferd/models", "--catalog=/opt/inferd/catalog/model-services.json", \
     "--data-dir=/var/lib/inferd", "--host=0.0.0.0", "--insecure"]
