//! Running the two listeners and stopping them cleanly.
//!
//! The metrics listener is separate from the application listener, as in the
//! original tutorial, for two reasons: the application port can be exposed to
//! clients while `/metrics` stays on an internal interface, and a scrape never
//! queues behind login traffic.
//!
//! [`serve`] takes listeners that are already bound instead of addresses, so a
//! test can bind port 0 and ask the listener which port it got.

use std::future::Future;
use std::io;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::routes::{AppState, app, metrics_app};

// ANCHOR: serve
/// Serves `POST /login` on `app_listener` and `GET /metrics` on
/// `metrics_listener` until `shutdown` completes, then lets requests in
/// progress finish on both.
pub async fn serve(
    app_listener: TcpListener,
    metrics_listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stop, stopped) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        // Dropping the sender wakes every receiver.
        drop(stop);
    });
    let until_stopped =
        |mut stopped: watch::Receiver<()>| async move { while stopped.changed().await.is_ok() {} };

    let metrics = axum::serve(metrics_listener, metrics_app(state.metrics.clone()))
        .with_graceful_shutdown(until_stopped(stopped.clone()));
    let logins =
        axum::serve(app_listener, app(state)).with_graceful_shutdown(until_stopped(stopped));
    tokio::try_join!(async { logins.await }, async { metrics.await })?;
    Ok(())
}
// ANCHOR_END: serve

// ANCHOR: shutdown_signal
/// Completes on Ctrl-C, or on SIGTERM (what `docker stop` and Kubernetes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
// ANCHOR_END: shutdown_signal
