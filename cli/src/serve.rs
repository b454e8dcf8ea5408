//! `ork serve`: the handlers over HTTP on one machine, with a sweeper loop
//! in place of the cloud's cron (`ork_api::sweeper`), and local tasks run under `ork worker` so that
//! they report over HTTP exactly as cloud workers do.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use ork_api::http::Health;

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
        advancer: Advancer::spawn(),
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
            // A panic is caught here, so the loop (and later reports) go on.
            let recorded = AssertUnwindSafe(async {
                match engine.complete(&batch).await {
                    Ok(done) => {
                        for run in done.to_advance {
                            let _ = engine.advance(run).await;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "recording completions failed"),
                }
            })
            .catch_unwind()
            .await;
            if recorded.is_err() {
                tracing::error!("recording completions panicked");
            }
        }
    });

    // The sweeper: at the next due time (retry, timeout, lease, cron slot),
    // when another process writes, and at least every tick. Each pass is
    // caught if it panics, so the loop lives on; `/health` reports a loop
    // that died or stalled.
    let health = Arc::new(Health::new(tick));
    let sweeper = tokio::spawn(ork_api::sweeper::run(
        handlers.engine.clone(),
        tick,
        health.clone(),
    ));
    let watch_health = health.clone();
    tokio::spawn(async move {
        let ended = sweeper.await;
        tracing::error!(?ended, "the sweeper task ended");
        watch_health.died();
    });

    if let Some(retention) = config.retention {
        tokio::spawn(ork_api::sweeper::retain(
            handlers.engine.clone(),
            retention,
            Some(config.log_dir()),
        ));
    }

    let executors = match config.claimed_executors() {
        Some(kinds) => kinds
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(","),
        None => "all".to_owned(),
    };
    tracing::info!(
        instance = %config.instance_id(),
        executors = %executors,
        batch_size = config.batch_size,
        poll_interval = %humantime::format_duration(tick),
        "serving"
    );
    outln!("ork serving on http://{addr} (web UI at /, handlers at /trigger /advance /complete /heartbeat; executors: {executors})");
    axum::serve(
        listener,
        ork_api::http::router_with_health(handlers, Some(health)),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(0)
}
