//! The verifier's checks, one table per concern, with real RSA keys and the real
//! Cognito tokens in `tests/fixtures`.

use super::identity::Revocable;
use super::keys::KeySet;
use super::*;
use crate::config::Config;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cognito_gate_dev_issuer::SigningKey;
use serde_json::{json, Value};
use std::sync::OnceLock;

const POOL: &str = "eu-west-1_TestPool1";
const ISS: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool1";
const NOW: f64 = 1_700_000_000.0;

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate("kid-1").expect("keygen"))
}

fn verifier(token_use: &str, leeway: u64) -> Verifier {
    let text = format!(
        r#"
        [upstream]
        url = "http://127.0.0.1:1"
        [[pools]]
        user_pool_id = "{POOL}"
        client_ids = ["client-a", "client-b"]
        token_use = "{token_use}"
        leeway = {leeway}
        "#
    );
    let config = Config::from_toml(&text).expect("config");
    Verifier::new(&config.pools, 8192, 0)
}

fn keys(extra: Value) -> KeySet {
    let mut jwk = key().jwk();
    if let (Some(obj), Some(extra)) = (jwk.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    parse_key_set(json!({ "keys": [jwk] }).to_string().as_bytes()).expect("jwks")
}

fn access_claims() -> Value {
    json!({
        "sub": "user-1", "iss": ISS, "token_use": "access", "client_id": "client-a",
        "exp": NOW + 600.0, "iat": NOW - 10.0, "cognito:groups": ["admins", "ops"],
        "scope": "openid", "username": "alice"
    })
}

fn signed(k: &SigningKey, header: &Value, claims: &Value) -> String {
    k.sign(header, claims).expect("sign")
}

fn header() -> Value {
    json!({ "alg": "RS256", "kid": "kid-1" })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        if value.is_null() {
            obj.remove(key);
        } else {
            obj.insert(key.to_owned(), value);
        }
    }
    v
}

fn check(v: &Verifier, set: &KeySet, token: &str, now: f64) -> Result<Identity, TokenError> {
    let t = v.parse(token)?;
    let k = set.get(&t.kid).ok_or(TokenError::UnknownKeyId)?;
    v.finish(t, &k, now)
        .map(|verified| std::sync::Arc::unwrap_or_clone(verified.identity))
}

#[test]
fn the_revocation_list_is_checked_with_the_family_and_the_later_of_iat_and_auth_time() {
    let claims = with(
        with(access_claims(), "origin_jti", json!("family-1")),
        "auth_time",
        json!(NOW - 5.0),
    );
    let id = check(
        &verifier("access", 0),
        &keys(json!({})),
        &signed(key(), &header(), &claims),
        NOW,
    )
    .expect("valid");
    assert_eq!(
        id.revocable,
        Revocable {
            family: Some("family-1".into()),
            issued_at: Some(NOW as u64 - 5),
        }
    );
    for (claim, value) in [("origin_jti", json!(7)), ("auth_time", json!("soon"))] {
        let token = signed(key(), &header(), &with(access_claims(), claim, value));
        assert_eq!(
            check(&verifier("access", 0), &keys(json!({})), &token, NOW),
            Err(TokenError::InvalidClaimType(claim))
        );
    }
}

#[test]
fn a_valid_access_token_gives_its_identity() {
    let token = signed(key(), &header(), &access_claims());
    let id = check(&verifier("access", 0), &keys(json!({})), &token, NOW).expect("valid");
    assert_eq!(
        id,
        Identity {
            sub: "user-1".into(),
            groups: vec!["admins".into(), "ops".into()],
            scopes: vec!["openid".into()],
            token_use: TokenUse::Access,
            client_id: "client-a".into(),
            source: Source::Pool(PoolId(0)),
            claims: Claims::default(),
            revocable: Revocable {
                family: None,
                issued_at: Some(NOW as u64 - 10),
            },
        }
    );
}

#[test]
fn the_claims_the_policy_reads_are_kept_as_the_token_has_them() {
    let wanted: Vec<Box<str>> = vec![
        "custom:tenant".into(),
        "email_verified".into(),
        "amr".into(),
    ];
    let v = verifier("access", 0).keeping(wanted);
    let set = keys(json!({}));
    let claims = with(
        with(access_claims(), "custom:tenant", json!("acme")),
        "email_verified",
        json!(true),
    );
    let id = check(&v, &set, &signed(key(), &header(), &claims), NOW).expect("valid");
    assert_eq!(id.claims.get("custom:tenant"), Some(&json!("acme")));
    assert_eq!(id.claims.get("email_verified"), Some(&json!(true)));
    // Absent from the token: absent here, which a condition reads as "does not hold".
    assert_eq!(id.claims.get("amr"), None);
    // Not asked for: not kept, even though the token has it.
    assert_eq!(id.claims.get("username"), None);
    assert_eq!(id.claims.iter().count(), 2);

    // Without conditions nothing is kept.
    let plain = check(
        &verifier("access", 0),
        &set,
        &signed(key(), &header(), &claims),
        NOW,
    );
    assert_eq!(plain.expect("valid").claims, Claims::default());

    // A kept claim given twice is refused, as the verifier's own claims are.
    let h = URL_SAFE_NO_PAD.encode(header().to_string());
    let mut text = access_claims().to_string();
    text.pop();
    text.push_str(r#","custom:tenant":"acme","custom:tenant":"globex"}"#);
    let twice = key()
        .sign_parts(&h, &URL_SAFE_NO_PAD.encode(text))
        .expect("sign");
    assert_eq!(
        check(&v, &set, &twice, NOW),
        Err(TokenError::Malformed("a claim appears twice"))
    );
}

#[test]
fn a_valid_id_token_uses_aud_and_the_multi_region_issuer() {
    let claims = json!({
        "sub": "user-2", "token_use": "id", "aud": "client-b", "exp": NOW + 5.0,
        "iss": "https://issuer-cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool1"
    });
    let token = signed(key(), &header(), &claims);
    let id = check(&verifier("id", 0), &keys(json!({})), &token, NOW).expect("valid");
    assert_eq!((id.client_id.as_str(), id.groups.len()), ("client-b", 0));
}

#[test]
fn each_failure_has_its_own_error() {
    use TokenError::*;
    let k = key();
    let good = access_claims();
    let sign = |h: Value, c: Value| signed(k, &h, &c);
    let valid = sign(header(), good.clone());
    let (h_b64, rest) = valid.split_once('.').expect("dot");
    let (p_b64, s_b64) = rest.split_once('.').expect("dot");
    let other_key = SigningKey::generate("kid-1").expect("keygen");
    let cases: Vec<(&str, String, TokenError)> = vec![
        ("too large", "a".repeat(9000), TooLarge),
        (
            "two parts",
            format!("{h_b64}.{p_b64}"),
            Malformed("not a compact JWS of three parts"),
        ),
        (
            "four parts",
            format!("{valid}.x"),
            Malformed("not a compact JWS of three parts"),
        ),
        (
            "empty signature",
            format!("{h_b64}.{p_b64}."),
            Malformed("empty part"),
        ),
        (
            "padded header",
            format!("{h_b64}=.{p_b64}.{s_b64}"),
            Malformed("header encoding"),
        ),
        (
            "standard alphabet",
            format!("{h_b64}.{p_b64}.{}", s_b64.replace(['-', '_'], "+")),
            Malformed("signature encoding"),
        ),
        (
            "header not json",
            format!("bm90IGpzb24.{p_b64}.{s_b64}"),
            Malformed("header is not a JSON object"),
        ),
        (
            "alg none",
            sign(json!({"alg": "none", "kid": "kid-1"}), good.clone()),
            UnsupportedAlgorithm,
        ),
        (
            "alg HS256",
            sign(json!({"alg": "HS256", "kid": "kid-1"}), good.clone()),
            UnsupportedAlgorithm,
        ),
        (
            "alg missing",
            sign(json!({"kid": "kid-1"}), good.clone()),
            UnsupportedAlgorithm,
        ),
        (
            "kid missing",
            sign(json!({"alg": "RS256"}), good.clone()),
            MissingKeyId,
        ),
        (
            "kid not a string",
            sign(json!({"alg": "RS256", "kid": 1}), good.clone()),
            MissingKeyId,
        ),
        (
            "crit",
            sign(
                json!({"alg": "RS256", "kid": "kid-1", "crit": ["exp"]}),
                good.clone(),
            ),
            CriticalHeader,
        ),
        (
            "payload not claims",
            format!("{h_b64}.WzFd.{s_b64}"),
            Malformed("payload is not a JSON object of claims"),
        ),
        (
            "duplicate claim",
            format!(
                "{h_b64}.{}.{s_b64}",
                URL_SAFE_NO_PAD.encode(br#"{"sub":"a","sub":"b"}"#)
            ),
            Malformed("payload is not a JSON object of claims"),
        ),
        (
            "iss missing",
            sign(header(), with(good.clone(), "iss", Value::Null)),
            MissingClaim("iss"),
        ),
        (
            "iss not string",
            sign(header(), with(good.clone(), "iss", json!(["x"]))),
            InvalidClaimType("iss"),
        ),
        (
            "other pool",
            sign(
                header(),
                with(
                    good.clone(),
                    "iss",
                    json!("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"),
                ),
            ),
            UnknownIssuer,
        ),
        (
            "unknown kid",
            sign(json!({"alg": "RS256", "kid": "kid-2"}), good.clone()),
            UnknownKeyId,
        ),
        (
            "signed by another key",
            signed(&other_key, &header(), &good),
            InvalidSignature,
        ),
        (
            "tampered payload",
            format!(
                "{h_b64}.{}.{s_b64}",
                URL_SAFE_NO_PAD.encode(with(good.clone(), "sub", json!("root")).to_string())
            ),
            InvalidSignature,
        ),
        (
            "exp missing",
            sign(header(), with(good.clone(), "exp", Value::Null)),
            MissingClaim("exp"),
        ),
        (
            "exp string",
            sign(header(), with(good.clone(), "exp", json!("9999999999"))),
            InvalidClaimType("exp"),
        ),
        (
            "expired",
            sign(header(), with(good.clone(), "exp", json!(NOW - 1.0))),
            Expired,
        ),
        (
            "expires now",
            sign(header(), with(good.clone(), "exp", json!(NOW))),
            Expired,
        ),
        (
            "nbf future",
            sign(header(), with(good.clone(), "nbf", json!(NOW + 30.0))),
            NotYetValid,
        ),
        (
            "nbf string",
            sign(header(), with(good.clone(), "nbf", json!("0"))),
            InvalidClaimType("nbf"),
        ),
        (
            "iat string",
            sign(header(), with(good.clone(), "iat", json!("0"))),
            InvalidClaimType("iat"),
        ),
        (
            "sub missing",
            sign(header(), with(good.clone(), "sub", Value::Null)),
            MissingClaim("sub"),
        ),
        (
            "sub empty",
            sign(header(), with(good.clone(), "sub", json!(""))),
            MissingClaim("sub"),
        ),
        (
            "sub number",
            sign(header(), with(good.clone(), "sub", json!(7))),
            InvalidClaimType("sub"),
        ),
        (
            "token_use missing",
            sign(header(), with(good.clone(), "token_use", Value::Null)),
            MissingClaim("token_use"),
        ),
        (
            "token_use refresh",
            sign(header(), with(good.clone(), "token_use", json!("refresh"))),
            InvalidTokenUse,
        ),
        (
            "id token to access pool",
            sign(
                header(),
                with(
                    with(good.clone(), "token_use", json!("id")),
                    "aud",
                    json!("client-a"),
                ),
            ),
            TokenUseNotAccepted,
        ),
        (
            "client_id missing",
            sign(header(), with(good.clone(), "client_id", Value::Null)),
            MissingClaim("client_id"),
        ),
        (
            "client_id number",
            sign(header(), with(good.clone(), "client_id", json!(1))),
            InvalidClaimType("client_id"),
        ),
        (
            "other client",
            sign(header(), with(good.clone(), "client_id", json!("client-z"))),
            ClientNotAllowed,
        ),
        (
            "access token with aud only",
            sign(
                header(),
                with(
                    with(good.clone(), "client_id", Value::Null),
                    "aud",
                    json!("client-a"),
                ),
            ),
            MissingClaim("client_id"),
        ),
        (
            "groups not array",
            sign(
                header(),
                with(good.clone(), "cognito:groups", json!("admins")),
            ),
            InvalidClaimType("cognito:groups"),
        ),
        (
            "groups not strings",
            sign(
                header(),
                with(good.clone(), "cognito:groups", json!(["a", 1])),
            ),
            InvalidClaimType("cognito:groups"),
        ),
        (
            "scope not a string",
            sign(header(), with(good.clone(), "scope", json!(["openid"]))),
            InvalidClaimType("scope"),
        ),
    ];
    let v = verifier("access", 0);
    let set = keys(json!({}));
    for (name, token, want) in cases {
        assert_eq!(check(&v, &set, &token, NOW), Err(want), "{name}");
    }
}

#[test]
fn id_token_audience_rules() {
    use TokenError::*;
    let base = json!({"sub": "u", "iss": ISS, "token_use": "id", "exp": NOW + 60.0});
    let v = verifier("any", 0);
    let set = keys(json!({}));
    let cases = [
        (Value::Null, Err(MissingClaim("aud"))),
        (json!("client-z"), Err(ClientNotAllowed)),
        (json!("client-b"), Ok("client-b")),
        // Cognito never issues an array, and aws-jwt-verify refuses one.
        (json!(["client-b"]), Err(InvalidClaimType("aud"))),
        (
            json!(["client-z", "client-b"]),
            Err(InvalidClaimType("aud")),
        ),
        (json!(["client-z", 3]), Err(InvalidClaimType("aud"))),
        (json!(5), Err(InvalidClaimType("aud"))),
    ];
    for (aud, want) in cases {
        let token = signed(key(), &header(), &with(base.clone(), "aud", aud.clone()));
        let got = check(&v, &set, &token, NOW);
        assert_eq!(
            got.as_ref().map(|i| i.client_id.as_str()),
            want.as_ref().map(|s| *s),
            "{aud}"
        );
    }
    let access_only = verifier("id", 0);
    let token = signed(key(), &header(), &access_claims());
    assert_eq!(
        check(&access_only, &set, &token, NOW),
        Err(TokenUseNotAccepted)
    );
}

#[test]
fn leeway_applies_to_exp_and_nbf() {
    let v = verifier("access", 30);
    let set = keys(json!({}));
    let expired_recently = signed(
        key(),
        &header(),
        &with(access_claims(), "exp", json!(NOW - 20.0)),
    );
    assert!(check(&v, &set, &expired_recently, NOW).is_ok());
    let expired_long_ago = signed(
        key(),
        &header(),
        &with(access_claims(), "exp", json!(NOW - 31.0)),
    );
    assert_eq!(
        check(&v, &set, &expired_long_ago, NOW),
        Err(TokenError::Expired)
    );
    let nbf_soon = signed(
        key(),
        &header(),
        &with(access_claims(), "nbf", json!(NOW + 20.0)),
    );
    assert!(check(&v, &set, &nbf_soon, NOW).is_ok());
}

#[test]
fn the_jwk_use_and_alg_are_enforced() {
    let token = signed(key(), &header(), &access_claims());
    let v = verifier("access", 0);
    let cases = [
        (json!({"use": "sig", "alg": "RS256"}), Ok(())),
        (json!({"use": "enc"}), Err(TokenError::KeyNotUsable)),
        (json!({"alg": "RS512"}), Err(TokenError::AlgorithmMismatch)),
        (json!({"alg": "PS256"}), Err(TokenError::AlgorithmMismatch)),
    ];
    for (extra, want) in cases {
        let got = check(&v, &keys(extra.clone()), &token, NOW).map(|_| ());
        assert_eq!(got, want, "{extra}");
    }
}

#[test]
fn real_cognito_tokens_verify_inside_their_window_only() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real-cognito");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).expect("fixture");
    let set = parse_key_set(read("jwks.json").as_bytes()).expect("jwks");
    let config = Config::from_toml(
        r#"
        [upstream]
        url = "http://127.0.0.1:1"
        [[pools]]
        user_pool_id = "us-east-1_iWcTPhZBA"
        client_ids = ["6i0o6sela15jdctgeflkmj4gjo"]
        token_use = "any"
        "#,
    )
    .expect("config");
    let v = Verifier::new(&config.pools, 8192, 0);
    let inside = 1_617_955_200.0;
    for (file, use_) in [
        ("access-token.jwt", TokenUse::Access),
        ("id-token.jwt", TokenUse::Id),
    ] {
        let token = read(file);
        let id = check(&v, &set, token.trim(), inside).expect(file);
        assert_eq!(id.sub, "1bc2a8fb-fc0a-440f-93ae-576e0879d180", "{file}");
        assert_eq!(id.groups, ["us-east-1_iWcTPhZBA_adfs"], "{file}");
        let scopes: &[&str] = match use_ {
            TokenUse::Access => &["openid", "profile", "email"],
            TokenUse::Id => &[],
        };
        assert_eq!(id.scopes, scopes, "{file}");
        assert_eq!(id.client_id, "6i0o6sela15jdctgeflkmj4gjo", "{file}");
        assert_eq!(id.token_use, use_, "{file}");
        for later in [1_617_955_748.0, 1_800_000_000.0] {
            assert_eq!(
                check(&v, &set, token.trim(), later),
                Err(TokenError::Expired),
                "{file} at {later}"
            );
        }
    }
}

#[test]
fn an_oidc_issuer_accepts_only_its_algorithms_on_keys_of_their_type() {
    let text = r#"
        [upstream]
        url = "http://127.0.0.1:1"
        [[issuers]]
        issuer = "https://login.example.com/realms/main"
        audiences = ["api"]
        algorithms = ["PS256"]
        groups_claim = "realm_access.roles"
    "#;
    let config = Config::from_toml(text).expect("config");
    let v = Verifier::new(&config.pools, 8192, 0).with_issuers(&config.issuers);
    let claims = json!({
        "iss": "https://login.example.com/realms/main", "sub": "kc-user", "aud": ["web", "api"],
        "exp": NOW + 600.0, "realm_access": { "roles": ["admins"] }, "scope": "openid email",
    });
    let header = json!({ "alg": "PS256", "kid": "kid-1" });
    let mut jwk = key().jwk();
    if let Some(obj) = jwk.as_object_mut() {
        obj.remove("alg");
    }
    let no_alg = parse_key_set(json!({ "keys": [jwk] }).to_string().as_bytes()).expect("jwks");
    let token = key().sign_ps256(&header, &claims).expect("sign");
    let id = check(&v, &no_alg, &token, NOW).expect("a PS256 token on an RSA key");
    assert_eq!(id.sub, "kc-user");
    assert_eq!(id.groups, ["admins"]);
    assert_eq!(id.scopes, ["openid", "email"]);
    assert_eq!(id.client_id, "api");
    // The JWK says RS256: it may not verify PS256.
    assert_eq!(
        check(&v, &keys(json!({})), &token, NOW),
        Err(TokenError::AlgorithmMismatch)
    );
    // RS256 is not among this issuer's algorithms.
    let rs = signed(key(), &json!({ "alg": "RS256", "kid": "kid-1" }), &claims);
    assert_eq!(
        check(&v, &no_alg, &rs, NOW),
        Err(TokenError::UnsupportedAlgorithm)
    );
    // Another audience.
    let other = key()
        .sign_ps256(&header, &with(claims.clone(), "aud", json!("other")))
        .expect("sign");
    assert_eq!(
        check(&v, &no_alg, &other, NOW),
        Err(TokenError::ClientNotAllowed)
    );
}
