//! Locking the vault when the screen locks, on Linux: listens on D-Bus for
//! the screensaver's `ActiveChanged(true)` on the session bus
//! (`org.freedesktop.ScreenSaver` for KDE and others,
//! `org.gnome.ScreenSaver` for GNOME) and for logind's `Session.Lock` on
//! the system bus.

use futures_util::StreamExt;
use tauri::{AppHandle, Manager};
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

use crate::state::AppState;

/// Listens until the app exits. A bus that cannot be reached is logged and
/// skipped; the vault then locks only by hand or after the idle time.
pub async fn listen(app: AppHandle) {
    let session = screensaver_signals(&app);
    let system = logind_signals(&app);
    tokio::join!(session, system);
}

async fn screensaver_signals(app: &AppHandle) {
    let connection = match Connection::session().await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::info!(%error, "no D-Bus session bus; screen locks will not lock the vault");
            return;
        }
    };
    let mut streams = Vec::new();
    for interface in ["org.freedesktop.ScreenSaver", "org.gnome.ScreenSaver"] {
        match signal_stream(&connection, interface, "ActiveChanged").await {
            Ok(stream) => streams.push(stream),
            Err(error) => tracing::info!(%error, interface, "cannot watch the screensaver"),
        }
    }
    let mut merged = futures_util::stream::select_all(streams);
    while let Some(message) = merged.next().await {
        let active = message
            .ok()
            .and_then(|message| message.body().deserialize::<bool>().ok());
        if active == Some(true) {
            lock(app).await;
        }
    }
}

async fn logind_signals(app: &AppHandle) {
    let connection = match Connection::system().await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::info!(%error, "no D-Bus system bus; logind locks will not lock the vault");
            return;
        }
    };
    let mut stream =
        match signal_stream(&connection, "org.freedesktop.login1.Session", "Lock").await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::info!(%error, "cannot watch logind session locks");
                return;
            }
        };
    // NOTE: this reacts to Lock on any session, not only the app's own;
    // locking the vault early is the safe side of that mistake.
    while stream.next().await.is_some() {
        lock(app).await;
    }
}

async fn signal_stream(
    connection: &Connection,
    interface: &'static str,
    member: &'static str,
) -> zbus::Result<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .interface(interface)?
        .member(member)?
        .build();
    MessageStream::for_match_rule(rule, connection, None).await
}

async fn lock(app: &AppHandle) {
    if app.state::<AppState>().lock_for_screen_lock().await {
        tracing::info!("vault locked because the screen locked");
    }
}
