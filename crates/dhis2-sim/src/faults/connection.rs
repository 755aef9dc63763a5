//! Connections the fault layer can drop: the TCP listener hands each connection a
//! [`KillSwitch`], which a request reaches through `ConnectInfo<ConnHandle>`.

use super::*;

/// Per-connection switch: once killed, the connection's reads and writes fail.
#[derive(Debug, Default)]
pub struct KillSwitch {
    killed: AtomicBool,
}

impl KillSwitch {
    /// Kills the connection.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    /// Whether the connection was killed.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

/// A TCP connection that can be killed from a request handler.
#[derive(Debug)]
pub struct KillableStream {
    inner: TcpStream,
    switch: Arc<KillSwitch>,
}

fn killed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection dropped by dhis2-sim fault")
}

impl AsyncRead for KillableStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener whose connections are [`KillableStream`]s (used by [`crate::run`]).
#[derive(Debug)]
pub struct FaultListener(pub TcpListener);

impl Listener for FaultListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        (KillableStream { inner: io, switch: Arc::default() }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The connection of a request (`ConnectInfo<ConnHandle>`): peer address and kill switch.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    /// Peer address.
    pub remote: SocketAddr,
    switch: Arc<KillSwitch>,
}

impl ConnHandle {
    /// Kills the connection: nothing more is read or written on it.
    pub fn kill(&self) {
        self.switch.kill();
    }
}

impl Connected<IncomingStream<'_, FaultListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, FaultListener>) -> Self {
        ConnHandle { remote: *stream.remote_addr(), switch: Arc::clone(&stream.io().switch) }
    }
}
