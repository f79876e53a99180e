//! The real `apono` binary against fake servers: every error path that needs no connector,
//! profiles and their file modes, the JSON/YAML shapes, table widths and shell completion.

mod common;

use std::io::Write;
use std::process::Stdio;

use anyhow::{Result, ensure};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{FakeServer, User, mode};
use serde_json::{Value, json};

const TOKEN: &str = "apono_good_token_0123456789";

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": "authentication required", "kind": "permission_denied", "problems": []})),
    )
        .into_response()
}

fn integrations() -> Value {
    json!([{
        "name": "servers", "type": "ssh", "connected_resource_types": ["ssh-server"],
        "secret_store": "apono", "credentials_rotation_period_in_days": null, "a_future_field": 1
    }])
}

fn resources() -> Value {
    let list: Vec<Value> = (0..5)
        .map(|i| {
            json!({
                "integration": "servers", "resource_type": "ssh-server",
                "id": format!("web-{i}-with-a-rather-long-identifier-for-wrapping"),
                "name": format!("Web server number {i} in the production environment of the company"),
                "tags": {"env": "production", "team": "platform-engineering", "region": "eu-west-1"}
            })
        })
        .collect();
    Value::Array(list)
}

/// A fake connector with data for the read-only commands; checks the token.
fn data_server() -> Result<FakeServer> {
    let guarded = |body: fn() -> Value| {
        move |headers: HeaderMap| async move {
            if authorized(&headers) {
                axum::Json(body()).into_response()
            } else {
                unauthorized()
            }
        }
    };
    FakeServer::start(
        Router::new()
            .route(
                "/api/v1/me",
                get(guarded(|| {
                    json!({"email": "alice@example.com", "groups": ["developers"], "admin": false})
                })),
            )
            .route("/api/v1/integrations", get(guarded(integrations)))
            .route("/api/v1/resources", get(guarded(resources)))
            .route("/api/v1/access-sessions", get(guarded(|| json!([]))))
            .route("/api/v1/access-requests", get(guarded(|| json!([]))))
            .route(
                "/api/v1/resource-types",
                get(guarded(
                    || json!([{"integration": "servers", "resource_type": "ssh-server"}]),
                )),
            ),
    )
}

#[test]
fn no_arguments_off_a_terminal_prints_help_and_exits_2() -> Result<()> {
    let out = User::new()?.run(&[])?;
    ensure!(out.code == Some(2), "{out:#?}");
    ensure!(out.stderr.contains("Usage: apono"), "{out:#?}");
    Ok(())
}

#[test]
fn usage_errors_exit_2() -> Result<()> {
    let user = User::with_env("http://127.0.0.1:9", TOKEN)?;
    for args in [
        &["requests", "create", "-i", "servers"][..],
        &["requests", "list", "--scope", "everything"],
        &["access", "use", "s", "-o", "pdf"],
        &["no-such-command"],
        &["requests", "reject", "r-1"],
    ] {
        let out = user.run(args)?;
        ensure!(out.code == Some(2), "{out:#?}");
        ensure!(!out.stderr.contains("panicked"), "{out:#?}");
    }
    for (args, needle) in [
        (
            &["login", "--url", "not a url", "--personal-token", "x"][..],
            "is not a connector URL",
        ),
        (
            &["login", "--url", "ftp://h", "--personal-token", "x"],
            "is not a connector URL",
        ),
        (
            &[
                "requests",
                "create",
                "-i",
                "s",
                "-t",
                "t",
                "-r",
                "r",
                "-p",
                "p",
                "--timeout",
                "soon",
            ],
            "is not a duration",
        ),
        (
            &["requests", "describe", "../../etc"],
            "is not a request or session id",
        ),
        (&["audit", "list", "--since", "yesterday"], "--since"),
    ] {
        user.run(args)?.error(2, needle)?;
    }
    Ok(())
}

#[test]
fn not_logged_in() -> Result<()> {
    let user = User::new()?;
    for args in [
        &["inventory", "integrations"][..],
        &["requests", "list"],
        &["access", "list"],
    ] {
        user.run(args)?.error(
            1,
            "not logged in: run apono login or set APONO_URL and APONO_TOKEN",
        )?;
    }
    let mut half = User::new()?;
    half.env
        .push(("APONO_URL".into(), "http://127.0.0.1:9".into()));
    half.run(&["requests", "list"])?
        .error(1, "APONO_TOKEN is not")?;
    Ok(())
}

#[test]
fn unreachable_connector() -> Result<()> {
    // A port that was free a moment ago and has no listener now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let user = User::with_env(&url, TOKEN)?;
    let line = user
        .run(&["requests", "list"])?
        .error(1, &format!("connector at {url} unreachable"))?
        .to_owned();
    ensure!(!line.contains(TOKEN), "{line}");
    // Login checks the connector before saving anything.
    let fresh = User::new()?;
    fresh
        .run(&["login", "--url", &url, "--personal-token", TOKEN])?
        .error(1, "unreachable")?;
    ensure!(!fresh.config_file().exists());
    // --verbose adds the cause, still without the token.
    let out = user.run(&["requests", "list", "--verbose"])?;
    ensure!(
        out.code == Some(1) && out.stderr.contains("Connection refused"),
        "{out:#?}"
    );
    ensure!(!out.stderr.contains(TOKEN), "{out:#?}");
    Ok(())
}

fn fixed(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Router {
    Router::new().fallback(move || {
        let body = body.clone();
        async move { (status, [("content-type", content_type)], body).into_response() }
    })
}

#[test]
fn a_server_returning_garbage_gives_one_line_and_exit_1() -> Result<()> {
    let cases: Vec<(Router, &str)> = vec![
        (
            fixed(
                StatusCode::OK,
                "text/html",
                b"<html><body>Welcome to nginx</body></html>".to_vec(),
            ),
            "is it an Apono connector?",
        ),
        (
            fixed(
                StatusCode::OK,
                "application/json",
                br#"{"surprise": [1, 2, 3]}"#.to_vec(),
            ),
            "is it an Apono connector?",
        ),
        (
            fixed(
                StatusCode::OK,
                "application/json",
                vec![0xff, 0xfe, 0x00, 0x9c, b'\n', 0x1b],
            ),
            "is it an Apono connector?",
        ),
        (
            fixed(
                StatusCode::NOT_FOUND,
                "text/html",
                b"<h1>Not Found</h1>".to_vec(),
            ),
            "HTTP 404",
        ),
        (
            fixed(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                b"Traceback (most recent call last):\n  boom".to_vec(),
            ),
            "HTTP 500",
        ),
        (
            fixed(
                StatusCode::FORBIDDEN,
                "application/json",
                br#"{"error": "not permitted: \u001b[31mred\nsecond line", "problems": []}"#
                    .to_vec(),
            ),
            "not permitted",
        ),
        (
            fixed(StatusCode::UNAUTHORIZED, "text/plain", b"expired".to_vec()),
            "the connector refused the personal token (unknown, revoked or expired): run apono login",
        ),
    ];
    for (router, needle) in cases {
        let server = FakeServer::start(router)?;
        let user = User::with_env(&server.url, TOKEN)?;
        for args in [
            &["inventory", "integrations", "-o", "json"][..],
            &[
                "inventory",
                "resources",
                "-i",
                "servers",
                "-t",
                "ssh-server",
            ],
            &["requests", "list"],
            &["requests", "describe", "r-1", "-o", "yaml"],
            &["access", "list"],
            &["access", "use", "g-1", "-o", "json"],
            &["audit", "list"],
        ] {
            let out = user.run(args)?;
            let line = out.error(1, needle)?;
            ensure!(
                !line.contains('\x1b'),
                "control characters printed: {out:#?}"
            );
            ensure!(out.stdout.is_empty(), "{out:#?}");
        }
    }
    // A server that hangs up at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    let hangup = std::thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            drop(stream);
        }
    });
    User::with_env(&url, TOKEN)?
        .run(&["requests", "list"])?
        .error(1, "unreachable")?;
    let _ = hangup.join();
    Ok(())
}

#[test]
fn login_profiles_and_logout_write_0600_files() -> Result<()> {
    let server = data_server()?;
    let user = User::new()?;
    // A pre-existing, too-open file is replaced by a fresh 0600 one, never chmod-ed.
    std::fs::create_dir_all(user.config_file().parent().expect("dir"))?;
    std::fs::write(user.config_file(), "{}")?;
    std::fs::set_permissions(
        user.config_file(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    let line = user
        .run(&[
            "login",
            "--url",
            &server.url,
            "--personal-token",
            "apono_wrong",
        ])?
        .error(1, "login failed: the connector at")?
        .to_owned();
    ensure!(
        line.contains("refused the personal token") && !line.contains("apono_wrong"),
        "{line}"
    );
    ensure!(
        std::fs::read_to_string(user.config_file())? == "{}",
        "a refused login saved something"
    );
    let out = user.run(&[
        "login",
        "--url",
        &format!("{}/", server.url),
        "--personal-token",
        TOKEN,
    ])?;
    out.ok()?;
    ensure!(
        out.stderr.contains(&format!(
            "logged in to {} as alice@example.com in profile \"default\"",
            server.url
        )),
        "{out:#?}"
    );
    ensure!(
        mode(&user.config_file())? == 0o600,
        "config.json is not 0600"
    );
    ensure!(std::fs::read_to_string(user.config_file())?.contains(TOKEN));
    // The token from stdin, as a second profile.
    let mut child = user
        .apono(&[
            "login",
            "--profile",
            "second",
            "--url",
            &server.url,
            "--personal-token",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{TOKEN}\n").as_bytes())?;
    let out = common::Out::from(&["login", "-"], child.wait_with_output()?);
    out.ok()?;
    ensure!(mode(&user.config_file())? == 0o600);
    let list = user.run(&["profiles", "list", "-o", "json"])?;
    ensure!(!list.stdout.contains(TOKEN), "token printed: {list:#?}");
    ensure!(
        list.json()?
            == json!([
                {"name": "default", "url": server.url, "active": false},
                {"name": "second", "url": server.url, "active": true}
            ]),
        "{list:#?}"
    );
    user.run(&["profiles", "set", "default"])?.ok()?;
    user.run(&["profiles", "set", "nope"])?
        .error(2, "no profile \"nope\"")?;
    let integrations = user
        .run(&["inventory", "integrations", "-o", "json"])?
        .json()?;
    ensure!(integrations[0]["name"] == "servers");
    user.run(&["--profile", "second", "inventory", "integrations"])?
        .ok()?;
    user.run(&["logout"])?.ok()?;
    ensure!(mode(&user.config_file())? == 0o600);
    user.run(&["logout", "--profile", "second"])?.ok()?;
    user.run(&["inventory", "integrations"])?
        .error(1, "not logged in")?;
    // A profile file that is not JSON: one line, without quoting the file.
    std::fs::write(user.config_file(), format!("{{\"profiles\": {TOKEN}"))?;
    let line = user
        .run(&["requests", "list"])?
        .error(1, "not a valid apono profile file")?
        .to_owned();
    ensure!(!line.contains(TOKEN), "{line}");
    Ok(())
}

#[test]
fn dry_run_hints_follow_the_problem_codes_not_the_wording() -> Result<()> {
    let dry_run = |headers: HeaderMap| async move {
        if !authorized(&headers) {
            return unauthorized();
        }
        axum::Json(json!({
            "allowed": false, "flow": "ops", "approval_required": false, "max_duration": "10m",
            "problems": [
                {"code": "justification_required", "message": "flow ops wants a reason"},
                {"code": "duration_over_max", "message": "too long for flow ops", "max": "10m"},
                {"code": "a_future_code", "message": "something new"},
                "a plain sentence from an older connector"
            ],
            "extends_sessions": []
        }))
        .into_response()
    };
    let server = FakeServer::start(
        Router::new()
            .route(
                "/api/v1/integrations",
                get(move |headers: HeaderMap| async move {
                    if authorized(&headers) {
                        axum::Json(integrations()).into_response()
                    } else {
                        unauthorized()
                    }
                }),
            )
            .route(
                "/api/v1/access-requests/dry-run",
                axum::routing::post(dry_run),
            )
            .route(
                "/api/v1/resource-types",
                get(|| async {
                    axum::Json(json!([{"integration": "servers", "resource_type": "ssh-server"}]))
                }),
            ),
    )?;
    let user = User::with_env(&server.url, TOKEN)?;
    let line = user
        .run(&[
            "requests",
            "create",
            "-i",
            "servers",
            "-t",
            "ssh-server",
            "-r",
            "web-1",
            "-p",
            "Default",
            "-d",
            "1h",
        ])?
        .error(1, "request not allowed: ")?
        .to_owned();
    for part in [
        "flow ops wants a reason (add -j JUSTIFICATION)",
        "too long for flow ops (use -d 10m or less)",
        "something new; a plain sentence from an older connector",
    ] {
        ensure!(line.contains(part), "{part:?} missing: {line}");
    }
    // A bare number is seconds, in the CLI as in the connector: `-d 90` refused by the
    // server and `-d abc` refused by the CLI read alike and exit alike.
    let create = |duration: &'static str| {
        user.run(&[
            "requests",
            "create",
            "-i",
            "servers",
            "-t",
            "ssh-server",
            "-r",
            "web-1",
            "-p",
            "Default",
            "-d",
            duration,
        ])
    };
    create("90000")?.error(
        1,
        "too long for flow ops (use -d 10m or less; a bare number is seconds)",
    )?;
    create("abc")?.error(1, "request not allowed: \"abc\" is not a duration")?;
    create("abc")?.error(1, "a bare number is seconds")?;
    // A resource type the integration does not offer is named as a type, with the types.
    user.run(&[
        "requests",
        "create",
        "-i",
        "servers",
        "-t",
        "ssh-servers",
        "-r",
        "web-1",
        "-p",
        "Default",
    ])?
    .error(
        1,
        "unknown resource type \"ssh-servers\" in integration servers: use -t with one of ssh-server",
    )?;
    Ok(())
}

#[test]
fn misspelt_commands_get_a_suggestion() -> Result<()> {
    let user = User::new()?;
    let out = user.run(&["requets", "list"])?;
    ensure!(out.code == Some(2), "{out:#?}");
    ensure!(
        out.stderr.contains("similar") && out.stderr.contains("'requests'"),
        "{out:#?}"
    );
    let out = user.run(&["requests", "lst"])?;
    ensure!(
        out.code == Some(2) && out.stderr.contains("'list'"),
        "{out:#?}"
    );
    Ok(())
}

/// Runs `apono ARGS` with stdout a pipe whose reader is already gone, as in
/// `apono completion bash | head -1` once `head` has exited.
fn run_into_closed_pipe(user: &User, args: &[&str]) -> Result<common::Out> {
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let output = user
        .apono(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()?;
    Ok(common::Out::from(args, output))
}

#[test]
fn a_closed_stdout_ends_quietly_never_with_a_panic() -> Result<()> {
    let server = data_server()?;
    let user = User::with_env(&server.url, TOKEN)?;
    for args in [
        &["completion", "bash"][..],
        &["version"],
        &["inventory", "integrations"],
        &[
            "inventory",
            "resources",
            "-i",
            "servers",
            "-t",
            "ssh-server",
            "-o",
            "json",
        ],
        &["inventory", "integrations", "-o", "yaml"],
    ] {
        let out = run_into_closed_pipe(&user, args)?;
        ensure!(out.code == Some(0), "{out:#?}");
        ensure!(out.stderr.is_empty(), "{out:#?}");
    }
    Ok(())
}

#[test]
fn wrong_resource_types_and_empty_lists_say_what_to_do() -> Result<()> {
    let server = data_server()?;
    let user = User::with_env(&server.url, TOKEN)?;
    for sub in ["resources", "permissions"] {
        user.run(&["inventory", sub, "-i", "servers", "-t", "ssh-servers"])?
            .error(
                1,
                "unknown resource type \"ssh-servers\" in integration servers: use -t with one of ssh-server",
            )?;
    }
    // An approver's own list is empty: the note names the scope that has their work.
    let out = user.run(&["requests", "list"])?;
    ensure!(out.code == Some(0), "{out:#?}");
    ensure!(
        out.stderr
            .contains("those awaiting your approval: apono requests list --scope approvals"),
        "{out:#?}"
    );
    // JSON stays JSON, with no note.
    let out = user.run(&["requests", "list", "-o", "json"])?;
    ensure!(
        out.json()? == json!([]) && out.stderr.is_empty(),
        "{out:#?}"
    );
    Ok(())
}

#[test]
fn a_token_alone_in_the_environment_uses_the_profile_url() -> Result<()> {
    let server = data_server()?;
    let user = User::new()?;
    user.run(&["login", "--url", &server.url, "--personal-token", TOKEN])?
        .ok()?;
    let mut env_token = User::new()?;
    env_token.home = user.home;
    // The environment's token wins over the profile's: a wrong one is refused by the server
    // at the profile's URL, the right one works.
    env_token
        .env
        .push(("APONO_TOKEN".into(), "apono_wrong_token_000000000".into()));
    env_token
        .run(&["inventory", "integrations"])?
        .error(1, "refused the personal token")?;
    env_token.env.clear();
    env_token.env.push(("APONO_TOKEN".into(), TOKEN.into()));
    env_token.run(&["inventory", "integrations"])?.ok()?;
    // Without any profile the URL is missing, and the error says so.
    let mut alone = User::new()?;
    alone.env.push(("APONO_TOKEN".into(), TOKEN.into()));
    alone.run(&["requests", "list"])?.error(
        1,
        "APONO_TOKEN is set but APONO_URL is not, and no profile has a URL",
    )?;
    Ok(())
}

#[test]
fn environment_works_without_login_and_json_yaml_shapes_are_stable() -> Result<()> {
    let server = data_server()?;
    let user = User::with_env(&server.url, TOKEN)?;
    let json = user
        .run(&["inventory", "integrations", "-o", "json"])?
        .json()?;
    // Unknown fields of a newer connector are dropped; the documented ones stay.
    ensure!(
        json == json!([{"name": "servers", "type": "ssh", "connected_resource_types": ["ssh-server"], "secret_store": "apono"}]),
        "{json}"
    );
    let yaml = user.run(&["inventory", "integrations", "-o", "yaml"])?;
    let parsed: Value = serde_yaml_ng::from_str(yaml.ok()?)?;
    ensure!(parsed == json, "{yaml:#?}");
    let listed = user
        .run(&[
            "inventory",
            "resources",
            "-i",
            "ssh/servers",
            "-t",
            "ssh-server",
            "-o",
            "json",
        ])?
        .json()?;
    ensure!(listed == resources(), "{listed}");
    let types = user
        .run(&["inventory", "resource-types", "-i", "servers", "-o", "json"])?
        .json()?;
    ensure!(types == json!([{"integration": "servers", "resource_type": "ssh-server"}]));
    user.run(&["inventory", "resources", "-i", "rdp/servers", "-t", "x"])?
        .error(1, "integration \"rdp/servers\" not found")?;
    Ok(())
}

#[test]
fn tables_fit_the_terminal_width() -> Result<()> {
    let server = data_server()?;
    let mut user = User::with_env(&server.url, TOKEN)?;
    for width in [60usize, 100] {
        user.env.retain(|(k, _)| k != "COLUMNS");
        user.env.push(("COLUMNS".into(), width.to_string()));
        let out = user.run(&[
            "inventory",
            "resources",
            "-i",
            "servers",
            "-t",
            "ssh-server",
        ])?;
        let text = out.ok()?;
        ensure!(text.lines().count() > 5, "{text}");
        ensure!(text.starts_with("ID"), "{text}");
        for line in text.lines() {
            ensure!(
                line.chars().count() <= width,
                "line wider than {width}: {line:?}\n{text}"
            );
        }
    }
    Ok(())
}

#[test]
fn completion_scripts_are_accepted_by_the_shells() -> Result<()> {
    let user = User::new()?;
    for (shell, checker) in [
        ("bash", Some(("bash", "-n"))),
        ("zsh", which("zsh").then_some(("zsh", "-n"))),
        ("fish", which("fish").then_some(("fish", "--no-execute"))),
        ("elvish", None),
        ("powershell", None),
    ] {
        let out = user.run(&["completion", shell])?;
        let script = out.ok()?;
        ensure!(script.contains("apono"), "{shell}: {script}");
        if let Some((program, flag)) = checker {
            let dir = tempfile::tempdir()?;
            let path = dir.path().join(format!("apono.{shell}"));
            std::fs::write(&path, script)?;
            let check = std::process::Command::new(program)
                .arg(flag)
                .arg(&path)
                .output()?;
            ensure!(
                check.status.success(),
                "{program} {flag} rejects the script: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
    ensure!(user.run(&["completion", "tcsh"])?.code == Some(2));
    let version = user.run(&["version"])?;
    ensure!(version.ok()?.trim() == format!("apono {}", env!("CARGO_PKG_VERSION")));
    Ok(())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// `apono` alone on a terminal (a pseudo-terminal from util-linux `script`): the picker shows,
/// arrow down + enter picks "Connect to an active session", which says there is none.
#[test]
fn interactive_picker_on_a_terminal() -> Result<()> {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let server = data_server()?;
    let mut user = User::with_env(&server.url, TOKEN)?;
    user.env.push(("TERM".into(), "xterm".into()));
    let mut child = user
        .command("script")
        .args(["-qefc", env!("CARGO_BIN_EXE_apono"), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let seen = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .expect("lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let wait_for = |needle: &str| -> Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !seen.lock().expect("lock").contains(needle) {
            ensure!(
                std::time::Instant::now() < deadline,
                "no {needle:?} in {:?}",
                seen.lock().expect("lock")
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    };
    wait_for("Connect to an active session")?;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"\x1b[B")?;
    stdin.flush()?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    stdin.write_all(b"\r")?;
    stdin.flush()?;
    wait_for("no active session")?;
    let status = child.wait()?;
    let _ = reader.join();
    ensure!(
        status.code() == Some(1),
        "{status}: {:?}",
        seen.lock().expect("lock")
    );
    Ok(())
}

/// A connector without the watch endpoints (an older one: 404 without the API's error body):
/// `requests revoke --wait` falls back to polling the request until it is revoked.
#[test]
fn revoke_wait_polls_a_connector_without_watch_endpoints() -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn request(status: &str) -> Value {
        json!({
            "id": "req_1", "status": status, "requester": "alice@example.com", "flow": "ops",
            "integration": "servers", "resource_type": "ssh-server", "resource_ids": ["web-1"],
            "permission": "Default", "justification": "", "duration_seconds": 600,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "session_ids": [], "approvals": [], "awaiting": []
        })
    }
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let server = FakeServer::start(
        Router::new()
            .route(
                "/api/v1/access-requests/req_1/revoke",
                axum::routing::post(|| async { axum::Json(request("Revoking")) }),
            )
            .route(
                "/api/v1/access-requests/req_1",
                get(move || {
                    let n = counted.fetch_add(1, Ordering::SeqCst);
                    async move { axum::Json(request(if n < 2 { "Revoking" } else { "Revoked" })) }
                }),
            ),
    )?;
    let user = User::with_env(&server.url, TOKEN)?;
    let out = user.run(&["requests", "revoke", "req_1", "--wait", "-o", "json"])?;
    ensure!(out.json()?["status"] == "Revoked", "{out:#?}");
    ensure!(
        reads.load(Ordering::SeqCst) == 3,
        "the request was read {} times",
        reads.load(Ordering::SeqCst)
    );
    Ok(())
}
