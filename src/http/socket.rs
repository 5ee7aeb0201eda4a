//! A client connection's socket, whatever carries it: TCP, TLS over TCP, or a Unix
//! domain socket; and who is at its other end. One type, so that every listener is
//! served by the same connection code and an upgrade's tunnel takes any of them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::server::TlsStream;

pub enum Socket {
    Tcp(TcpStream),
    /// Boxed: rustls's connection state is large, and most sockets are not TLS.
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

/// The other end of a client connection: a TCP peer's address, or a process on the
/// proxy's Unix socket (named by the socket's path: a Unix peer has no address).
#[derive(Debug, Clone)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix(Arc<str>),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(addr) => addr.fmt(f),
            Peer::Unix(path) => write!(f, "unix:{path}"),
        }
    }
}

impl Socket {
    /// Completes when the socket has bytes to read (or is closed). Under TLS this is
    /// the TCP socket's readiness, which is right only once a read of the TLS stream
    /// would block: rustls then holds no plaintext that was not handed out.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.readable().await,
            Socket::Tls(s) => s.get_ref().0.readable().await,
            Socket::Unix(s) => s.readable().await,
        }
    }

    /// Reads what the socket has now, without waiting: plaintext sockets only (a TLS
    /// stream's bytes are records, not the client's bytes).
    pub fn try_read_plain(&self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        match self {
            Socket::Tcp(s) => Some(s.try_read(buf)),
            Socket::Tls(_) => None,
            Socket::Unix(s) => Some(s.try_read(buf)),
        }
    }

    /// Whether the client chose HTTP/2 in the TLS handshake (ALPN `h2`); `None` on a
    /// plaintext socket, where the preface tells.
    pub fn negotiated_h2(&self) -> Option<bool> {
        match self {
            Socket::Tls(s) => Some(s.get_ref().1.alpn_protocol() == Some(b"h2")),
            _ => None,
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            Socket::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Socket::Tcp(s) => s.is_write_vectored(),
            Socket::Tls(s) => s.is_write_vectored(),
            Socket::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
