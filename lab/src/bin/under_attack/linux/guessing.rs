//! Password guessing: one address sends wrong passwords on many connections while
//! a legitimate user logs in from another, defences on and off.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::exchange::{Counts, CpuShare, Outcome, Probes, describe, exchange, legitimate_user};
use super::report::{Comparison, met};
use super::{defences_off, defences_on};
use lab::server_process::{Launch, Server};
use lab::stats::per_second;
use login_metrics_testkit::clients::{connect_from, login_request};

const GUESSING_FOR: Duration = Duration::from_secs(10);
const GUESSING_CONNECTIONS: usize = 64;
const WRONG: &str = r#"{"username":"user","password":"wrong"}"#;

/// What one guessing run saw.
pub(super) struct Guessing {
    pub(super) answers: Counts,
    pub(super) elapsed: Duration,
    pub(super) probes: Probes,
    pub(super) cpu: CpuShare,
}

pub(super) async fn guessing(binary: &Path) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for (name, launch) in [
        ("defences on", defences_on()),
        ("defences off", defences_off()),
    ] {
        eprintln!(
            "guessing ({name}): 127.0.0.2, {GUESSING_CONNECTIONS} connections, {GUESSING_FOR:?}..."
        );
        runs.push(guess(binary, &launch).await?);
    }
    let mut table = Comparison::new(
        format!(
            "guessing: one address, {GUESSING_CONNECTIONS} connections of wrong passwords \
             for {} s; a legitimate user logs in from another every second",
            GUESSING_FOR.as_secs()
        ),
        &["defences on", "defences off"],
    );
    let each = |f: &dyn Fn(&Guessing) -> String| runs.iter().map(f).collect::<Vec<_>>();
    let rate = |run: &Guessing, status: &str| {
        per_second(run.answers.get(status).copied().unwrap_or(0), run.elapsed)
    };
    table.row(
        "guesses checked (401) per second",
        each(&|run| format!("{:.1}", rate(run, "401"))),
    );
    table.row(
        "refused (429) per second",
        each(&|run| format!("{:.0}", rate(run, "429"))),
    );
    table.row("the guesser's answers", each(&|run| describe(&run.answers)));
    table.row(
        "legitimate logins (127.0.0.3)",
        each(&|run| describe(&run.probes.counts())),
    );
    table.row(
        "legitimate login latency p50 / p99 / max",
        each(&|run| run.probes.latency_figure()),
    );
    table.row(
        "CPU time: server / this generator / other processes",
        each(&|run| run.cpu.figure()),
    );
    let on = &runs[0];
    let checked = on.answers.get("401").copied().unwrap_or(0);
    // The burst, and one more attempt a second.
    let allowed = 10 + GUESSING_FOR.as_secs() + 1;
    table.notes.push(format!(
        "goal: with the defences, the guesser gets at most its burst and one guess a second \
         checked ({allowed} in {} s): {checked}, {}",
        GUESSING_FOR.as_secs(),
        met(checked <= allowed)
    ));
    let legit_ok = on.probes.ok() == on.probes.0.len() && !on.probes.0.is_empty();
    table.notes.push(format!(
        "goal: with the defences, every legitimate login from the other address succeeds: {}",
        met(legit_ok)
    ));
    table.print();
    Ok(())
}

pub(super) async fn guess(binary: &Path, launch: &Launch) -> anyhow::Result<Guessing> {
    let server = Server::launch(binary, launch)?;
    let to = server.login;
    let cpu = CpuShare::start(&server);
    let started = Instant::now();
    let until = started + GUESSING_FOR;
    let request: Arc<[u8]> = login_request(WRONG).into_bytes().into();
    let mut guessers = Vec::new();
    for _ in 0..GUESSING_CONNECTIONS {
        let request = Arc::clone(&request);
        guessers.push(tokio::spawn(async move {
            let mut counts = Counts::new();
            let mut buffer = Vec::with_capacity(1024);
            let mut stream = None;
            while Instant::now() < until {
                let connection = match stream.take() {
                    Some(connection) => connection,
                    None => {
                        match tokio::time::timeout_at(
                            until.into(),
                            connect_from([127, 0, 0, 2], to),
                        )
                        .await
                        {
                            Ok(Ok(connection)) => connection,
                            Ok(Err(_)) => {
                                *counts.entry("closed".to_owned()).or_default() += 1;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                            Err(_) => break,
                        }
                    }
                };
                let mut connection = connection;
                // An answer that comes after the end is not counted.
                match tokio::time::timeout_at(
                    until.into(),
                    exchange(&mut connection, &request, &mut buffer),
                )
                .await
                {
                    Ok(Ok(answer)) => {
                        *counts.entry(Outcome::Answered(answer).key()).or_default() += 1;
                        if !answer.close {
                            stream = Some(connection);
                        }
                    }
                    Ok(Err(_)) => *counts.entry("closed".to_owned()).or_default() += 1,
                    Err(_) => break,
                }
            }
            counts
        }));
    }
    let probes = legitimate_user(
        to,
        vec![[127, 0, 0, 3]],
        Duration::from_secs(1),
        Duration::from_millis(500),
        until,
    )
    .await;
    let mut answers = Counts::new();
    for guesser in guessers {
        for (key, n) in guesser.await? {
            *answers.entry(key).or_default() += n;
        }
    }
    Ok(Guessing {
        answers,
        elapsed: GUESSING_FOR,
        probes,
        cpu: cpu.since(&server, started),
    })
}
