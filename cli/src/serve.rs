//! `ork serve`: the handlers over HTTP on one machine, with a ticker in
//! place of the cloud's cron, and local tasks run under `ork worker` so that
//! they report over HTTP exactly as cloud workers do.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use ork_api::advancer::Advancer;
use ork_api::config::{self, Config, Defaults};

pub async fn serve(config: &Config, addr: SocketAddr, tick: Duration) -> Result<i32> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    // Without ORK_SIGNING_KEY, the state dir's own key (generated once into
    // .ork/signing.key, mode 0600): a restarted server still accepts the
    // reports of the workers it started before.
    let own_signer = match config.signing_key {
        Some(_) => None,
        None => {
            let dir = config::state_dir();
            let signer = config::local_signer(&dir)?;
            tracing::info!(
                "ORK_SIGNING_KEY is not set: signing callback tokens with {}",
                dir.join(config::SIGNING_KEY_FILE).display()
            );
            Some(signer)
        }
    };
    let defaults = Defaults {
        advancer: Advancer::Spawn,
        callback_url: Some(format!("http://{addr}/complete")),
        worker_program: Some(std::env::current_exe().context("cannot find the ork binary")?),
        signer: own_signer,
    };
    let mut setup = config::setup(config, defaults).await?;
    let handlers = setup.handlers.clone();
    if handlers.api_key.is_none() {
        tracing::warn!(
            "ORK_API_KEY is not set: POST /trigger is open to anyone who can reach {addr}"
        );
    }

    // Completions of local processes that report in-process.
    let engine = handlers.engine.clone();
    tokio::spawn(async move {
        while let Some(first) = setup.completions.recv().await {
            let mut batch = vec![first];
            while let Ok(c) = setup.completions.try_recv() {
                batch.push(c);
            }
            match engine.complete(&batch).await {
                Ok(done) => {
                    for run in done.to_advance {
                        let _ = engine.advance(run).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "recording completions failed"),
            }
        }
    });

    // The cron tick: the sweeper.
    let engine = handlers.engine.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match engine.sweep().await {
                Ok(s) => tracing::debug!(?s, "swept"),
                Err(e) => tracing::error!(error = %e, "sweep failed"),
            }
        }
    });

    println!("ork serving on http://{addr} (web UI at /, handlers at /trigger /advance /complete /heartbeat)");
    axum::serve(listener, ork_api::http::router(handlers))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(0)
}
