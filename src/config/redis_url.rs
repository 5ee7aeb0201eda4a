//! `revocation.redis_url`: a Redis (or Valkey) address with its credentials.

/// `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl RedisUrl {
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let (tls, rest) = if let Some(rest) = text.strip_prefix("rediss://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("redis://") {
            (false, rest)
        } else {
            return Err(format!("{text:?} is not a redis:// or rediss:// URL"));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or(("", u))) {
            Some((user, password)) => (
                Some(percent_decode(user)?).filter(|u| !u.is_empty()),
                Some(percent_decode(password)?).filter(|p| !p.is_empty()),
            ),
            None => (None, None),
        };
        let (host, port) = match hostport.strip_prefix('[') {
            // [::1]:6379
            Some(v6) => match v6.split_once(']') {
                Some((host, rest)) => (host, rest.strip_prefix(':')),
                None => return Err(format!("{text:?} has an unclosed IPv6 address")),
            },
            None => match hostport.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            },
        };
        if host.is_empty() {
            return Err(format!("{text:?} names no host"));
        }
        let port = match port {
            None => 6379,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{text:?} has an invalid port"))?,
        };
        let db = match path {
            "" => 0,
            db => db
                .parse::<u32>()
                .map_err(|_| format!("{text:?}: the path must be a database number"))?,
        };
        Ok(RedisUrl {
            tls,
            host: host.to_owned(),
            port,
            user,
            password,
            db,
        })
    }

    /// The URL without its password, for logs and `check`.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = match (&self.user, &self.password) {
            (Some(u), _) => format!("{u}@"),
            (None, Some(_)) => ":***@".to_owned(),
            (None, None) => String::new(),
        };
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        format!("{scheme}://{user}{host}:{}/{}", self.port, self.db)
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("the URL has an invalid percent-encoding")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL's credentials are not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_server_the_credentials_and_the_database() {
        let u = RedisUrl::parse("rediss://gate:s%40cret@redis.internal:6380/2").unwrap();
        assert_eq!(
            u,
            RedisUrl {
                tls: true,
                host: "redis.internal".into(),
                port: 6380,
                user: Some("gate".into()),
                password: Some("s@cret".into()),
                db: 2
            }
        );
        assert_eq!(u.redacted(), "rediss://gate@redis.internal:6380/2");
        let u = RedisUrl::parse("redis://:pw@[::1]").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.user.clone(),
                u.password.as_deref()
            ),
            ("::1", 6379, None, Some("pw"))
        );
        assert_eq!(u.redacted(), "redis://:***@[::1]:6379/0");
        for bad in [
            "http://x",
            "redis://",
            "redis://h:0",
            "redis://h:99999",
            "redis://h/x",
            "redis://%zz@h",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
