//! DNS over TCP, served by hickory-server: it owns the framing, idle timeouts and pipelined
//! queries; every query goes through the same [`Handler`] as UDP.
//!
//! TCP carries little of a resolver's traffic (truncated answers retried, zone-sized answers),
//! so here hickory-server's robustness is worth more than the decode and re-encode it costs per
//! answer: our answer bytes are decoded into a message and hickory encodes them again.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Header, HeaderCounts, Message, MessageType, Metadata, ResponseCode};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::net::TcpListener;

use super::handler::{Clock, Handler, Protocol, Step, Worker};
use crate::upstream::Transport;

/// Connections the kernel queues before we accept them.
const LISTEN_BACKLOG: i32 = 1024;
/// Answers queued per connection before hickory-server stops reading more from it.
const RESPONSE_QUEUE: usize = 64;

/// The TCP side of the server.
pub struct TcpServer {
    server: hickory_server::Server<TcpHandler>,
}

/// The TCP listeners, bound and listening but not yet accepting: what [`TcpServer::start`] serves.
pub struct BoundTcp(Vec<TcpListener>);

impl TcpServer {
    /// Binds every address, before anything is served: privileges can be dropped in between.
    pub fn bind(addrs: &[SocketAddr]) -> io::Result<BoundTcp> {
        let mut listeners = Vec::new();
        for addr in addrs {
            let listener = bind(*addr).map_err(|e| io::Error::new(e.kind(), format!("cannot bind TCP {addr}: {e}")))?;
            listeners.push(listener);
        }
        Ok(BoundTcp(listeners))
    }

    /// Starts serving the bound listeners; connections idle for `idle` are closed.
    pub fn start(BoundTcp(listeners): BoundTcp, idle: Duration, handler: Arc<Handler>) -> TcpServer {
        let mut server = hickory_server::Server::new(TcpHandler(handler));
        for listener in listeners {
            server.register_listener(listener, idle, RESPONSE_QUEUE);
        }
        TcpServer { server }
    }

    /// Stops accepting, lets the connections finish their current query, and waits.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::warn!(error = %e, "TCP server shutdown");
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(SockProtocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // As for UDP: [::] is IPv6 only, so that 0.0.0.0 can be listened on beside it.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Adapts the shared pipeline to hickory-server's request handler.
pub struct TcpHandler(Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for TcpHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut out = Vec::with_capacity(512);
        let mut worker = Worker::default();
        let step = self.0.answer_fast(
            request.as_slice(),
            request.src().ip(),
            Protocol::Tcp,
            Clock::now(),
            &mut out,
            &mut worker,
        );
        self.0.flush(&mut worker);
        match step {
            Step::Reply => {}
            Step::Drop => return servfail_info(request),
            Step::Forward(pending) => self.0.answer_forward(pending, Transport::Tcp, &mut out).await,
        }
        // Our own answer bytes: they decode, unless a bug made them otherwise.
        let message = match Message::from_vec(&out) {
            Ok(message) => message,
            Err(e) => {
                tracing::error!(error = %e, "an answer did not decode; sending SERVFAIL");
                let builder = MessageResponseBuilder::new(&request.queries, None);
                let response = builder.error_msg(&request.metadata, ResponseCode::ServFail);
                return response_handle
                    .send_response(response)
                    .await
                    .unwrap_or_else(|_| servfail_info(request));
            }
        };
        let response = MessageResponseBuilder::new(&request.queries, message.edns.as_ref()).build(
            message.metadata,
            message.answers.iter(),
            message.authorities.iter(),
            [],
            message.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "TCP send failed");
                servfail_info(request)
            }
        }
    }
}

fn servfail_info(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}
