# cognito-gate: a distroless image with the binary, the example config and policy.
# Build: docker build -t cognito-gate .

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml or
# Cargo.lock change, not when src/ does.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches config \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs config/policy.toml \
 && echo 'fn main() {}' > benches/authorize.rs \
 && cargo build --release --locked \
 && rm -rf src benches config
COPY src ./src
COPY benches ./benches
COPY config ./config
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/cognito-gate /usr/local/bin/cognito-gate
COPY config/container.toml /etc/cognito-gate/cognito-gate.toml
COPY config/policy.toml /etc/cognito-gate/policy.toml
# The shipped example runs with no mount; override any key with COGNITO_GATE_*
# variables or mount your own files over /etc/cognito-gate/. This variable only names
# the config file, for `cognito-gate health` in the HEALTHCHECK.
ENV COGNITO_GATE_CONFIG=/etc/cognito-gate/cognito-gate.toml
USER 65532:65532
# 8080: the proxy (listen). 9090: /healthz and /readyz (admin_listen).
EXPOSE 8080 9090
# distroless has no shell or curl: the binary probes its own /readyz.
HEALTHCHECK --interval=5s --timeout=4s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/cognito-gate", "health"]
ENTRYPOINT ["/usr/local/bin/cognito-gate"]
CMD ["run", "--config", "/etc/cognito-gate/cognito-gate.toml"]
