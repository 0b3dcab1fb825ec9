//! Linux zero-copy tunnels: splice(2) through one pipe per direction, via rustix (no unsafe).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::net::Shutdown;
use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::io::Counters;

/// Bytes moved per splice call, and the pipe size asked for.
const CHUNK: usize = 256 * 1024;

/// Copies both ways until both sides have closed their sending half, like
/// `tokio::io::copy_bidirectional`, without the bytes passing through user space. `early` holds
/// bytes the client sent before the tunnel began; they go to the server first.
pub(crate) async fn splice_bidirectional(
    client: &TcpStream,
    server: &TcpStream,
    early: &[u8],
    counters: &Counters,
) -> io::Result<()> {
    write_all(server, early).await?;
    counters.add_up(early.len());
    let up = pump(client, server, counters.up_counter());
    let down = pump(server, client, counters.down_counter());
    tokio::try_join!(up, down).map(|_| ())
}

async fn write_all(to: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        to.writable().await?;
        match to.try_write(buf) {
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// One direction: socket -> pipe -> socket, counting bytes delivered; on EOF, shuts down the
/// sending half of `to`.
async fn pump(from: &TcpStream, to: &TcpStream, count: &AtomicU64) -> io::Result<()> {
    let (pipe_read, pipe_write) =
        rustix::pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
    // A bigger pipe means fewer wake-ups; the default (64 KiB) still works if refused.
    let _ = rustix::pipe::fcntl_setpipe_size(&pipe_write, CHUNK);
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    loop {
        let filled = loop {
            from.readable().await?;
            let spliced = from.try_io(Interest::READABLE, || {
                rustix::pipe::splice(from, None, &pipe_write, None, CHUNK, flags)
                    .map_err(io::Error::from)
            });
            match spliced {
                Ok(n) => break n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        };
        if filled == 0 {
            rustix::net::shutdown(to, Shutdown::Write).map_err(io::Error::from)?;
            return Ok(());
        }
        let mut left = filled;
        while left > 0 {
            to.writable().await?;
            let spliced = to.try_io(Interest::WRITABLE, || {
                rustix::pipe::splice(&pipe_read, None, to, None, left, flags)
                    .map_err(io::Error::from)
            });
            match spliced {
                Ok(n) => {
                    left = left.saturating_sub(n);
                    count.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dial = TcpStream::connect(listener.local_addr().unwrap());
        let (near, far) = tokio::join!(dial, listener.accept());
        (near.unwrap(), far.unwrap().0)
    }

    #[tokio::test]
    async fn splices_both_ways_with_early_bytes_and_half_close() {
        // client_app <-> client (proxy side) ... server (proxy side) <-> server_app
        let (mut client_app, client) = pair().await;
        let (server, mut server_app) = pair().await;
        let counters = Counters::default();
        let tunnel = splice_bidirectional(&client, &server, b"early:", &counters);
        let apps = async {
            let payload = vec![7u8; 3 * CHUNK + 17];
            client_app.write_all(&payload).await.unwrap();
            client_app.shutdown().await.unwrap();
            let mut got = Vec::new();
            server_app.read_to_end(&mut got).await.unwrap();
            assert_eq!(got.len(), 6 + payload.len());
            assert!(got.starts_with(b"early:"));
            server_app.write_all(b"reply").await.unwrap();
            server_app.shutdown().await.unwrap();
            let mut reply = Vec::new();
            client_app.read_to_end(&mut reply).await.unwrap();
            assert_eq!(reply, b"reply");
        };
        let (result, ()) = tokio::join!(tunnel, apps);
        result.unwrap();
        assert_eq!(
            (counters.up(), counters.down()),
            (6 + 3 * CHUNK as u64 + 17, 5)
        );
    }
}
