//! The dial of a vetted address, and CONNECT tunnels: bytes both ways (splice(2) on Linux) until
//! either side closes, the tunnel idles, its agent is cut, or the proxy shuts down.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Shared;
use crate::io::{Admitted, Counted, Counters, TunnelSlot, idle_watch};
use crate::live::Cut;
use crate::reason::ProxyReason;
use crate::road::Leave;
use crate::upstream::CloseOnDrop;

/// Copy buffer per direction of a tunnel.
const TUNNEL_BUFFER: usize = 64 * 1024;

/// Dials exactly the vetted address, with the road's leave.
pub(super) async fn dial(
    shared: &Shared,
    addr: SocketAddr,
    _leave: &Leave,
) -> Result<TcpStream, ProxyReason> {
    match tokio::time::timeout(shared.deps.limits.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(_)) => Err(ProxyReason::ConnectFailed),
        Err(_) => Err(ProxyReason::ConnectTimeout),
    }
}

/// Carries an upgraded CONNECT until it ends; the close record (dropped `close`) carries why.
pub(super) async fn run_tunnel(
    shared: Arc<Shared>,
    upgrade: hyper::upgrade::OnUpgrade,
    stream: TcpStream,
    mut close: CloseOnDrop,
    _places: (Option<TunnelSlot>, Arc<Admitted>),
    cut: Arc<Cut>,
) {
    let Ok(upgraded) = upgrade.await else {
        close.set_reason(ProxyReason::UpstreamFailed);
        return;
    };
    let mut closing = shared.closing.clone();
    let idle = shared.deps.limits.idle_timeout;
    let counters = Arc::clone(&close.counters);
    let splice = shared.deps.limits.splice_tunnels;
    let reason = tokio::select! {
        result = copy_tunnel(upgraded, stream, &counters, splice) => match result {
            Ok(()) => ProxyReason::Closed,
            Err(_) => ProxyReason::UpstreamFailed,
        },
        () = idle_watch(&close.counters, idle) => ProxyReason::IdleTimeout,
        reason = cut.cut() => reason,
        _ = closing.wait_for(|closing| *closing) => ProxyReason::Closed,
    };
    close.set_reason(reason);
}

/// Copies a tunnel both ways: with splice(2) on Linux when the client is a plain TCP stream,
/// else through user-space buffers.
async fn copy_tunnel(
    upgraded: hyper::upgrade::Upgraded,
    stream: TcpStream,
    counters: &Arc<Counters>,
    splice: bool,
) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    let upgraded = if splice {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let client = parts.io.into_inner();
                return crate::splice::splice_bidirectional(
                    &client,
                    &stream,
                    &parts.read_buf,
                    counters,
                )
                .await;
            }
            Err(upgraded) => upgraded,
        }
    } else {
        upgraded
    };
    #[cfg(not(target_os = "linux"))]
    let _ = splice;
    let mut client = TokioIo::new(upgraded);
    let mut server = Counted::new(stream, Arc::clone(counters));
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, TUNNEL_BUFFER, TUNNEL_BUFFER)
        .await
        .map(|_| ())
}
