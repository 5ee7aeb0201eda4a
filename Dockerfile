# cognito-gate: a distroless image with the binary, the example config and policy.
# Build: docker build -t cognito-gate .
#
# The default image is built without the `dev` feature: it has no `demo` and no
# `dev-issuer` subcommand, and no token-signing code. The development issuer that
# docker-compose.yml runs is a separate target: docker build --target dev-issuer .

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml or
# Cargo.lock change, not when src/ does.
COPY Cargo.toml Cargo.lock ./
COPY crates/dev-issuer/Cargo.toml crates/dev-issuer/
RUN mkdir -p src benches config crates/dev-issuer/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs config/policy.toml crates/dev-issuer/src/lib.rs \
 && echo 'fn main() {}' > benches/authorize.rs \
 && cargo build --release --locked --no-default-features \
 && rm -rf src benches config crates/dev-issuer/src
COPY build.rs ./
COPY crates ./crates
COPY src ./src
COPY benches ./benches
COPY config ./config
# The image has no .git: pass the commit for --version and cognito_gate_build_info,
# e.g. --build-arg GATE_BUILD_COMMIT=$(git rev-parse --short=12 HEAD).
ARG GATE_BUILD_COMMIT=""
RUN touch src/main.rs src/lib.rs crates/dev-issuer/src/lib.rs \
 && cargo build --release --locked --no-default-features

# The same binary with the `dev` feature, for the development issuer only.
FROM build AS dev-build
RUN cargo build --release --locked \
 && cp target/release/cognito-gate /cognito-gate-dev

# DEVELOPMENT ONLY: mints tokens that a gate trusting its JWKS accepts.
FROM gcr.io/distroless/cc-debian12:nonroot AS dev-issuer
COPY --from=dev-build /cognito-gate-dev /usr/local/bin/cognito-gate
USER 65532:65532
EXPOSE 9400
ENTRYPOINT ["/usr/local/bin/cognito-gate"]
CMD ["dev-issuer", "--listen", "0.0.0.0:9400"]

# The production image: the default target.
FROM gcr.io/distroless/cc-debian12:nonroot
# The version agrees with Cargo.toml and CHANGELOG.md (tests/it/release.rs checks it).
LABEL org.opencontainers.image.title="cognito-gate" \
      org.opencontainers.image.description="Authorization sidecar that verifies Amazon Cognito tokens and enforces a path policy" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
COPY LICENSE-MIT LICENSE-APACHE /usr/share/doc/cognito-gate/
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
