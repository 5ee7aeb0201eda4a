//! The decision state: one policy and one set of pools, with their verifiers, key
//! store and key refresh tasks, built from the configuration and swapped whole on a
//! reload.

use std::sync::Arc;

use crate::client::JwksConnector;
use crate::config::{Config, IssuerConfig, PoolConfig};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::token::{AlbVerifier, KeyStore, Refreshers, Verifier};
use crate::trace::Tracing;

/// What one policy and one set of pools decide with: swapped whole on a reload, so
/// that a request in flight finishes under the state it started with.
pub struct State {
    pub policy: Policy,
    pub pools: Arc<Vec<PoolConfig>>,
    pub issuers: Arc<Vec<IssuerConfig>>,
    pub verifier: Arc<Verifier>,
    /// Verifies `x-amzn-oidc-data` when `[[alb]]` tables are configured.
    pub alb: Option<Arc<AlbVerifier>>,
    pub keys: KeyStore,
    /// The key refresh tasks, shared by every state that keeps these keys; they stop
    /// when the last such state is gone.
    pub refreshers: Arc<Refreshers>,
}

impl State {
    /// The state for `config`'s pools and `policy`. `seed` is the state being
    /// replaced on a reload: its keys and verified tokens are kept when the pools are
    /// the same, and its key sets seed pools with the same JWKS URL otherwise.
    pub async fn build(
        config: &Config,
        policy: Policy,
        jwks_client: JwksClient,
        metrics: Arc<Metrics>,
        tracing: &Tracing,
        seed: Option<&State>,
    ) -> State {
        // The claims the policy's conditions and `[headers.claims]` read.
        let mut claims = policy.claim_names();
        claims.extend(config.headers.claims.iter().map(|(_, c)| c.clone()));
        claims.sort();
        claims.dedup();
        let alb = match seed.and_then(|old| old.alb.as_ref()) {
            Some(old)
                if old.albs() == config.albs.as_slice()
                    && old.kept_claims() == claims.as_slice() =>
            {
                Some(old.clone())
            }
            _ if config.albs.is_empty() => None,
            _ => Some(Arc::new(
                AlbVerifier::new(
                    &config.albs,
                    config.max_token_bytes,
                    jwks_client.clone(),
                    config.jwks.fetch_timeout,
                    config.jwks.unknown_kid_cooldown,
                    config.token_cache_bytes,
                    metrics.clone(),
                )
                .keeping(claims.clone())
                .tracing(tracing.clone()),
            )),
        };
        let same_sources =
            |old: &&State| *old.pools == config.pools && *old.issuers == config.issuers;
        if let Some(old) = seed.filter(same_sources) {
            // The verified tokens are kept too, unless the policy now reads other
            // claims, which the remembered identities would lack.
            let verifier = match old.verifier.kept_claims() == claims.as_slice() {
                true => old.verifier.clone(),
                false => Arc::new(
                    Verifier::new(
                        &config.pools,
                        config.max_token_bytes,
                        config.token_cache_bytes,
                    )
                    .with_issuers(&config.issuers)
                    .counting(metrics)
                    .keeping(claims),
                ),
            };
            return State {
                policy,
                pools: old.pools.clone(),
                issuers: old.issuers.clone(),
                verifier,
                alb,
                keys: old.keys.clone(),
                refreshers: old.refreshers.clone(),
            };
        }
        let (keys, refreshers) = KeyStore::start(
            &config.pools,
            &config.issuers,
            &config.jwks,
            jwks_client,
            metrics.clone(),
            tracing.clone(),
            seed.map(|old| &old.keys),
        )
        .await;
        let verifier = Verifier::new(
            &config.pools,
            config.max_token_bytes,
            config.token_cache_bytes,
        )
        .with_issuers(&config.issuers)
        .counting(metrics)
        .keeping(claims);
        State {
            policy,
            pools: Arc::new(config.pools.clone()),
            issuers: Arc::new(config.issuers.clone()),
            verifier: Arc::new(verifier),
            alb,
            keys,
            refreshers: Arc::new(refreshers),
        }
    }
}

/// The client key fetches use.
pub type JwksClient =
    hyper_util::client::legacy::Client<JwksConnector, http_body_util::Empty<bytes::Bytes>>;
