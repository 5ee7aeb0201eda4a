//! Validation of the raw configuration: defaults, every problem with its key, and the
//! rules each key follows.

use std::collections::BTreeMap;

use super::validate::region_of;
use super::*;

const MINIMAL: &str = r#"
    [upstream]
    url = "http://127.0.0.1:3000"

    [[pools]]
    user_pool_id = "us-east-1_AbC123"
    client_ids = ["client-a"]
"#;

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = Config::from_toml(MINIMAL).expect("valid");
    assert_eq!(c.listen, "0.0.0.0:8080".parse().expect("addr"));
    assert_eq!(c.admin_listen, "127.0.0.1:9090".parse().expect("addr"));
    assert_eq!(c.policy_file, PathBuf::from("config/policy.toml"));
    assert_eq!(c.max_header_bytes, 16384);
    assert_eq!(c.max_token_bytes, 8192);
    assert_eq!(c.token_cache_bytes, 40 * 1024 * 1024);
    assert_eq!(c.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(c.max_connections, None, "sized from the fd limit");
    assert_eq!(c.workers, None, "one per CPU");
    assert_eq!(c.http2_keep_alive_interval, Duration::from_secs(20));
    assert_eq!(c.http2_keep_alive_timeout, Duration::from_secs(20));
    assert_eq!(c.allowed_upgrades, ["websocket"]);
    let upstream = c.upstream.as_ref().expect("upstream");
    assert_eq!(upstream.connect_timeout, Duration::from_secs(5));
    assert_eq!(upstream.request_timeout, Duration::from_secs(30));
    assert!(
        c.authz.is_none(),
        "no decision endpoints unless authz.listen is set"
    );
    let pool = &c.pools[0];
    assert_eq!(pool.region, "us-east-1");
    assert_eq!(pool.token_use, TokenUsePolicy::Access);
    assert_eq!(pool.leeway, Duration::ZERO);
    assert_eq!(
        pool.jwks_url.to_string(),
        "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC123/.well-known/jwks.json"
    );
    assert_eq!(
        pool.issuer(),
        "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC123"
    );
    assert_eq!(c.jwks.refresh_interval, Duration::from_secs(600));
    assert_eq!(c.jwks.unknown_kid_cooldown, Duration::from_secs(10));
    assert_eq!(c.jwks.fetch_timeout, Duration::from_secs(5));
    assert_eq!(c.jwks.max_response_bytes, 65536);
    assert_eq!(c.headers.user_sub, "x-user-sub");
    assert_eq!(c.headers.user_groups, "x-user-groups");
    assert!(c.headers.forward_authorization);
    assert_eq!(c.log.format, LogFormat::Auto);
}

#[test]
fn durations_accept_seconds_and_units() {
    let cases = [
        (RawDuration::Seconds(7), Ok(Duration::from_secs(7))),
        (RawDuration::text("250ms"), Ok(Duration::from_millis(250))),
        (RawDuration::text("10s"), Ok(Duration::from_secs(10))),
        (RawDuration::text("5m"), Ok(Duration::from_secs(300))),
        (RawDuration::text("1h"), Ok(Duration::from_secs(3600))),
        (RawDuration::text("1d"), Ok(Duration::from_secs(86_400))),
        (RawDuration::text("12"), Ok(Duration::from_secs(12))),
        (RawDuration::text("1m30s"), Ok(Duration::from_secs(90))),
        (RawDuration::text("1h30m"), Ok(Duration::from_secs(5400))),
        (
            RawDuration::text(" 2s500ms "),
            Ok(Duration::from_millis(2500)),
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(raw.parse(), want, "{raw:?}");
    }
    for bad in ["ten", "5w", "-1s", "", "s", "1.5s", "10 s", "m30", "30s1"] {
        let err = RawDuration::text(bad).parse().expect_err(bad);
        assert!(err.contains("is not a duration"), "{bad}: {err}");
    }
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let text = r#"
        listen = "nowhere"
        max_header_bytes = 100
        header_read_timeout = "soon"

        [upstream]
        url = "http://app:3000/base"

        [[pools]]
        user_pool_id = "nope"
        client_ids = []
        token_use = "refresh"

        [[pools]]
        client_ids = ["x"]
        jwks_url = "ftp://x"

        [jwks]
        fetch_timeout = "1ms"

        [headers]
        user_sub = "bad header"
        user_groups = "Authorization"

        [log]
        format = "xml"
    "#;
    let err = Config::from_toml(text).expect_err("invalid");
    let want = [
        "listen: \"nowhere\" is not an IP:port address",
        "max_header_bytes: must be between 8192 and 1048576",
        "max_token_bytes: must be at least 1 and at most max_header_bytes",
        "header_read_timeout: \"soon\" is not a duration: write a number and a unit (ms, s, m, h, d), such as \"10s\", \"250ms\" or \"1m30s\"",
        "upstream.url: must be scheme://host:port only: requests keep their own path, so the policy judges what the app receives",
        "pools[0].token_use: \"refresh\" must be \"access\", \"id\" or \"any\"",
        "pools[0].client_ids: at least one client id is required",
        "pools[0].user_pool_id: \"nope\" is not a user pool id like \"us-east-1_AbCdEf123\"",
        "pools[1].user_pool_id: is required",
        "jwks.fetch_timeout: must be at least 100ms",
        "headers.user_sub: \"bad header\" is not a valid header name",
        "headers.user_groups: \"Authorization\" is a header the gate manages itself",
        "log.format: \"xml\" must be \"auto\", \"pretty\" or \"json\"",
    ];
    assert_eq!(err.problems, want);
}

#[test]
fn upgrades_are_protocol_names_and_never_h2c() {
    let with = |list: &str| Config::from_toml(&format!("allowed_upgrades = {list}\n{MINIMAL}"));
    let c = with(r#"["WebSocket", "foo"]"#).expect("valid");
    assert_eq!(c.allowed_upgrades, ["websocket", "foo"]);
    assert_eq!(
        with("[]").expect("valid").allowed_upgrades,
        Vec::<String>::new()
    );
    let err = with(r#"["websocket", "H2C", "a b", ""]"#).expect_err("h2c");
    assert_eq!(
        err.problems,
        [
            "allowed_upgrades: \"h2c\" cannot be allowed: HTTP/2 streams on the upgraded connection would bypass the policy",
            "allowed_upgrades: \"a b\" is not a protocol name",
            "allowed_upgrades: \"\" is not a protocol name",
        ]
    );
    let c = Config::from_toml(&format!("max_connections = 500\n{MINIMAL}")).expect("valid");
    assert_eq!(c.max_connections, Some(500));
}

#[test]
fn workers_are_one_per_cpu_unless_set_and_at_most_1024() {
    let c = Config::from_toml(&format!("workers = 3\n{MINIMAL}")).expect("valid");
    assert_eq!(c.workers, Some(3));
    let c = Config::from_toml(&format!("workers = 0\n{MINIMAL}")).expect("valid");
    assert_eq!(c.workers, None);
    let e = Config::from_toml(&format!("workers = 1025\n{MINIMAL}")).expect_err("too many");
    assert_eq!(
        e.problems,
        ["workers: must be at most 1024 (0 is one per CPU)"]
    );
}

#[test]
fn every_unknown_key_is_reported_with_its_path_and_the_other_problems_too() {
    let text = format!(
        "colour = true\nmax_token_bytes = 0\n{MINIMAL}\n[jwks]\nrefresh = \"1m\"\n[log]\nlevel = \"verbose\"\nfile = \"x\"\n"
    );
    let text = text.replacen(
        "client_ids = [\"client-a\"]",
        "client_ids = [\"client-a\"]\nregion = \"eu-west-1\"",
        1,
    );
    let err = Config::from_toml(&text).expect_err("unknown keys");
    assert_eq!(
        err.problems,
        [
            "colour: unknown key",
            "jwks.refresh: unknown key",
            "log.file: unknown key",
            "pools[0].region: unknown key",
            "max_token_bytes: must be at least 1 and at most max_header_bytes",
            "log.level: \"verbose\" is not a level (error, warn, info, debug, trace, off) or a filter such as \"info,cognito_gate=debug\"",
        ],
        "{err}"
    );
}

#[test]
fn every_value_of_the_wrong_type_is_reported_not_only_the_first() {
    let text = format!(
        "max_header_bytes = \"big\"\nmax_connections = -1\n{MINIMAL}\n[headers]\nforward_authorization = \"yes\"\n[jwks]\nfetch_timeout = true\n"
    );
    let err = Config::from_toml(&text).expect_err("wrong types");
    let keys: Vec<&str> = err
        .problems
        .iter()
        .map(|p| p.split(':').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "headers.forward_authorization",
            "jwks.fetch_timeout",
            "max_connections",
            "max_header_bytes",
        ],
        "{err}"
    );
    assert_eq!(
        err.problems[1],
        "jwks.fetch_timeout: invalid type: found bool true, expected a duration such as \"10s\", \"250ms\" or \"1m30s\", or whole seconds"
    );
}

#[test]
fn log_levels_are_words_or_filters_that_parse() {
    for ok in [
        "info",
        "DEBUG",
        "off",
        "info,cognito_gate=debug",
        "cognito_gate::access=warn",
    ] {
        let c = Config::from_toml(&format!("{MINIMAL}\n[log]\nlevel = {ok:?}\n"));
        assert!(c.is_ok(), "{ok}: {c:?}");
    }
    for bad in ["verbose", "inf", "info,cognito_gate=loud"] {
        let err =
            Config::from_toml(&format!("{MINIMAL}\n[log]\nlevel = {bad:?}\n")).expect_err(bad);
        assert!(err.problems[0].starts_with("log.level: "), "{err}");
    }
    let auto = Config::from_toml(MINIMAL).expect("valid");
    assert_eq!(auto.log.format, LogFormat::Auto);
}

#[test]
fn missing_upstream_and_pools_are_reported_together() {
    let err = Config::from_toml("").expect_err("empty");
    assert_eq!(
        err.problems,
        [
            "upstream.url: is required, unless authz.listen or authz.grpc_listen is set (decision-only mode)",
            "pools: at least one [[pools]] entry (or an [[issuers]] or [[alb]] entry) is required"
        ]
    );
}

#[test]
fn identity_header_names_must_differ_in_normalized_form() {
    let text = format!("{MINIMAL}\n[headers]\nuser_sub = \"X-Who\"\nuser_groups = \"x_who\"\n");
    let err = Config::from_toml(&text).expect_err("same name");
    assert_eq!(
        err.problems,
        ["headers.user_groups: must differ from headers.user_sub"]
    );
}

#[test]
fn decision_only_mode_needs_no_upstream() {
    let text = r#"
        [authz]
        listen = "127.0.0.1:9191"
        [[pools]]
        user_pool_id = "us-east-1_AbC123"
        client_ids = ["client-a"]
    "#;
    let c = Config::from_toml(text).expect("valid");
    assert!(c.upstream.is_none());
    let authz = c.authz.expect("authz");
    assert_eq!(
        (authz.path.as_str(), authz.envoy_prefix.as_str()),
        ("/auth", "/envoy")
    );
    assert!(authz.trusts("127.0.0.1".parse().expect("ip")));
    assert!(authz.trusts("::1".parse().expect("ip")));
    assert!(authz.trusts("::ffff:127.0.0.9".parse().expect("ip")));
    assert!(!authz.trusts("10.1.2.3".parse().expect("ip")));
}

#[test]
fn decision_caching_is_off_unless_set_and_whole_seconds_up_to_a_minute() {
    let with = |value: &str| {
        Config::from_toml(&format!(
            "{MINIMAL}\n[authz]\nlisten = \"127.0.0.1:9191\"\n{value}"
        ))
    };
    let authz = |c: Config| c.authz.expect("authz").cache_max_age;
    assert_eq!(authz(with("").expect("valid")), None);
    assert_eq!(authz(with("cache_max_age = \"0s\"").expect("valid")), None);
    assert_eq!(
        authz(with("cache_max_age = \"1m\"").expect("valid")),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        authz(with("cache_max_age = 5").expect("valid")),
        Some(Duration::from_secs(5))
    );
    for (value, problem) in [
        ("\"61s\"", "authz.cache_max_age: must be at most 60s"),
        (
            "\"1500ms\"",
            "authz.cache_max_age: must be whole seconds (max-age has no fractions)",
        ),
    ] {
        let e = with(&format!("cache_max_age = {value}")).expect_err(value);
        assert_eq!(e.problems, [problem], "{value}");
    }
}

#[test]
fn authz_settings_are_validated() {
    let text = format!(
        "{MINIMAL}\n[authz]\nlisten = \"127.0.0.1:9090\"\npath = \"/check\"\nenvoy_prefix = \"/check/envoy/\"\ntrusted_peers = [\"10.0.0.0/8\", \"10.0.0.1\", \"nope\"]\n"
    );
    let err = Config::from_toml(&text).expect_err("invalid");
    assert_eq!(
        err.problems,
        [
            "authz.envoy_prefix: \"/check/envoy/\" must be a canonical path like \"/auth\", without a trailing '/'",
            "authz.path: must not overlap authz.envoy_prefix",
            "authz.trusted_peers: \"nope\" is not an IP address or CIDR range",
            "authz.listen: must differ from listen and admin_listen",
        ]
    );
}

#[test]
fn region_is_derived_from_the_pool_id() {
    assert_eq!(region_of("eu-west-3_Xy7"), Some("eu-west-3"));
    assert_eq!(region_of("us-gov-west-1_abc"), Some("us-gov-west-1"));
    assert_eq!(region_of("useast1_abc"), None);
    assert_eq!(region_of("us-east-1_"), None);
    assert_eq!(region_of("us-east-1_a/b"), None);
    assert_eq!(region_of("US-EAST-1_abc"), None);
}

#[test]
fn a_plain_http_jwks_url_must_stay_on_loopback_or_be_allowed_by_name() {
    let pool = |url: &str, allow: bool| {
        format!(
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[[pools]]\nuser_pool_id = \"us-east-1_AbC123\"\n\
             client_ids = [\"a\"]\njwks_url = \"{url}\"\nallow_insecure_jwks_url = {allow}\n"
        )
    };
    for url in [
        "https://keys.example/jwks.json",
        "http://127.0.0.1:9400/jwks.json",
        "http://127.9.9.9/jwks.json",
        "http://localhost:9400/jwks.json",
        "http://LOCALHOST/jwks.json",
        "http://[::1]:9400/jwks.json",
    ] {
        assert!(Config::from_toml(&pool(url, false)).is_ok(), "{url}");
    }
    for url in [
        "http://issuer:9400/jwks.json",
        "http://10.0.0.7/jwks.json",
        "http://localhost.evil.example/jwks.json",
        "http://127.0.0.1.nip.io/jwks.json",
        "http://[::ffff:10.0.0.7]/jwks.json",
    ] {
        let problems = Config::from_toml(&pool(url, false))
            .expect_err("refused")
            .problems;
        assert_eq!(problems.len(), 1, "{url}: {problems:?}");
        assert!(
            problems[0].starts_with("pools[0].jwks_url: pool \"us-east-1_AbC123\"")
                && problems[0].contains("pools[0].allow_insecure_jwks_url = true"),
            "{url}: {problems:?}"
        );
        assert!(Config::from_toml(&pool(url, true)).is_ok(), "{url}");
    }
}

#[test]
fn alb_tables_are_validated_and_may_stand_without_pools() {
    const ARN: &str =
        "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";
    let only_alb = format!(
        "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[[alb]]\nregion = \"eu-west-1\"\nsigners = [\"{ARN}\"]\n"
    );
    let c = Config::from_toml(&only_alb).expect("an ALB alone is enough");
    assert!(c.pools.is_empty());
    let alb = &c.albs[0];
    assert_eq!(
        alb.key_url,
        "https://public-keys.auth.elb.eu-west-1.amazonaws.com/{kid}"
    );
    assert_eq!(
        alb.key_url_for("4f1c2a3b-5d6e-4f70-8a91-b2c3d4e5f607"),
        "https://public-keys.auth.elb.eu-west-1.amazonaws.com/4f1c2a3b-5d6e-4f70-8a91-b2c3d4e5f607"
    );
    assert_eq!((alb.client_ids.len(), alb.issuer.as_deref()), (0, None));

    let bad = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[[alb]]\nregion = \"EU west\"\n\
               signers = [\"arn:aws:iam::123456789012:role/x\"]\nkey_url = \"https://keys.example/key\"\n\
               client_ids = [\"\"]\nissuer = \"\"\n\
               [[alb]]\nsigners = []\n\
               [[alb]]\nregion = \"eu-west-1\"\nsigners = [\"ARN\"]\nkey_url = \"http://keys.example/{kid}\"\n";
    let problems = Config::from_toml(bad).expect_err("refused").problems;
    for want in [
        "alb[0].region: \"EU west\" is not a region",
        "alb[0].signers: \"arn:aws:iam::123456789012:role/x\" is not an Application Load Balancer ARN",
        "alb[0].client_ids: client ids must not be empty",
        "alb[0].issuer: must not be empty",
        "alb[0].key_url: \"https://keys.example/key\" must contain {kid}",
        "alb[1].region: is required",
        "alb[2].key_url: \"http://keys.example/{kid}\" is plain HTTP to a host other than loopback",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
    let none = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n";
    let problems = Config::from_toml(none).expect_err("refused").problems;
    assert!(
        problems.iter().any(
            |p| p.contains("at least one [[pools]] entry (or an [[issuers]] or [[alb]] entry)")
        ),
        "{problems:?}"
    );
}

#[test]
fn claim_headers_are_header_names_that_read_as_no_other_identity_header() {
    let good = format!(
        "{MINIMAL}\n[headers.claims]\n\"X-User-Email\" = \"email\"\n\"X-Tenant\" = \"custom:tenant\"\n"
    );
    let c = Config::from_toml(&good).expect("valid");
    let claims: Vec<(String, String)> = c
        .headers
        .claims
        .iter()
        .map(|(h, c)| (h.to_string(), c.to_string()))
        .collect();
    assert_eq!(
        claims,
        [
            ("x-tenant".to_owned(), "custom:tenant".to_owned()),
            ("x-user-email".to_owned(), "email".to_owned())
        ]
    );
    let bad = format!(
        "{MINIMAL}\n[headers.claims]\n\"X_User.Sub\" = \"email\"\n\"Host\" = \"x\"\n\"bad header\" = \"x\"\n\"X-Empty\" = \"\"\n"
    );
    let problems = Config::from_toml(&bad).expect_err("refused").problems;
    for want in [
        "headers.claims.\"X_User.Sub\": reads as x-user-sub",
        "headers.claims.\"Host\": \"Host\" is a header the gate manages itself",
        "headers.claims.\"bad header\": \"bad header\" is not a valid header name",
        "headers.claims.\"X-Empty\": must name a claim",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
}

#[test]
fn token_sources_are_the_header_and_named_cookies() {
    let c = Config::from_toml(MINIMAL).expect("valid");
    assert_eq!(c.token_sources, [TokenSource::Header]);
    assert_eq!(
        c.cookie_methods,
        [http::Method::GET, http::Method::HEAD, http::Method::OPTIONS]
    );
    assert!(!c.forward_token);
    let text = format!("token_sources = [\"cookie:id_token\", \"header\"]\n{MINIMAL}");
    let c = Config::from_toml(&text).expect("valid");
    assert_eq!(
        c.token_sources,
        [TokenSource::Cookie("id_token".into()), TokenSource::Header]
    );
    let bad = format!(
        "token_sources = [\"query:t\", \"cookie:\", \"cookie:a b\", \"header\", \"header\"]\n\
         cookie_methods = [\"get\", \"P O S T\"]\n{MINIMAL}"
    );
    let problems = Config::from_toml(&bad).expect_err("refused").problems;
    for want in [
        "token_sources: \"query:t\" must be \"header\" or \"cookie:NAME\"",
        "token_sources: \"cookie:\" must be",
        "token_sources: \"cookie:a b\" must be",
        "token_sources: \"header\" is listed twice",
        "cookie_methods: \"get\" is not an upper-case HTTP method",
        "cookie_methods: \"P O S T\" is not an upper-case HTTP method",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
    let empty = format!("token_sources = []\n{MINIMAL}");
    let problems = Config::from_toml(&empty).expect_err("refused").problems;
    assert!(
        problems[0].starts_with("token_sources: must name at least one source"),
        "{problems:?}"
    );
}

#[test]
fn issuers_are_validated_and_may_stand_without_pools() {
    let only = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[[issuers]]\nissuer = \"https://login.example.com/realms/main\"\naudiences = [\"api\"]\n";
    let c = Config::from_toml(only).expect("an issuer alone is enough");
    let issuer = &c.issuers[0];
    assert_eq!(
        issuer.discovery_url.to_string(),
        "https://login.example.com/realms/main/.well-known/openid-configuration"
    );
    assert_eq!(issuer.algorithms, [jsonwebtoken::Algorithm::RS256]);
    assert_eq!(issuer.groups_claim, ["groups"]);
    assert_eq!(
        (issuer.scopes_claim.as_str(), issuer.subject_claim.as_str()),
        ("scope", "sub")
    );

    let bad = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\
               [[pools]]\nuser_pool_id = \"us-east-1_AbC123\"\nclient_ids = [\"a\"]\n\
               [[issuers]]\nissuer = \"http://login.example.com\"\naudiences = []\nalgorithms = [\"HS256\", \"none\", \"ES256\"]\ngroups_claim = \"realm_access..roles\"\n\
               [[issuers]]\naudiences = [\"api\"]\n\
               [[issuers]]\nissuer = \"https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC123\"\naudiences = [\"api\"]\n";
    let problems = Config::from_toml(bad).expect_err("refused").problems;
    for want in [
        "issuers[0].issuer: http://login.example.com/ is plain HTTP to a host other than loopback",
        "issuers[0].audiences: at least one audience is required",
        "issuers[0].algorithms: \"HS256\" is not accepted",
        "issuers[0].algorithms: \"none\" is not accepted",
        "issuers[0].groups_claim: \"realm_access..roles\" must be a claim name or a dotted path",
        "issuers[1].issuer: is required",
        "issuers[2].issuer: \"https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC123\" is a configured user pool's issuer",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
}

#[test]
fn the_upstream_protocol_is_http1_h2_h2c_or_auto_and_h2c_is_cleartext() {
    let c = Config::from_toml(MINIMAL).expect("valid");
    assert_eq!(
        c.upstream.as_ref().map(|u| u.protocol),
        Some(UpstreamProtocol::Http1)
    );
    for (protocol, want) in [
        ("h2c", UpstreamProtocol::H2c),
        ("auto", UpstreamProtocol::Auto),
    ] {
        let text = MINIMAL.replace(
            "[upstream]",
            &format!("[upstream]\nprotocol = \"{protocol}\""),
        );
        let c = Config::from_toml(&text).expect("valid");
        assert_eq!(c.upstream.map(|u| u.protocol), Some(want));
    }
    let bad = MINIMAL.replace("[upstream]", "[upstream]\nprotocol = \"h3\"");
    let problems = Config::from_toml(&bad).expect_err("refused").problems;
    assert!(
        problems[0].starts_with("upstream.protocol: \"h3\" must be"),
        "{problems:?}"
    );
    // h2 is HTTP/2 over TLS, and only that.
    let h2 = MINIMAL.replace("[upstream]", "[upstream]\nprotocol = \"h2\"");
    let problems = Config::from_toml(&h2).expect_err("refused").problems;
    assert!(
        problems[0].starts_with("upstream.protocol: h2 is HTTP/2 over TLS"),
        "{problems:?}"
    );
    let c = Config::from_toml(&h2.replace("http://127.0.0.1:3000", "https://app.internal:3000"))
        .expect("valid");
    assert_eq!(c.upstream.map(|u| u.protocol), Some(UpstreamProtocol::H2));
    let tls = MINIMAL
        .replace("[upstream]", "[upstream]\nprotocol = \"h2c\"")
        .replace("http://127.0.0.1:3000", "https://app.internal:3000");
    let problems = Config::from_toml(&tls).expect_err("refused").problems;
    assert!(
        problems[0].starts_with("upstream.protocol: h2c and auto are HTTP/2 over cleartext"),
        "{problems:?}"
    );
    // The TLS files and the server name are for an https:// app only.
    let clear = MINIMAL.replace("[upstream]", "[upstream]\nserver_name = \"app.internal\"");
    let problems = Config::from_toml(&clear).expect_err("refused").problems;
    assert!(
        problems[0].starts_with(
            "upstream.url: ca_file, client_cert, client_key and server_name apply to TLS"
        ),
        "{problems:?}"
    );
}

#[test]
fn an_upstream_on_a_unix_socket_is_named_by_its_absolute_path_and_spoken_to_in_cleartext() {
    let with = |url: &str, extra: &str| {
        Config::from_toml(&MINIMAL.replace(
            "url = \"http://127.0.0.1:3000\"",
            &format!("url = \"{url}\"\n{extra}"),
        ))
    };
    let c = with("unix:/run/app.sock", "protocol = \"h2c\"").expect("valid");
    let upstream = c.upstream.expect("upstream");
    assert_eq!(upstream.socket.as_deref(), Some(Path::new("/run/app.sock")));
    assert_eq!(upstream.address(), "unix:/run/app.sock");
    let problems = with("unix:run/app.sock", "")
        .expect_err("relative")
        .problems;
    assert!(problems[0].contains("absolute path"), "{problems:?}");
    let problems = with("unix:/run/app.sock", "protocol = \"h2\"")
        .expect_err("h2 over a socket")
        .problems;
    assert!(
        problems[0].contains("a Unix socket is spoken to in cleartext"),
        "{problems:?}"
    );
    let problems = with("unix:/run/app.sock", "server_name = \"app\"")
        .expect_err("TLS keys")
        .problems;
    assert!(problems[0].contains("apply to TLS"), "{problems:?}");
}

#[test]
fn cors_answers_need_a_cors_table_of_real_origins_methods_and_headers() {
    let with = |top: &str| Config::from_toml(&format!("{top}\n{MINIMAL}"));
    let c = with(
        "cors_preflight = \"answer\"\n[cors]\nallowed_origins = [\"https://App.example.com:8443\"]",
    )
    .expect("valid");
    let cors = c.cors.expect("cors");
    assert_eq!(cors.allowed_origins, ["https://app.example.com:8443"]);
    assert_eq!(cors.allowed_headers, ["authorization", "content-type"]);
    assert_eq!(cors.max_age, Duration::from_secs(600));
    assert!(!cors.allow_credentials);
    assert_eq!(c.reload.settle, Duration::from_secs(2));

    let problems = |top: &str| with(top).expect_err("invalid").to_string();
    assert!(problems("cors_preflight = \"answer\"").contains("needs a [cors] table"));
    assert!(
        problems("[cors]\nallowed_origins = [\"https://a.example\"]")
            .contains("is read only with cors_preflight = \"answer\"")
    );
    for origin in [
        "https://a.example/",
        "https://a.example/path",
        "ftp://a.example",
        "a.example",
        "https://user@a.example",
    ] {
        let text = problems(&format!(
            "cors_preflight = \"answer\"\n[cors]\nallowed_origins = [\"{origin}\"]"
        ));
        assert!(text.contains("is not an origin"), "{origin}: {text}");
    }
    let text = problems(
        "cors_preflight = \"answer\"\n[cors]\nallowed_origins = [\"*\"]\nallow_credentials = true\nallowed_methods = [\"get\"]\nallowed_headers = [\"bad header\"]",
    );
    for key in [
        "cannot be used with allow_credentials",
        "cors.allowed_methods",
        "cors.allowed_headers",
    ] {
        assert!(text.contains(key), "{key}: {text}");
    }
}

/// A value as the manual writes a default: TOML, lists with `, `.
fn toml_text(value: &figment::value::Value) -> Option<String> {
    use figment::value::Value;
    Some(match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => match (n.to_u128(), n.to_i128()) {
            (Some(u), _) => u.to_string(),
            (None, Some(i)) => i.to_string(),
            (None, None) => n.to_f64()?.to_string(),
        },
        Value::Array(_, items) => {
            let items: Option<Vec<String>> = items.iter().map(toml_text).collect();
            format!("[{}]", items?.join(", "))
        }
        _ => return None,
    })
}

/// Every key of `dict` under `prefix`, with its default when it has one a user writes
/// as a value; `pools[].x` for the keys of a list of tables.
fn keys_of(
    dict: &figment::value::Dict,
    defaults: Option<&figment::value::Dict>,
    prefix: &str,
    out: &mut BTreeMap<String, Option<String>>,
) {
    use figment::value::Value;
    for (key, value) in dict {
        let path = format!("{prefix}{key}");
        let default = defaults.and_then(|d| d.get(key));
        match value {
            Value::Dict(_, inner) if !inner.is_empty() => {
                let inner_defaults = match default {
                    Some(Value::Dict(_, d)) => Some(d),
                    _ => None,
                };
                keys_of(inner, inner_defaults, &format!("{path}."), out);
            }
            Value::Array(_, items) if matches!(items.first(), Some(Value::Dict(..))) => {
                out.insert(path.clone(), None);
                if let Some(Value::Dict(_, item)) = items.first() {
                    keys_of(
                        item,
                        item_defaults(key).as_ref(),
                        &format!("{path}[]."),
                        out,
                    );
                }
            }
            _ => {
                out.insert(path, default.and_then(toml_text));
            }
        }
    }
}

/// The defaults of one entry of a list of tables.
fn item_defaults(list: &str) -> Option<figment::value::Dict> {
    let value = match list {
        "pools" => figment::value::Value::serialize(RawPool::default()),
        "issuers" => figment::value::Value::serialize(RawIssuer::default()),
        "alb" => figment::value::Value::serialize(RawAlb::default()),
        _ => return None,
    };
    match value {
        Ok(figment::value::Value::Dict(_, dict)) => Some(dict),
        _ => None,
    }
}

#[test]
fn the_configuration_reference_lists_every_key_with_its_default_and_nothing_else() {
    let defaults = match figment::value::Value::serialize(RawConfig::default()) {
        Ok(figment::value::Value::Dict(_, dict)) => dict,
        other => panic!("{other:?}"),
    };
    let mut keys = BTreeMap::new();
    keys_of(&raw::schema(), Some(&defaults), "", &mut keys);
    let mut documented = BTreeMap::new();
    for row in crate::manual::rows("reference/configuration.md", "key") {
        let [key, default, env, _meaning] = row.as_slice() else {
            panic!("a configuration row has four cells: {row:?}");
        };
        let key = key.trim_matches('`').to_owned();
        assert!(
            documented
                .insert(key.clone(), (default.clone(), env.clone()))
                .is_none(),
            "{key} is documented twice"
        );
    }
    let mut wrong = Vec::new();
    for (key, default) in &keys {
        let Some((doc_default, env)) = documented.get(key) else {
            wrong.push(format!("no row for `{key}`"));
            continue;
        };
        // A required key has no default; its raw placeholder (`[]`) is refused.
        let required = doc_default.starts_with("required");
        let doc_default = crate::manual::code_spans(doc_default).first().copied();
        if let Some(default) = default
            .as_deref()
            .filter(|d| !required && doc_default != Some(*d))
        {
            wrong.push(format!(
                "`{key}` defaults to `{default}`, not {doc_default:?}"
            ));
        }
        let want_env = match key.contains("[]") {
            true => "—".to_owned(),
            false => format!("`{ENV_PREFIX}{}`", key.to_uppercase().replace('.', "__")),
        };
        if *env != want_env {
            wrong.push(format!("`{key}` is set by {want_env}, not {env}"));
        }
    }
    for key in documented.keys().filter(|k| !keys.contains_key(*k)) {
        wrong.push(format!(
            "`{key}` is documented, and the configuration has no such key"
        ));
    }
    assert!(
        wrong.is_empty(),
        "docs/reference/configuration.md:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn a_unix_socket_listen_takes_an_absolute_path_octal_mode_and_numeric_owner() {
    let with = |top: &str| Config::from_toml(&format!("{top}\n{MINIMAL}"));
    let c = with("listen = \"unix:/run/cognito-gate/gate.sock\"\ntrusted_proxies = [\"unix\", \"10.0.0.0/8\"]")
        .expect("valid");
    let socket = c.listen_socket.clone().expect("a socket");
    assert_eq!(socket.path, Path::new("/run/cognito-gate/gate.sock"));
    assert_eq!((socket.mode, socket.uid, socket.gid), (0o660, None, None));
    assert_eq!(c.listen_text(), "unix:/run/cognito-gate/gate.sock");
    assert!(c.trust_unix_peers);
    assert_eq!(c.trusted_proxies.len(), 1);
    let c = with("listen = \"unix:/s.sock\"\nlisten_socket_mode = \"0600\"\nlisten_socket_owner = \"101:102\"")
        .expect("valid");
    let socket = c.listen_socket.expect("a socket");
    assert_eq!(
        (socket.mode, socket.uid, socket.gid),
        (0o600, Some(101), Some(102))
    );
    let socket = with("listen = \"unix:/s.sock\"\nlisten_socket_owner = \":7\"")
        .expect("valid")
        .listen_socket
        .expect("a socket");
    assert_eq!((socket.uid, socket.gid), (None, Some(7)));
    assert!(!Config::from_toml(MINIMAL).expect("valid").trust_unix_peers);
    for (top, key) in [
        ("listen = \"unix:run/gate.sock\"", "listen"),
        ("listen = \"unix:/s.sock\"\nlisten_socket_mode = \"0999\"", "listen_socket_mode"),
        ("listen = \"unix:/s.sock\"\nlisten_socket_mode = \"1777\"", "listen_socket_mode"),
        ("listen = \"unix:/s.sock\"\nlisten_socket_owner = \"app\"", "listen_socket_owner"),
        ("listen = \"unix:/s.sock\"\nlisten_socket_owner = \":\"", "listen_socket_owner"),
        ("listen_socket_owner = \"1\"", "listen_socket_owner"),
        (
            "listen = \"unix:/s.sock\"\n[listen_tls]\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"",
            "listen_tls",
        ),
    ] {
        let problems = with(top).expect_err(top).problems;
        assert!(
            problems.iter().any(|p| p.starts_with(&format!("{key}:"))),
            "{top}: {problems:?}"
        );
    }
}

#[test]
fn the_oauth2_proxy_preset_adds_its_names_and_refuses_clashes() {
    let with = |headers: &str| Config::from_toml(&format!("{MINIMAL}\n[headers]\n{headers}"));
    let c = with("preset = \"oauth2-proxy\"").expect("valid");
    let names = |list: &[HeaderName]| list.iter().map(|h| h.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(&c.headers.also_sub),
        ["x-auth-request-user", "x-forwarded-user"]
    );
    assert_eq!(
        names(&c.headers.also_groups),
        ["x-auth-request-groups", "x-forwarded-groups"]
    );
    assert_eq!(
        c.headers.claims,
        [(
            HeaderName::from_static("x-auth-request-email"),
            "email".into()
        )]
    );
    let plain = Config::from_toml(MINIMAL).expect("valid");
    assert!(plain.headers.also_sub.is_empty() && plain.headers.claims.is_empty());
    for (headers, key) in [
        ("preset = \"pomerium\"", "headers.preset"),
        (
            "preset = \"oauth2-proxy\"\nuser_sub = \"X_Forwarded_User\"",
            "headers.user_sub",
        ),
        (
            "preset = \"oauth2-proxy\"\nuser_groups = \"x-auth-request-email\"",
            "headers.user_groups",
        ),
        (
            "preset = \"oauth2-proxy\"\n[headers.claims]\n\"X-Auth-Request-Email\" = \"email\"",
            "headers.claims",
        ),
    ] {
        let problems = with(headers).expect_err(headers).problems;
        assert!(
            problems.iter().any(|p| p.starts_with(key)),
            "{headers}: {problems:?}"
        );
    }
}
