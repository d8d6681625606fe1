//! The production server (`cargo run --example login_server`) as the book runs it:
//! its start-up log, the answers `curl` gets, the metrics after them, the request
//! log, the users file, and the traffic generator's commands and tables.

use std::net::TcpListener;
use std::time::Duration;

use login_metrics_testkit::book::blocks::output;
use login_metrics_testkit::book::outputs::{Masks, check_output};
use login_metrics_testkit::book::shell::{
    Background, example_binary, run, run_ok, script, shell_quote, sub,
};
use regex::Regex;

use crate::{LoginServer, load_at, printed};

/// The hashing tests of this binary one at a time: each server hashes on every core
/// and sheds a login that waits half a second, so two side by side could see 503s
/// that neither causes alone.
pub(crate) static HASHING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    HASHING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The log line's fields that depend on the machine and the moment.
fn log_masks() -> Masks {
    Masks::none()
        .log_time()
        .loopback_ports()
        // Half the open files limit, at most 4096, and the limit: the machine's.
        .mask("[MAX]", r"max_connections=(?<redacted>\d+)")
        .mask("[FILES]", r"open_files_limit=(?<redacted>\d+)")
        .mask("[US]", r"latency_us=(?<redacted>\d+)")
}

#[test]
fn the_production_server_logs_counts_and_answers_as_the_hardening_chapter_shows() {
    let _hashing = one_at_a_time();
    let mut server = LoginServer::start("hardening/run", &[]);
    check_output(
        "hardening/start-up-log",
        &server.start_up.join("\n"),
        &log_masks(),
    );

    // "After one good login and one wrong password, sent as in Step 1".
    let _ = run_ok(
        &script("step-1/logins", &server.addresses_in("step-1/logins")),
        &[],
    );
    let counted = run_ok(
        &script(
            "hardening/grep-login-requests",
            &server.addresses_in("hardening/grep-login-requests"),
        ),
        &[],
    );
    check_output("hardening/login-requests", &counted, &Masks::none());
    let first = server.log_line("answered");
    check_output("shutdown-and-logs/request-line", &first, &log_masks());

    // The other commands that read a running server's metrics.
    for name in [
        "metrics/grep-login",
        "troubleshooting/curl-head",
        "troubleshooting/grep-connections",
        "troubleshooting/promtool-check-metrics",
    ] {
        let printed = run_ok(&script(name, &server.addresses_in(name)), &[]);
        let expected_lines = match name {
            "troubleshooting/curl-head" => 3,
            "troubleshooting/promtool-check-metrics" => 0,
            _ => 1,
        };
        assert!(
            printed.lines().count() >= expected_lines,
            "{name} printed:\n{printed}"
        );
    }
    let instance = run_ok(
        &script(
            "runbooks/curl-instance",
            &[sub("INSTANCE", server.metrics.clone())],
        ),
        &[],
    );
    assert!(instance.starts_with("# HELP"), "{instance}");
}

#[test]
fn every_answer_of_the_counting_chapter_is_what_curl_gets() {
    let _hashing = one_at_a_time();
    let server = LoginServer::start("hardening/run", &[]);
    for (command, answer) in [
        (
            "counting/curl-400-malformed",
            "counting/answer-400-malformed",
        ),
        ("counting/curl-400-invalid", "counting/answer-400-invalid"),
        ("counting/curl-415", "counting/answer-415"),
        ("counting/curl-413", "counting/answer-413"),
        ("counting/curl-405", "counting/answer-405"),
    ] {
        let printed = run_ok(&script(command, &server.addresses_in(command)), &[]);
        // `curl -i`: the body follows the headers and a blank line.
        let body = printed
            .split_once("\r\n\r\n")
            .map_or(printed.as_str(), |(_, body)| body);
        check_output(answer, body, &Masks::none());
    }
}

#[test]
fn step_3_requests_get_the_answers_and_counts_it_shows() {
    let _hashing = one_at_a_time();
    let server = LoginServer::start("step-3/server", &[]);
    let date = Masks::none().mask("[DATE]", r"date: (?<redacted>.+)");
    for (command, answer) in [
        ("step-3/curl-good", "step-3/answer-200"),
        ("step-3/curl-bad", "step-3/answer-401"),
        ("step-3/curl-malformed", "step-3/answer-400"),
    ] {
        let printed = run_ok(&script(command, &server.addresses_in(command)), &[]);
        check_output(answer, &printed.replace("\r\n", "\n"), &date);
    }
    // Its comments say what each line prints.
    let codes_block = login_metrics_testkit::book::blocks::command("step-3/curl-415-405");
    let said: Vec<&str> = Regex::new(r"# prints (\d+)")
        .unwrap()
        .captures_iter(&codes_block.text)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    let printed = run_ok(
        &script(
            "step-3/curl-415-405",
            &server.addresses_in("step-3/curl-415-405"),
        ),
        &[],
    );
    assert_eq!(printed.lines().collect::<Vec<_>>(), said);
    let counts = run_ok(
        &script(
            "step-3/grep-counts",
            &server.addresses_in("step-3/grep-counts"),
        ),
        &[],
    );
    check_output("step-3/counts", &counts, &Masks::none());
}

/// What the load generator's table varies in: every count, share, latency and
/// rate, and so the width of each column.
fn table_masks() -> Masks {
    Masks::none()
        .loopback_ports()
        .mask("[N]", r"\d+(?:\.\d+)?(?:µs|ms|s)?")
        .mask("[DASHES]", r"-{2,}")
        .mask("[SPACES]", r" +")
}

#[test]
fn the_load_generator_prints_the_tables_step_3_shows() {
    let _hashing = one_at_a_time();
    // The table's rows are 200, 400 and 401. A machine busy with other work can make
    // a login wait past the default half second for a hashing thread and be shed
    // (a 503 row, which the book does not show): this server waits longer.
    let server = LoginServer::start(
        "step-3/server",
        &[sub(
            "--metrics-addr 127.0.0.1:0",
            "--metrics-addr 127.0.0.1:0 --max-hash-wait 10s",
        )],
    );
    // `cargo run --release --example load`: ten seconds by default; two here.
    let table = run_ok(
        &script(
            "step-3/load",
            &[sub(
                "cargo run --release --example load",
                format!(
                    "{} --url http://{}/login --duration 2",
                    example_binary("load"),
                    server.login
                ),
            )],
        ),
        &[],
    );
    check_output("step-3/load-table", &table, &table_masks());

    // The options, each run: a second instead of minutes, at this server.
    let options = run(
        &script(
            "step-3/load-options",
            &[
                load_at(&server.login),
                sub("--duration 120", "--duration 1"),
                sub("--duration 30", "--duration 1"),
                sub("--duration 60", "--duration 1"),
                sub("--sources 1", "--sources 1 --duration 1"),
            ],
        ),
        &[],
        "",
    );
    let said = printed(&options);
    assert!(options.status.success(), "{said}");
    // "Exactly 60 requests: 30 good, 20 bad and 10 malformed."
    assert!(
        said.contains("sent 30 good, 20 bad and 10 malformed logins"),
        "{said}"
    );

    // Step 8's scenarios, a second each instead of twenty minutes.
    let scenarios = run(
        &script(
            "step-8/scenarios",
            &[sub(
                "cargo run --release --example load --",
                format!(
                    "{} --url http://{}/login --duration 1",
                    example_binary("load"),
                    server.login
                ),
            )],
        ),
        &[],
        "",
    );
    assert!(scenarios.status.success(), "{}", printed(&scenarios));
    for name in [
        "step-4/traffic",
        "quick-start/traffic",
        "quick-start/traffic-for-docker",
    ] {
        let output = run(
            &script(
                name,
                &[
                    load_at(&server.login),
                    sub("--duration 300", "--duration 1"),
                ],
            ),
            &[],
            "",
        );
        assert!(output.status.success(), "{name}: {}", printed(&output));
    }
}

/// The command of a `$ COMMAND` output block, and the lines it shows printed.
fn prompt_and_printed(name: &str) -> (String, String) {
    let block = output(name);
    let (first, rest) = block
        .text
        .split_once('\n')
        .expect("a command and its output");
    let command = first
        .strip_prefix("$ ")
        .unwrap_or_else(|| panic!("{}: starts with `$ COMMAND`", block.at()));
    (command.to_owned(), rest.to_owned())
}

#[test]
fn the_load_generator_says_what_step_3_shows_when_it_cannot_do_its_job() {
    let nothing_there = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let binary = example_binary("load");
    // Nothing listens on port 5999 here: the port is a free one instead.
    let (command, _) = prompt_and_printed("step-3/no-answer");
    let command = command
        .replace("cargo run --release --example load --", &binary)
        .replace("5999", &nothing_there.to_string());
    let output = run(&command, &[], "");
    assert!(!output.status.success(), "no answer is a failure");
    let shown = format!(
        "{}\n{}",
        output_block_command("step-3/no-answer"),
        printed(&output)
    );
    check_output(
        "step-3/no-answer",
        &shown,
        &table_masks().mask("[PORT]", r"127\.0\.0\.1:(?<redacted>\d+)"),
    );

    // One address only: the server's host is not an IPv4 loopback address.
    let (command, _) = prompt_and_printed("step-3/one-address-note");
    let command = command
        .replace("cargo run --release --example load --", &binary)
        .replace("5000", &nothing_there.to_string());
    let output = run(&format!("{command} --requests 1"), &[], "");
    let note = String::from_utf8_lossy(&output.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    check_output(
        "step-3/one-address-note",
        &format!(
            "{}\n{note}",
            output_block_command("step-3/one-address-note")
        ),
        &Masks::none().loopback_ports(),
    );
}

/// The `$ COMMAND` line of an output block, as the book shows it.
fn output_block_command(name: &str) -> String {
    format!("$ {}", prompt_and_printed(name).0)
}

#[test]
fn users_come_from_a_file_made_with_hash_password_as_passwords_shows() {
    let _hashing = one_at_a_time();
    // `read -rs` reads the password from the terminal; here from standard input.
    let hashed = run(
        &script(
            "passwords/hash-password",
            &[sub(
                "cargo run -q --example hash_password",
                example_binary("hash_password"),
            )],
        ),
        &[],
        "correct horse\n",
    );
    let hash = String::from_utf8_lossy(&hashed.stdout).trim().to_owned();
    assert!(
        hashed.status.success() && hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        printed(&hashed)
    );
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.txt");
    std::fs::write(
        &users,
        format!("# username:argon2-phc-hash\nalice:{hash}\n"),
    )
    .unwrap();
    let server = LoginServer::start(
        "passwords/users-file",
        &[sub("users.txt", shell_quote(&users.to_string_lossy()))],
    );
    let login = |user: &str, password: &str| server.login_status(user, password);
    assert_eq!(login("alice", "correct horse"), "200");
    assert_eq!(login("user", "pass"), "401", "--no-demo-user");

    let refused = run(
        &format!("{} --no-demo-user", example_binary("login_server")),
        &[],
        "",
    );
    assert!(!refused.status.success());
    check_output(
        "passwords/no-users",
        &String::from_utf8_lossy(&refused.stderr),
        &Masks::none(),
    );
}

#[test]
fn the_server_refuses_what_troubleshooting_says_it_refuses() {
    let binary = example_binary("login_server");
    // A budget over what the open files limit leaves: the limit the book's machine
    // had, set for this run.
    let too_many = run(
        &format!("ulimit -n 20000; exec {binary} --max-connections 30000"),
        &[],
        "",
    );
    assert!(!too_many.status.success());
    check_output(
        "troubleshooting/max-connections",
        &String::from_utf8_lossy(&too_many.stderr),
        &Masks::none(),
    );

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let in_use = run(&format!("exec {binary} --addr 127.0.0.1:{port}"), &[], "");
    assert!(!in_use.status.success());
    check_output(
        "troubleshooting/port-in-use",
        &String::from_utf8_lossy(&in_use.stderr),
        &Masks::none().loopback_ports(),
    );
}

#[test]
fn a_shutdown_with_stalled_clients_logs_the_warning_troubleshooting_shows() {
    let grace = "1s";
    let mut server = Background::start(
        &format!(
            "{} --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --shutdown-grace {grace}",
            example_binary("login_server")
        ),
        &[("RUST_LOG", "info"), ("NO_COLOR", "1")],
    );
    let listening = loop {
        let line = server.line(Duration::from_secs(60));
        if line.contains(" listening ") {
            break line;
        }
    };
    let login = crate::field(&listening, "login");
    // Sixty clients halfway through their headers, as in the book.
    let stalled: Vec<std::net::TcpStream> = (0..60)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&login).unwrap();
            std::io::Write::write_all(&mut stream, b"POST /login HTTP/1.1\r\nHost: x\r\n").unwrap();
            stream
        })
        .collect();
    let open = || {
        let page = run_ok(
            &format!(
                "curl -s http://{}/metrics",
                crate::field(&listening, "metrics")
            ),
            &[],
        );
        page.lines()
            .find_map(|line| line.strip_prefix("login_connections_open "))
            .map(str::to_owned)
    };
    login_metrics_testkit::wait::poll_blocking(
        "sixty open connections",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || match open() {
            Some(n) if n == "60" => login_metrics_testkit::wait::Check::Met(()),
            other => login_metrics_testkit::wait::Check::NotYet(format!("{other:?}")),
        },
    )
    .unwrap_or_else(|timed_out| panic!("{timed_out}"));
    login_metrics_testkit::example::terminate(server.child());
    let warning = loop {
        let line = server.line(Duration::from_secs(20));
        assert!(!line.is_empty(), "the server ended without the warning");
        if line.contains("WARN") {
            break line;
        }
    };
    // The book shows the line from its level on, with the default grace of 8 s.
    let from_level = &warning[warning.find("WARN").unwrap()..];
    check_output(
        "troubleshooting/shutdown-warning",
        from_level,
        &Masks::none().mask("[GRACE]", r"grace=(?<redacted>\S+)"),
    );
    drop(stalled);
}

#[test]
fn the_server_commands_for_containers_listen_on_every_interface() {
    for name in [
        "step-2/server-for-docker",
        "step-4/server-for-docker",
        "quick-start/server-for-docker",
    ] {
        let server = LoginServer::start(name, &[]);
        assert!(
            server.metrics.starts_with("0.0.0.0:"),
            "{name}: {}",
            server.metrics
        );
    }
}
