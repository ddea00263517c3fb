//! `creates`: N session creates sent at once, each one's time to its `200`, p50/p99. Creates
//! of different sessions must not wait for each other (issue 12, point 1).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::percentile;
use crate::server::Server;

pub async fn run(server: Arc<Server>, count: usize) -> anyhow::Result<()> {
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let server = server.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            let session = server.create_session().await?;
            anyhow::Ok((started.elapsed(), session.id))
        });
    }
    let mut took = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        let (elapsed, id) = joined??;
        took.push(elapsed);
        ids.push(id);
    }
    let wall = began.elapsed();
    for id in &ids {
        server.delete_session(id).await?;
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{count} concurrent creates (POST /v1/sessions until 200):");
    println!(
        "  p50 {:.1} ms   p99 {:.1} ms   min {:.1} ms   max {:.1} ms   all done in {:.1} ms",
        ms(percentile(&took, 50)),
        ms(percentile(&took, 99)),
        ms(took[0]),
        ms(took[took.len() - 1]),
        ms(wall)
    );
    Ok(())
}
