//! `keyport serve`: unlock the vault and run the proxy until interrupted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyport_core::proxy::{self, KeySlot, ProxyState};
use keyport_core::tokens::LiveTokens;
use keyport_core::vault::Access;
use tokio::net::TcpListener;

use super::Context;
use crate::cli::ServeArgs;
use crate::error::CliError;
use crate::output;

/// How often the proxy checks `tokens.json` for tokens created or revoked
/// by another `keyport` process.
const TOKEN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

pub fn run(context: &Context, args: ServeArgs) -> Result<(), CliError> {
    let config = context.config()?;
    let mut proxy_config = config.proxy.clone();
    if let Some(port) = args.port {
        proxy_config.port = port;
    }
    if let Some(bind) = args.bind {
        proxy_config.bind = bind;
    }
    let tokens = LiveTokens::load(&context.data_dir.tokens())?;

    // The vault stays open for writing while serving, so no other process
    // changes keys behind the proxy's back.
    let vault = context.open_vault(Access::ReadWrite)?;
    let keys = KeySlot::default();
    keys.set(Arc::new(vault.keyring()));
    warn_about_setup(
        &vault,
        &tokens,
        proxy_config.require_token,
        proxy_config.bind,
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::Failed(format!("cannot start the async runtime: {error}")))?;
    let result = runtime.block_on(async {
        let address = SocketAddr::new(proxy_config.bind, proxy_config.port);
        let listener = bind(address).await?;
        let local = listener
            .local_addr()
            .map_err(|error| CliError::Failed(format!("cannot read the bound address: {error}")))?;

        let refresh = tokens.spawn_refresh(TOKEN_REFRESH_INTERVAL);
        let state = ProxyState::new(proxy_config, config.providers, tokens, keys.clone())
            .map_err(|error| CliError::Failed(error.to_string()))?;

        output::result_line(&format!("Keyport proxy listening on http://{local}"));
        output::flush();

        let served = proxy::serve(listener, state, shutdown_signal()).await;
        refresh.abort();
        served
            .map_err(|error| CliError::Failed(format!("the proxy stopped with an error: {error}")))
    });

    keys.clear();
    vault.lock();
    result
}

async fn bind(address: SocketAddr) -> Result<TcpListener, CliError> {
    TcpListener::bind(address).await.map_err(|error| {
        if error.kind() == std::io::ErrorKind::AddrInUse {
            CliError::Failed(format!(
                "port {} on {} is already in use; pick another with --port (0 picks a free one) or set proxy.port in config.toml",
                address.port(),
                address.ip()
            ))
        } else {
            CliError::Failed(format!("cannot listen on {address}: {error}"))
        }
    })
}

/// Prints what would make requests fail or the setup unsafe.
fn warn_about_setup(
    vault: &keyport_core::vault::Vault,
    tokens: &LiveTokens,
    require_token: bool,
    bind: std::net::IpAddr,
) {
    if vault.list().is_empty() {
        output::notice(
            "warning: the vault holds no keys yet; add one with `keyport key set PROVIDER`",
        );
    }
    if require_token && tokens.current().is_empty() {
        output::notice(
            "warning: no client tokens exist, so every request will be rejected; create one with `keyport token create NAME`",
        );
    }
    if !require_token {
        output::notice(
            "warning: proxy.require_token is false: any local program, and any web page on an allowed origin, can use your keys",
        );
    }
    if !bind.is_loopback() {
        output::notice(&format!(
            "warning: listening on {bind}, which is not a loopback address; other machines may reach the proxy"
        ));
    }
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stop the proxy with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
