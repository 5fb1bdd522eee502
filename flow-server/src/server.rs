//! Assembling the API and serving it on a socket.

use std::future::Future;
use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use flow_runtime::Engine;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::{guard, Guard};
use crate::error::ApiError;
use crate::options::{OptionsError, ServerOptions};
use crate::routes::routes;

/// The API for `engine`, guarded as `options` say (without binding anything): to mount
/// under another axum application or to test. Check the options first
/// ([`ServerOptions::check`]); [`Server::bind`] does.
pub fn router(engine: Engine, options: &ServerOptions) -> Router {
    let guard_state = Guard {
        token: options.token.as_deref().map(Into::into),
        any_host: options.allow_open,
    };
    routes(engine)
        .layer(axum::middleware::from_fn_with_state(guard_state, guard))
        .layer(CatchPanicLayer::custom(panicked))
}

/// A handler that panicked (a bug): the answer says so instead of dropping the connection.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the server hit a bug handling this request; nothing is known to have changed: \
         check the run, and report the request that caused it",
    )
    .into_response()
}

/// A server bound to its address, ready to run.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    app: Router,
    engine: Engine,
}

impl Server {
    /// Checks `options` (a token off loopback, a strong token) and binds the address.
    pub async fn bind(engine: Engine, options: ServerOptions) -> Result<Server, OptionsError> {
        options.check()?;
        let bind_failed = |source| OptionsError::Bind {
            addr: options.addr,
            source,
        };
        let listener = TcpListener::bind(options.addr).await.map_err(bind_failed)?;
        let addr = listener.local_addr().map_err(bind_failed)?;
        Ok(Server {
            listener,
            addr,
            app: router(engine.clone(), &options),
            engine,
        })
    }

    /// The address the server listens on (with the port picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the process ends.
    pub async fn run(self) -> std::io::Result<()> {
        axum::serve(self.listener, self.app).await
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight (workers'
    /// long polls are answered at once, empty: `Engine::release_task_polls`).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let engine = self.engine;
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                engine.release_task_polls();
            })
            .await
    }
}
