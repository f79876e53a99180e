//! The hand-written OpenAPI document (`/api/v1/openapi.json`) checked by vendor tools against
//! the real HTTP API: `openapi-spec-validator` says it is valid OpenAPI 3.1, and `schemathesis`
//! calls every operation with generated input (deterministic, bounded) and finds no 5xx and no
//! response whose status code, content type or body the document does not describe.
//! Both run in `tests/python/openapi_check.py`, with the workspace's venv.

// The test prints the tools' summary and findings.
#![allow(clippy::print_stdout)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use apono_control::{Config, ControlPlane, NewRequest, Store};
use apono_runtime::ExecutorLimits;
use support::Timed;

const CONFIG: &str = r#"
[connector]
id = "openapi"
listen = "127.0.0.1:0"
master_key = { secret_store = { apono = { parameters = { master_key = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a" } } } }
[[users]]
email = "alice@example.com"
groups = ["dev"]
[[users]]
email = "bob@example.com"
groups = ["sre"]
[[users]]
email = "root@example.com"
admin = true
[[integrations]]
name = "boxes"
type = "quick"
secret_store = { apono = { parameters = { k = "v" } } }
[[access_flows]]
name = "auto"
trigger = "automatic"
requestors = { groups = ["dev"] }
targets = [{ integration = "boxes", resource_type = "box", permissions = ["Default"], resources = { ids = ["r0"] } }]
grant_duration = "1h"
[[access_flows]]
name = "approved"
trigger = "self_serve"
requestors = { groups = ["dev"] }
targets = [{ integration = "boxes", resource_type = "box", permissions = ["Default"], resources = { ids = ["r1"] } }]
approvers = { mode = "any_of", groups = ["sre"] }
grant_duration = "1h"
"#;

fn request(id: &str) -> NewRequest {
    NewRequest {
        integration: "boxes".into(),
        resource_type: "box".into(),
        resource_ids: vec![id.into()],
        permission: "Default".into(),
        justification: Some("openapi check".into()),
        duration: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_tools_find_the_document_valid_and_the_api_conformant() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite3").display()
    );
    let provisioner = Timed {
        latency: Duration::from_millis(1),
        resources: 3,
    };
    let plane = ControlPlane::new(
        Store::open(&url).await?,
        Config::parse(CONFIG, std::iter::empty(), None)?,
        support::executor("quick", provisioner, ExecutorLimits::default()),
    );
    plane.bootstrap().await?;
    plane.run_due_once().await?;

    // A little data, so lists and descriptions have something to return: an active session
    // (automatic flow, granted) and a request waiting for approval.
    let alice = plane.config().user("alice@example.com").unwrap().clone();
    let granted = plane.create_request(&alice, &request("r0")).await?;
    plane.run_due_once().await?;
    let pending = plane.create_request(&alice, &request("r1")).await?;
    assert!(!granted.session_ids.is_empty(), "{granted:?}");
    assert!(pending.session_ids.is_empty(), "{pending:?}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = apono_control::api::router(plane.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let token = plane.create_token("root@example.com").await?;

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/openapi_check.py");
    let base = format!("http://{addr}");
    let output = tokio::task::spawn_blocking(move || {
        apono_testkit::python::run_script(&script, &[&base], &[("APONO_TOKEN", &token)], None)
    })
    .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let verdict: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("openapi_check.py printed no verdict ({e}):\n{stdout}\n{stderr}")
    });

    let spec = &verdict["spec"];
    let fuzz = &verdict["schemathesis"];
    let failures = fuzz["failures"].as_array().cloned().unwrap_or_default();
    println!(
        "openapi-spec-validator: valid={} (openapi {}); schemathesis: {} operations, {} test cases, \
         {} findings, exit {} in {}s, settings {}",
        spec["valid"],
        spec["openapi"],
        fuzz["operations"],
        fuzz["test_cases"],
        failures.len(),
        fuzz["exit_code"],
        fuzz["seconds"],
        fuzz["settings"],
    );
    for failure in &failures {
        println!(
            "--- {} ({})\n{}",
            failure["operation"].as_str().unwrap_or("?"),
            failure["kind"].as_str().unwrap_or("?"),
            failure["detail"].as_str().unwrap_or("")
        );
    }
    assert_eq!(
        spec["valid"], true,
        "openapi-spec-validator: {:#}",
        spec["errors"]
    );
    assert!(
        failures.is_empty() && fuzz["exit_code"] == 0,
        "schemathesis found {} problem(s), exit {}:\n{}",
        failures.len(),
        fuzz["exit_code"],
        fuzz["output_tail"].as_str().unwrap_or("")
    );
    assert!(
        fuzz["operations"].as_u64().unwrap_or(0) >= 20,
        "schemathesis tested too few operations: {}\n{}",
        fuzz["operations"],
        fuzz["output_tail"].as_str().unwrap_or("")
    );
    assert_eq!(verdict["ok"], true, "{stdout}\n{stderr}");
    assert!(output.status.success(), "{stdout}\n{stderr}");
    Ok(())
}
