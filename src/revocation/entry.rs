//! One revocation, as the stream holds it: the fields `kind` (`origin_jti` or `sub`),
//! `value` and `at`; other producers' extra fields are ignored.

use super::redis::Reply;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `origin_jti`: every token of the family (a refresh token and the access and ID
    /// tokens issued from it); `jti` for other issuers' tokens.
    Family,
    /// `sub`: the user's tokens issued before `at`.
    User,
}

/// One revocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub kind: Kind,
    pub value: String,
    pub at: f64,
}

impl Entry {
    /// The entry of a stream record's fields, or why it is not one.
    pub fn from_fields(fields: &[Reply]) -> Result<Entry, &'static str> {
        let (mut kind, mut value, mut at) = (None, None, None);
        for pair in fields.chunks(2) {
            let [Reply::Bulk(Some(name)), Reply::Bulk(Some(v))] = pair else {
                return Err("fields are not name-value pairs");
            };
            match name.as_slice() {
                b"kind" => kind = Some(v),
                b"value" => value = Some(v),
                b"at" => at = Some(v),
                _ => {} // other producers may add fields of their own
            }
        }
        let kind = match kind.map(Vec::as_slice) {
            Some(b"origin_jti") => Kind::Family,
            Some(b"sub") => Kind::User,
            _ => return Err("kind is not origin_jti or sub"),
        };
        let value = value
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| !v.is_empty() && v.len() <= 1024)
            .ok_or("value is missing, empty, too long or not UTF-8")?
            .to_owned();
        let at = at
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or("at is not a number of seconds since the epoch")?;
        Ok(Entry { kind, value, at })
    }

    /// The fields to write, in the order the stream documents them.
    pub(super) fn fields(&self) -> [(&'static str, String); 3] {
        let kind = match self.kind {
            Kind::Family => "origin_jti",
            Kind::User => "sub",
        };
        [
            ("kind", kind.to_owned()),
            ("value", self.value.clone()),
            ("at", format_seconds(self.at)),
        ]
    }
}

fn format_seconds(t: f64) -> String {
    match t.fract() == 0.0 {
        true => format!("{}", t as u64),
        false => format!("{t:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn entries_read_their_three_fields_and_refuse_anything_else() {
        let ok = [
            bulk("kind"),
            bulk("sub"),
            bulk("value"),
            bulk("u-1"),
            bulk("at"),
            bulk("1700000000"),
            bulk("by"),
            bulk("ops"),
        ];
        assert_eq!(
            Entry::from_fields(&ok),
            Ok(Entry {
                kind: Kind::User,
                value: "u-1".into(),
                at: 1_700_000_000.0
            })
        );
        let family = Entry {
            kind: Kind::Family,
            value: "f".into(),
            at: 1.5,
        };
        let written: Vec<Reply> = family
            .fields()
            .iter()
            .flat_map(|(n, v)| [bulk(n), bulk(v)])
            .collect();
        assert_eq!(Entry::from_fields(&written), Ok(family));
        let fields = |f: &[&str]| f.iter().map(|v| bulk(v)).collect::<Vec<_>>();
        for bad in [
            fields(&["kind", "jti", "value", "x", "at", "1"]),
            fields(&["kind", "sub", "value", "", "at", "1"]),
            fields(&["kind", "sub", "value", "x", "at", "soon"]),
            fields(&["kind", "sub", "value", "x", "at", "-5"]),
            fields(&["kind", "sub", "value"]),
            vec![Reply::Int(1), bulk("x")],
        ] {
            assert!(Entry::from_fields(&bad).is_err(), "{bad:?}");
        }
    }
}
