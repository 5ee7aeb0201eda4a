//! Just enough of the Redis protocol (RESP2) for a stream: connect over TCP or TLS,
//! `AUTH`, `SELECT`, then commands and their replies. Replies are bounded in size and
//! depth, so a server that misbehaves costs an error, never the process.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::RedisUrl;

/// The largest bulk string accepted (an entry's value is a token id or a `sub`).
const MAX_BULK: usize = 1 << 20;
/// The most elements of one array (a stream read asks for at most 10,000 entries).
const MAX_ARRAY: usize = 1 << 20;
/// How deep arrays may nest (a stream read is four levels).
const MAX_DEPTH: usize = 8;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connection, authenticated and on its database.
pub struct Connection {
    io: BufReader<Box<dyn Stream>>,
}

fn protocol(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("redis: {what}"))
}

impl Connection {
    /// Connects, within `timeout`, and authenticates with the URL's credentials (the
    /// password file's, when given, wins over the URL's).
    pub async fn open(
        url: &RedisUrl,
        password: Option<&str>,
        timeout: Duration,
    ) -> std::io::Result<Connection> {
        let connect = async {
            let tcp = TcpStream::connect((url.host.as_str(), url.port)).await?;
            tcp.set_nodelay(true)?;
            let io: Box<dyn Stream> = match url.tls {
                false => Box::new(tcp),
                true => {
                    let config = crate::client::tls_config()
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                        .connect(name, tcp)
                        .await?;
                    Box::new(tls)
                }
            };
            let mut conn = Connection {
                io: BufReader::new(io),
            };
            let password = password.or(url.password.as_deref());
            if let Some(password) = password {
                let reply = match &url.user {
                    Some(user) => {
                        conn.call(&[b"AUTH", user.as_bytes(), password.as_bytes()])
                            .await?
                    }
                    None => conn.call(&[b"AUTH", password.as_bytes()]).await?,
                };
                if let Reply::Error(e) = reply {
                    return Err(protocol(&format!("AUTH refused: {e}")));
                }
            }
            if url.db != 0 {
                let db = url.db.to_string();
                if let Reply::Error(e) = conn.call(&[b"SELECT", db.as_bytes()]).await? {
                    return Err(protocol(&format!("SELECT refused: {e}")));
                }
            }
            Ok(conn)
        };
        tokio::time::timeout(timeout, connect).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "redis: connect timed out")
        })?
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> std::io::Result<Reply> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.io.get_mut().write_all(&out).await?;
        self.io.get_mut().flush().await?;
        self.read(0).await
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = Vec::new();
        // A line is a type byte and a short header: bounded like a bulk string.
        let read = (&mut self.io)
            .take(MAX_BULK as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "redis: connection closed",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(protocol("a reply line without CRLF"));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| protocol("a reply line that is not UTF-8"))
    }

    fn read(
        &mut self,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Reply>> + Send + '_>>
    {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                return Err(protocol("a reply nested too deep"));
            }
            let line = self.line().await?;
            let (kind, rest) = line
                .split_at_checked(1)
                .ok_or_else(|| protocol("an empty reply line"))?;
            let number = || {
                rest.parse::<i64>()
                    .map_err(|_| protocol("a length that is not a number"))
            };
            Ok(match kind {
                "+" => Reply::Status(rest.to_owned()),
                "-" => Reply::Error(rest.to_owned()),
                ":" => Reply::Int(number()?),
                "$" => match number()? {
                    -1 => Reply::Bulk(None),
                    n => {
                        let n = usize::try_from(n)
                            .ok()
                            .filter(|n| *n <= MAX_BULK)
                            .ok_or_else(|| protocol("a bulk string too large"))?;
                        let mut bytes = vec![0; n + 2];
                        self.io.read_exact(&mut bytes).await?;
                        if !bytes.ends_with(b"\r\n") {
                            return Err(protocol("a bulk string without CRLF"));
                        }
                        bytes.truncate(n);
                        Reply::Bulk(Some(bytes))
                    }
                },
                "*" => match number()? {
                    -1 => Reply::Array(None),
                    n => {
                        let n = usize::try_from(n)
                            .ok()
                            .filter(|n| *n <= MAX_ARRAY)
                            .ok_or_else(|| protocol("an array too large"))?;
                        let mut items = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            items.push(self.read(depth + 1).await?);
                        }
                        Reply::Array(Some(items))
                    }
                },
                _ => return Err(protocol("an unknown reply type")),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reply read from a server that wrote `wire` and closed the connection.
    async fn reply(wire: &[u8]) -> std::io::Result<Reply> {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        server.write_all(wire).await?;
        drop(server);
        let mut conn = Connection {
            io: BufReader::new(Box::new(client)),
        };
        conn.read(0).await
    }

    #[tokio::test]
    async fn replies_are_read_as_the_server_wrote_them_and_bounded() {
        assert_eq!(
            reply(b"+PONG\r\n").await.unwrap(),
            Reply::Status("PONG".into())
        );
        assert_eq!(
            reply(b"-ERR no\r\n").await.unwrap(),
            Reply::Error("ERR no".into())
        );
        assert_eq!(reply(b":42\r\n").await.unwrap(), Reply::Int(42));
        assert_eq!(reply(b"*-1\r\n").await.unwrap(), Reply::Array(None));
        assert_eq!(
            reply(b"*2\r\n$4\r\na\r\nb\r\n$-1\r\n").await.unwrap(),
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"a\r\nb".to_vec())),
                Reply::Bulk(None)
            ]))
        );
        // A stream read's shape: streams, records, id and fields.
        let xread =
            b"*1\r\n*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\nkind\r\n$3\r\nsub\r\n";
        assert!(matches!(reply(xread).await.unwrap(), Reply::Array(Some(s)) if s.len() == 1));
        for bad in [
            &b"$2000000\r\n"[..], // larger than a bulk may be
            b"*2000000\r\n",      // more elements than an array may have
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", // too deep
            b"$3\r\nabcde\r\n",   // a bulk without its CRLF
            b"?x\r\n",            // no such reply type
            b":12",               // cut off before CRLF
        ] {
            assert!(
                reply(bad).await.is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
