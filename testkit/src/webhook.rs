//! A receiver for Alertmanager's webhook notifications, so that a test sees what
//! a pager would.

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::wait::{Check, poll};

/// One notification Alertmanager posted to a [`Webhook`]: the path it was posted to
/// (the receiver, `/page` or `/ticket`) and its JSON body.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The URL path, which names the receiver.
    pub path: String,
    /// Alertmanager's webhook payload: `status`, `receiver`, `alerts[]` with their
    /// `status`, `labels` and `annotations`.
    pub body: serde_json::Value,
}

impl Notification {
    /// The alerts of this notification named `alertname`.
    pub fn alerts_named<'a>(
        &'a self,
        alertname: &'a str,
    ) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
        self.body["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(move |alert| alert["labels"]["alertname"] == alertname)
    }

    /// Whether an alert named `alertname` is in this notification with `status`
    /// (`firing` or `resolved`).
    #[must_use]
    pub fn has(&self, alertname: &str, status: &str) -> bool {
        self.alerts_named(alertname)
            .any(|alert| alert["status"] == status)
    }
}

/// A webhook receiver for Alertmanager's notifications, on a free port of every
/// interface (a container reaches it through the host gateway). Stopped when dropped.
pub struct Webhook {
    port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<Notification>>>,
    task: JoinHandle<()>,
}

impl Webhook {
    /// Starts listening.
    pub async fn start() -> std::io::Result<Self> {
        use axum::extract::State;
        use axum::http::Uri;

        type Received = std::sync::Arc<std::sync::Mutex<Vec<Notification>>>;
        async fn receive(
            State(received): State<Received>,
            uri: Uri,
            axum::Json(body): axum::Json<serde_json::Value>,
        ) {
            received
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Notification {
                    path: uri.path().to_owned(),
                    body,
                });
        }

        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
        let port = listener.local_addr()?.port();
        let received = Received::default();
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(std::sync::Arc::clone(&received));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            port,
            received,
            task,
        })
    }

    /// The port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every notification so far, in arrival order.
    #[must_use]
    pub fn received(&self) -> Vec<Notification> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Polls until a notification satisfies `accept`, and returns it; the error lists
    /// everything received, so a wrong label or receiver shows at once.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        accept: impl Fn(&Notification) -> bool,
    ) -> anyhow::Result<Notification> {
        let what = format!("a notification {what}");
        let found = poll(&what, timeout, Duration::from_millis(200), || {
            let received = self.received();
            let found = received.iter().find(|n| accept(n)).cloned();
            async move {
                match found {
                    Some(found) => Check::Met(found),
                    None => Check::NotYet(format!(
                        "received:\n{}",
                        received
                            .iter()
                            .map(|n| format!("{} {}", n.path, n.body))
                            .collect::<Vec<_>>()
                            .join("\n")
                    )),
                }
            }
        })
        .await?;
        Ok(found)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}
